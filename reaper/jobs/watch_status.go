package jobs

import (
	"context"
	"sync"
	"time"

	"github.com/agentlab/terraform-provider-agentlab/internal/clock"
	"github.com/agentlab/terraform-provider-agentlab/internal/job"
	"github.com/agentlab/terraform-provider-agentlab/reaper"
)

// changes tells the goroutines waiting in Watch that a job changed: each
// waiter takes the current channel, which is closed (and replaced) on the
// next change.
type changes struct {
	mu sync.Mutex
	ch chan struct{}
	// stop is closed by StopWatches: holds end at once.
	stop     chan struct{}
	stopOnce sync.Once
}

func newChanges() *changes { return &changes{ch: make(chan struct{}), stop: make(chan struct{})} }

// next returns the channel the next change closes.
func (c *changes) next() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ch
}

// stopped reports whether StopWatches was called.
func (c *changes) stopped() bool {
	select {
	case <-c.stop:
		return true
	default:
		return false
	}
}

// changed wakes every waiter.
func (c *changes) changed() {
	c.mu.Lock()
	defer c.mu.Unlock()
	close(c.ch)
	c.ch = make(chan struct{})
}

// watchedStore is the Service's store: every job update wakes Watch.
type watchedStore struct {
	Store
	changes *changes
}

// UpdateJob updates the job and wakes the watchers.
func (s watchedStore) UpdateJob(ctx context.Context, id string, fn func(*reaper.Job) error) (reaper.Job, error) {
	j, err := s.Store.UpdateJob(ctx, id, fn)
	if err == nil {
		s.changes.changed()
	}
	return j, err
}

// Watch returns job id once its status is no longer since or it has ended,
// or once hold has passed on the Service's clock, whichever comes first
// (a long poll: the provider follows a job with one request per change).
// since "" or hold <= 0 answers at once; hold is capped at job.MaxLongPoll.
func (s *Service) Watch(ctx context.Context, id string, since job.Status, hold time.Duration) (job.Job, error) {
	hold = min(hold, job.MaxLongPoll)
	var timer *clock.Timer
	var expired <-chan time.Time
	for {
		changed := s.changes.next() // taken before the read, so no change is missed
		j, err := s.load(ctx, id)
		if err != nil || since == "" || hold <= 0 || j.Status != since || j.Status.Ended() || s.changes.stopped() {
			if timer != nil {
				timer.Stop()
			}
			if err != nil {
				return job.Job{}, err
			}
			return s.view(ctx, j)
		}
		if timer == nil {
			timer = s.timers.NewTimer(hold)
			expired = timer.C
		}
		select {
		case <-changed:
		case <-expired:
			return s.view(ctx, j)
		case <-s.changes.stop:
			timer.Stop()
			return s.view(ctx, j)
		case <-ctx.Done():
			timer.Stop()
			return job.Job{}, ctx.Err()
		}
	}
}

// StopWatches ends every hold under way and makes later Watch calls answer
// at once, so that a daemon shutting down does not wait for long polls.
func (s *Service) StopWatches() {
	s.changes.stopOnce.Do(func() { close(s.changes.stop) })
}
