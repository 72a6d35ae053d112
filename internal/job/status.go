// Package job holds what the reaper and the provider share about jobs: the
// status state machine, the wire types of the control API and the guest
// listener, job IDs and the rule that makes an artifact name safe.
//
// A job runs a task from a git repository in a fresh sandbox. The provider
// registers it with the reaper and creates the sandbox; the runner inside the
// sandbox fetches its spec, streams its log, uploads artifacts and reports
// the exit code; the reaper destroys the sandbox when the job ends.
package job

import (
	"errors"
	"fmt"
)

// Status is where a job stands.
type Status string

// The statuses of a job, in the order a job normally goes through them.
const (
	// StatusRequested is a job registered with the reaper, no sandbox yet.
	StatusRequested Status = "requested"
	// StatusProvisioning is a job whose sandbox is being created.
	StatusProvisioning Status = "provisioning"
	// StatusBooting is a job whose sandbox is starting; the runner has not
	// reported yet.
	StatusBooting Status = "booting"
	// StatusRunning is a job whose runner has started the task.
	StatusRunning Status = "running"
	// StatusSucceeded is a job whose task exited 0.
	StatusSucceeded Status = "succeeded"
	// StatusFailed is a job whose task exited non-zero, or that could not be
	// run, or that was cancelled (Reason says which).
	StatusFailed Status = "failed"
	// StatusTimedOut is a job whose task outlived its timeout.
	StatusTimedOut Status = "timed_out"
	// StatusLost is a job whose sandbox vanished or stopped sending heartbeats.
	StatusLost Status = "lost"
)

// Statuses returns every status, in display order.
func Statuses() []Status {
	return []Status{StatusRequested, StatusProvisioning, StatusBooting, StatusRunning,
		StatusSucceeded, StatusFailed, StatusTimedOut, StatusLost}
}

// Valid reports whether s is one of the statuses.
func (s Status) Valid() bool {
	for _, v := range Statuses() {
		if s == v {
			return true
		}
	}
	return false
}

// Ended reports whether s is final: succeeded, failed, timed_out or lost.
func (s Status) Ended() bool {
	switch s {
	case StatusSucceeded, StatusFailed, StatusTimedOut, StatusLost:
		return true
	}
	return false
}

// rank orders the statuses a job goes through before it ends.
func (s Status) rank() int {
	switch s {
	case StatusRequested:
		return 0
	case StatusProvisioning:
		return 1
	case StatusBooting:
		return 2
	case StatusRunning:
		return 3
	}
	return 4
}

// ErrTransition is a status change the state machine does not allow.
var ErrTransition = errors.New("job status change not allowed")

// CanTransition reports whether a job may go from status from to status to:
// forward through requested, provisioning, booting and running (steps may be
// skipped, as when the runner reports before the provider does), from any of
// these to an end, and never out of an end. Staying in a status that has not
// ended is allowed, so a repeated report is harmless.
func CanTransition(from, to Status) bool {
	if !from.Valid() || !to.Valid() || from.Ended() {
		return false
	}
	return to.Ended() || to.rank() >= from.rank()
}

// Transition returns nil when from → to is allowed, else an error wrapping
// ErrTransition that names both.
func Transition(from, to Status) error {
	if CanTransition(from, to) {
		return nil
	}
	if from.Ended() {
		return fmt.Errorf("%w: the job already ended as %s", ErrTransition, from)
	}
	return fmt.Errorf("%w: from %s to %s", ErrTransition, from, to)
}

// ErrNotFound is a job the reaper does not know (never registered, or
// removed by retention).
var ErrNotFound = errors.New("job not found")
