package main

import (
	"context"
	"time"
)

// pollSchedule is the interval between guest agent polls: from min growing
// by half each time up to max; min == max is a fixed interval.
type pollSchedule struct {
	min, max time.Duration
}

// newPollSchedule returns a fixed interval, or for 0 the backoff
// internal/pve's WaitForIP uses (250ms growing by half up to 5s).
func newPollSchedule(fixed time.Duration) pollSchedule {
	if fixed > 0 {
		return pollSchedule{min: fixed, max: fixed}
	}
	return pollSchedule{min: 250 * time.Millisecond, max: 5 * time.Second}
}

func (s pollSchedule) first() time.Duration { return s.min }

func (s pollSchedule) next(d time.Duration) time.Duration { return min(d*3/2, s.max) }

// String describes the schedule for the report.
func (s pollSchedule) String() string {
	if s.min == s.max {
		return "every " + s.min.String()
	}
	return s.min.String() + " growing by half to " + s.max.String()
}

// sleepCtx waits for d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
