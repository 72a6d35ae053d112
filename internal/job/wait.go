package job

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/agentlab/terraform-provider-agentlab/internal/clock"
)

// Long polls of GET /v1/jobs/{id}: with ?wait=D&status=S the reaper holds
// its answer until the job's status is no longer S (or has ended), or D has
// passed, and says with HeaderWait how long it was willing to hold it. A
// reaper that does not send HeaderWait answered at once.
const (
	// HeaderWait is set on a long-polled answer to the hold the reaper
	// granted, a Go duration.
	HeaderWait = "X-Job-Wait"
	// MaxLongPoll bounds the hold of one long poll.
	MaxLongPoll = time.Minute
	// DefaultLongPoll is the hold Wait asks for.
	DefaultLongPoll = 30 * time.Second
)

// Watcher reads job id, holding the answer back for up to hold while the
// job's status is still since (a long poll; since "" answers at once).
// longPolled reports whether the reaper honoured the hold: an older reaper
// answers at once, and the caller must pace its next request itself.
type Watcher interface {
	WatchJob(ctx context.Context, id string, since Status, hold time.Duration) (j Job, longPolled bool, err error)
}

// WaitClock is the clock Wait measures its limit and its pauses on.
type WaitClock interface {
	clock.Clock
	clock.Timers
}

// WaitOptions configure Wait. Zero values take the defaults noted.
type WaitOptions struct {
	// Limit is how long to wait for the job's end. Required.
	Limit time.Duration
	// Clock measures Limit and the pauses between requests. Default the
	// wall clock.
	Clock WaitClock
	// LongPoll is the hold asked of each request. Default DefaultLongPoll.
	LongPoll time.Duration
	// Poll is the first pause after a request the reaper did not hold (an
	// older reaper, or an error), doubling up to MaxPoll. Defaults 1 s and
	// 15 s.
	Poll, MaxPoll time.Duration
	// OnChange, when set, is called with the job each time its status
	// changes (the first answer included).
	OnChange func(Job)
	// Retry, when set, tells the errors worth retrying (an unreachable
	// reaper, a 5xx) from those that end the wait (a refused token). By
	// default every error but ErrNotFound is retried.
	Retry func(error) bool
}

// ErrWaitExpired is a job that did not end within the wait's limit.
var ErrWaitExpired = errors.New("the job did not end in time")

// Wait follows job id until it ends and returns it. It long-polls the
// reaper, so each status change is seen as it happens at the cost of about
// one request per LongPoll; without long polls (or after an error) it pauses
// Poll, doubling to MaxPoll, between requests. After Limit it returns the
// last job it read with an error wrapping ErrWaitExpired; an unknown job
// (ErrNotFound), an error Retry refuses or a done ctx ends it at once.
// Other errors are retried until the limit.
func Wait(ctx context.Context, w Watcher, id string, o WaitOptions) (Job, error) {
	if o.Clock == nil {
		o.Clock = clock.Real{}
	}
	if o.LongPoll <= 0 {
		o.LongPoll = DefaultLongPoll
	}
	if o.Poll <= 0 {
		o.Poll = time.Second
	}
	if o.MaxPoll < o.Poll {
		o.MaxPoll = max(15*time.Second, o.Poll)
	}
	deadline := o.Clock.Now().Add(o.Limit)
	var last Job
	var lastErr error
	delay := o.Poll
	for {
		remaining := deadline.Sub(o.Clock.Now())
		if remaining <= 0 {
			if lastErr != nil {
				return last, fmt.Errorf("%w (%s): last status %q, last error: %w", ErrWaitExpired, o.Limit, last.Status, lastErr)
			}
			return last, fmt.Errorf("%w (%s): last status %s", ErrWaitExpired, o.Limit, last.Status)
		}
		j, held, err := w.WatchJob(ctx, id, last.Status, min(o.LongPoll, remaining))
		switch {
		case err == nil:
			lastErr = nil
			changed := j.Status != last.Status
			last = j
			if changed && o.OnChange != nil {
				o.OnChange(j)
			}
			if j.Status.Ended() {
				return j, nil
			}
			if held || changed {
				// The reaper paced this request, or the job moves: ask again
				// at once.
				delay = o.Poll
				continue
			}
		case ctx.Err() != nil:
			return last, fmt.Errorf("waiting for job %s: %w", id, ctx.Err())
		case errors.Is(err, ErrNotFound), o.Retry != nil && !o.Retry(err):
			return last, err
		default:
			lastErr = err // a hiccup: retried until the limit
		}
		t := o.Clock.NewTimer(min(delay, remaining))
		select {
		case <-ctx.Done():
			t.Stop()
			return last, fmt.Errorf("waiting for job %s: %w", id, ctx.Err())
		case <-t.C:
		}
		delay = min(delay*2, o.MaxPoll)
	}
}
