package reconcile

import "sync"

// vmLocks serialises the operations that change one VM (destroy, stop,
// renewal, heartbeat) inside this process, so that a heartbeat cannot slip in
// between the reaper's last look at a lease and its destroy.
type vmLocks struct {
	mu    sync.Mutex
	locks map[int]*vmLock
}

type vmLock struct {
	mu   sync.Mutex
	refs int
}

// lock locks vmid and returns the function that unlocks it.
func (v *vmLocks) lock(vmid int) (unlock func()) {
	v.mu.Lock()
	if v.locks == nil {
		v.locks = map[int]*vmLock{}
	}
	l := v.locks[vmid]
	if l == nil {
		l = &vmLock{}
		v.locks[vmid] = l
	}
	l.refs++
	v.mu.Unlock()

	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		v.mu.Lock()
		l.refs--
		if l.refs == 0 {
			delete(v.locks, vmid)
		}
		v.mu.Unlock()
	}
}

// waiters returns how many callers wait for vmid's lock (tests use it to
// observe a blocked caller).
func (v *vmLocks) waiters(vmid int) int {
	v.mu.Lock()
	defer v.mu.Unlock()
	if l := v.locks[vmid]; l != nil {
		return l.refs - 1
	}
	return 0
}
