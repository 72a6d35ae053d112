// Package clock lets code ask for the time and wait for it through an
// interface, so tests can move time forward instead of sleeping.
package clock

import (
	"context"
	"sync"
	"time"
)

// Clock tells the current time.
type Clock interface {
	Now() time.Time
}

// Timers makes timers that fire on a clock's time.
type Timers interface {
	// NewTimer returns a timer that fires once d has passed.
	NewTimer(d time.Duration) *Timer
}

// Timer is a single wake-up, like time.Timer.
type Timer struct {
	// C receives the clock's time when the timer fires.
	C    <-chan time.Time
	stop func() bool
}

// Stop keeps the timer from firing. It reports whether it did so (false:
// the timer had already fired or been stopped).
func (t *Timer) Stop() bool { return t.stop() }

// Real is the wall clock.
type Real struct{}

// Now returns time.Now().
func (Real) Now() time.Time { return time.Now() }

// NewTimer returns a runtime timer (time.NewTimer).
func (Real) NewTimer(d time.Duration) *Timer {
	t := time.NewTimer(d)
	return &Timer{C: t.C, stop: t.Stop}
}

// Fake is a clock that moves only when told to; its timers fire when
// Advance or Set moves it to or past their time. It is safe for concurrent
// use.
type Fake struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
	// changed is closed (and replaced) when a timer is added or the clock moves.
	changed chan struct{}
}

type fakeTimer struct {
	at time.Time
	ch chan time.Time
}

// NewFake returns a fake clock set to t.
func NewFake(t time.Time) *Fake { return &Fake{now: t, changed: make(chan struct{})} }

// Now returns the fake clock's current time.
func (f *Fake) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

// Advance moves the clock forward by d and fires the timers that are due.
func (f *Fake) Advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = f.now.Add(d)
	f.fireLocked()
	f.notifyLocked()
}

// Set moves the clock to t and fires the timers that are due.
func (f *Fake) Set(t time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = t
	f.fireLocked()
	f.notifyLocked()
}

// NewTimer returns a timer that fires when the clock reaches Now()+d; one
// for d <= 0 has fired already.
func (f *Fake) NewTimer(d time.Duration) *Timer {
	f.mu.Lock()
	defer f.mu.Unlock()
	ft := &fakeTimer{at: f.now.Add(d), ch: make(chan time.Time, 1)}
	if d <= 0 {
		ft.ch <- f.now
		return &Timer{C: ft.ch, stop: func() bool { return false }}
	}
	f.timers = append(f.timers, ft)
	f.notifyLocked()
	return &Timer{C: ft.ch, stop: func() bool { return f.remove(ft) }}
}

// Pending is the number of timers that have neither fired nor been stopped.
func (f *Fake) Pending() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.timers)
}

// BlockUntil waits until at least n timers are pending, e.g. until the
// goroutines under test all wait on the clock, or until ctx is done.
func (f *Fake) BlockUntil(ctx context.Context, n int) error {
	return f.blockUntil(ctx, n, -1)
}

// BlockUntilDue waits until at least n pending timers are due within d of
// the clock's time, or until ctx is done. It tells timers apart by their
// time: e.g. the short wait a goroutine starts next from a long timeout it
// stopped.
func (f *Fake) BlockUntilDue(ctx context.Context, n int, d time.Duration) error {
	return f.blockUntil(ctx, n, d)
}

// blockUntil waits for n pending timers due within d (d < 0: any).
func (f *Fake) blockUntil(ctx context.Context, n int, d time.Duration) error {
	for {
		f.mu.Lock()
		count := 0
		for _, t := range f.timers {
			if d < 0 || !t.at.After(f.now.Add(d)) {
				count++
			}
		}
		if count >= n {
			f.mu.Unlock()
			return nil
		}
		if f.changed == nil {
			f.changed = make(chan struct{})
		}
		changed := f.changed
		f.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (f *Fake) remove(ft *fakeTimer) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, t := range f.timers {
		if t == ft {
			f.timers = append(f.timers[:i], f.timers[i+1:]...)
			return true
		}
	}
	return false
}

// fireLocked fires and drops the timers that are due (f.mu held).
func (f *Fake) fireLocked() {
	kept := f.timers[:0]
	for _, t := range f.timers {
		if t.at.After(f.now) {
			kept = append(kept, t)
			continue
		}
		t.ch <- f.now
	}
	clear(f.timers[len(kept):])
	f.timers = kept
}

// notifyLocked wakes the goroutines in BlockUntil (f.mu held).
func (f *Fake) notifyLocked() {
	if f.changed != nil {
		close(f.changed)
	}
	f.changed = make(chan struct{})
}
