package job

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/agentlab/terraform-provider-agentlab/internal/clock"
)

// errRefused stands for an error Retry refuses, such as a rejected token.
var errRefused = errors.New("401 token refused")

// answer is one scripted reply of fakeWatcher.
type answer struct {
	status Status
	// held: the reaper held the request (a long poll) until the status
	// changed; with hold set, it held it that long (the clock moves).
	held bool
	hold time.Duration
	err  error
}

// fakeWatcher replies from a script and records when and how it was asked;
// a held answer moves the fake clock by its hold, as a reaper holding the
// request would take that long. The last answer repeats.
type fakeWatcher struct {
	clk    *clock.Fake
	script []answer

	mu    sync.Mutex
	calls []call
}

type call struct {
	at    time.Time
	since Status
	hold  time.Duration
}

func (f *fakeWatcher) WatchJob(_ context.Context, id string, since Status, hold time.Duration) (Job, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := len(f.calls)
	f.calls = append(f.calls, call{at: f.clk.Now(), since: since, hold: hold})
	a := f.script[min(n, len(f.script)-1)]
	if a.hold > 0 {
		f.clk.Advance(min(a.hold, hold))
	}
	if a.err != nil {
		return Job{}, false, a.err
	}
	return Job{ID: id, Status: a.status}, a.held, nil
}

// gaps returns the clock time between the starts of consecutive calls.
func (f *fakeWatcher) gaps() []time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []time.Duration
	for i := 1; i < len(f.calls); i++ {
		out = append(out, f.calls[i].at.Sub(f.calls[i-1].at))
	}
	return out
}

// runWait runs Wait on the fake clock, moving the clock 250 ms each time
// Wait pauses on a timer, until it returns.
func runWait(t *testing.T, w *fakeWatcher, o WaitOptions) (Job, error) {
	t.Helper()
	o.Clock = w.clk
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	type result struct {
		j   Job
		err error
	}
	done := make(chan result, 1)
	go func() {
		j, err := Wait(ctx, w, "job-0000000000000001", o)
		done <- result{j, err}
	}()
	for {
		pending := make(chan error, 1)
		bctx, bcancel := context.WithCancel(ctx)
		go func() { pending <- w.clk.BlockUntil(bctx, 1) }()
		select {
		case r := <-done:
			bcancel()
			<-pending
			return r.j, r.err
		case err := <-pending:
			bcancel()
			if err != nil {
				t.Fatalf("Wait neither returned nor paused: %v", err)
			}
			w.clk.Advance(250 * time.Millisecond)
		}
	}
}

func TestWait(t *testing.T) {
	hiccup := errors.New("connection refused")
	tests := []struct {
		name   string
		script []answer
		limit  time.Duration
		// wantStatus and wantErr are Wait's outcome.
		wantStatus Status
		wantErr    error
		// wantGaps are the clock times between requests.
		wantGaps []time.Duration
		// wantChanges are the statuses OnChange saw.
		wantChanges []Status
	}{
		{
			name: "long polls follow each change at once",
			script: []answer{{status: StatusBooting}, {status: StatusRunning, held: true, hold: 20 * time.Second},
				{status: StatusRunning, held: true, hold: 30 * time.Second}, {status: StatusSucceeded, held: true, hold: 5 * time.Second}},
			limit: time.Hour, wantStatus: StatusSucceeded,
			wantGaps:    []time.Duration{0, 20 * time.Second, 30 * time.Second},
			wantChanges: []Status{StatusBooting, StatusRunning, StatusSucceeded},
		},
		{
			name: "an older reaper is polled with growing pauses",
			script: []answer{{status: StatusRunning}, {status: StatusRunning}, {status: StatusRunning},
				{status: StatusRunning}, {status: StatusRunning}, {status: StatusRunning}, {status: StatusFailed}},
			limit: time.Hour, wantStatus: StatusFailed,
			wantGaps:    []time.Duration{0, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 15 * time.Second},
			wantChanges: []Status{StatusRunning, StatusFailed},
		},
		{
			name:   "errors are retried with a backoff, a change resets it",
			script: []answer{{err: hiccup}, {err: hiccup}, {status: StatusRunning}, {status: StatusRunning}, {status: StatusLost}},
			limit:  time.Hour, wantStatus: StatusLost,
			wantGaps:    []time.Duration{time.Second, 2 * time.Second, 0, time.Second},
			wantChanges: []Status{StatusRunning, StatusLost},
		},
		{
			name:   "the limit ends the wait; the last hold is cut to what remains",
			script: []answer{{status: StatusRunning}, {status: StatusRunning, held: true, hold: time.Hour}},
			limit:  70 * time.Second, wantStatus: StatusRunning, wantErr: ErrWaitExpired,
			wantGaps:    []time.Duration{0, 30 * time.Second, 30 * time.Second},
			wantChanges: []Status{StatusRunning},
		},
		{
			name:   "errors until the limit",
			script: []answer{{err: hiccup}},
			limit:  5 * time.Second, wantErr: ErrWaitExpired,
			wantGaps: []time.Duration{time.Second, 2 * time.Second},
		},
		{
			name:   "an error not worth retrying ends the wait at once",
			script: []answer{{err: hiccup}, {status: StatusRunning}, {err: errRefused}},
			limit:  time.Hour, wantStatus: StatusRunning, wantErr: errRefused,
			wantGaps:    []time.Duration{time.Second, 0},
			wantChanges: []Status{StatusRunning},
		},
		{
			name:   "an unknown job ends the wait at once",
			script: []answer{{status: StatusRunning}, {err: ErrNotFound}},
			limit:  time.Hour, wantStatus: StatusRunning, wantErr: ErrNotFound,
			wantGaps:    []time.Duration{0},
			wantChanges: []Status{StatusRunning},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := &fakeWatcher{clk: clock.NewFake(time.Date(2030, 1, 2, 3, 0, 0, 0, time.UTC)), script: tt.script}
			var changes []Status
			j, err := runWait(t, w, WaitOptions{Limit: tt.limit, OnChange: func(j Job) { changes = append(changes, j.Status) },
				Retry: func(err error) bool { return !errors.Is(err, errRefused) }})
			if tt.wantErr == nil && err != nil || tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("Wait error = %v; want %v", err, tt.wantErr)
			}
			if j.Status != tt.wantStatus {
				t.Errorf("Wait status = %q; want %q", j.Status, tt.wantStatus)
			}
			if got := w.gaps(); !slices.Equal(got, tt.wantGaps) {
				t.Errorf("time between requests = %v; want %v", got, tt.wantGaps)
			}
			if !slices.Equal(changes, tt.wantChanges) {
				t.Errorf("OnChange saw %v; want %v", changes, tt.wantChanges)
			}
		})
	}
}

// TestWaitAsksForTheStatusItKnows: each request names the status the last
// answer gave, so the reaper holds it until that changes, and asks to hold
// it no longer than the limit leaves.
func TestWaitAsksForTheStatusItKnows(t *testing.T) {
	w := &fakeWatcher{clk: clock.NewFake(time.Date(2030, 1, 2, 3, 0, 0, 0, time.UTC)), script: []answer{
		{status: StatusBooting}, {status: StatusRunning, held: true, hold: time.Second}, {status: StatusSucceeded, held: true, hold: time.Second}}}
	if _, err := runWait(t, w, WaitOptions{Limit: 45 * time.Second}); err != nil {
		t.Fatal(err)
	}
	want := []call{{since: "", hold: 30 * time.Second}, {since: StatusBooting, hold: 30 * time.Second}, {since: StatusRunning, hold: 30 * time.Second}}
	if len(w.calls) != len(want) {
		t.Fatalf("%d requests; want %d", len(w.calls), len(want))
	}
	for i, c := range w.calls {
		if c.since != want[i].since || c.hold != want[i].hold {
			t.Errorf("request %d asked since %q hold %s; want since %q hold %s", i, c.since, c.hold, want[i].since, want[i].hold)
		}
	}
	w = &fakeWatcher{clk: clock.NewFake(time.Date(2030, 1, 2, 3, 0, 0, 0, time.UTC)), script: []answer{
		{status: StatusRunning}, {status: StatusRunning, held: true, hold: time.Hour}}}
	_, _ = runWait(t, w, WaitOptions{Limit: 45 * time.Second})
	if got := w.calls[2].hold; got != 15*time.Second {
		t.Errorf("the last request asked a hold of %s; want the 15s the limit leaves", got)
	}
}

// TestWaitStopsWithItsContext: a cancelled context ends a pause at once.
func TestWaitStopsWithItsContext(t *testing.T) {
	clk := clock.NewFake(time.Date(2030, 1, 2, 3, 0, 0, 0, time.UTC))
	w := &fakeWatcher{clk: clk, script: []answer{{status: StatusRunning}}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := Wait(ctx, w, "job-0000000000000001", WaitOptions{Limit: time.Hour, Clock: clk})
		done <- err
	}()
	bctx, bcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer bcancel()
	if err := clk.BlockUntil(bctx, 1); err != nil {
		t.Fatalf("Wait did not pause: %v", err)
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Wait error = %v; want context.Canceled", err)
		}
	case <-bctx.Done():
		t.Fatal("Wait did not return after its context was cancelled")
	}
}
