package pvesim

import (
	"context"
	"time"
)

// flock models PVE's per-VM config file lock (/var/lock/qemu-server/lock-N.conf):
// shared or exclusive, acquired with a timeout. Its fields are guarded by
// Server.mu; waiters never hold Server.mu while they wait.
type flock struct {
	readers int
	writer  bool
	// released is closed (and replaced) whenever the lock is released.
	released chan struct{}
}

// lockConfig takes VM vmid's config lock exclusively, waiting up to the
// config lock timeout, as qemu-server's lock_config does around a change.
func (s *Server) lockConfig(ctx context.Context, vmid int) (func(), error) {
	return s.lockVM(ctx, vmid, true, s.opts.Latency.configLockTimeout())
}

// lockVM acquires VM vmid's config lock, exclusive or shared, waiting up to
// timeout. The error text is PVE's "can't lock file ... - got timeout".
// The returned function releases the lock.
func (s *Server) lockVM(ctx context.Context, vmid int, exclusive bool, timeout time.Duration) (func(), error) {
	var deadline <-chan time.Time
	for {
		s.mu.Lock()
		fl := s.flocks[vmid]
		if fl == nil {
			fl = &flock{released: make(chan struct{})}
			s.flocks[vmid] = fl
		}
		free := !fl.writer && (!exclusive || fl.readers == 0)
		if free {
			if exclusive {
				fl.writer = true
			} else {
				fl.readers++
			}
			s.mu.Unlock()
			return func() { s.unlockVM(vmid, exclusive) }, nil
		}
		wait := fl.released
		s.mu.Unlock()
		if deadline == nil {
			t := s.timers.NewTimer(timeout)
			defer t.Stop()
			deadline = t.C
		}
		select {
		case <-wait:
		case <-deadline:
			return nil, fail("%s", lockTimeoutMsg(vmid))
		case <-ctx.Done():
			return nil, fail("%s", lockTimeoutMsg(vmid))
		case <-s.ctx.Done():
			return nil, fail("interrupted by signal")
		}
	}
}

func (s *Server) unlockVM(vmid int, exclusive bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fl := s.flocks[vmid]
	if fl == nil {
		return
	}
	if exclusive {
		fl.writer = false
	} else if fl.readers > 0 {
		fl.readers--
	}
	close(fl.released)
	fl.released = make(chan struct{})
	if !fl.writer && fl.readers == 0 {
		delete(s.flocks, vmid)
	}
}
