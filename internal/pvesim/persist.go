package pvesim

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// State persistence (Options.StateDir).
//
// The whole state (VMs, volumes with uploaded bytes, task history, the next
// PID) is written as one JSON file, state.json, through a temporary file and
// a rename, so a crash leaves the old or the new state, never a torn one.
// Writes are debounced: a change schedules one write StateFlushDelay later,
// however many changes follow, so 10,000 VMs cost a few writes per second at
// most. Close writes the final state.
//
// On restart, tasks that were still running (the simulator stopped while
// they ran) end as stopped with exitstatus "unexpected status" (what PVE shows
// for a worker that vanished), and the config locks they had set (lock:
// clone, lock: create) are cleared; a clone interrupted that way leaves its
// target VM with whatever config it had, like a crashed PVE node would.
// VMs that were running stay running.

const stateFile = "state.json"

type persister struct {
	dir string

	mu      sync.Mutex // serialises writes
	pending bool       // a write is scheduled (guarded by Server.mu)
}

// openPersister prepares dir and loads a saved state, if any.
func openPersister(dir string) (*persister, *state, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("create state dir: %w", err)
	}
	p := &persister{dir: dir}
	data, err := os.ReadFile(filepath.Join(dir, stateFile))
	if errors.Is(err, fs.ErrNotExist) {
		return p, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("read state: %w", err)
	}
	st := newState()
	if err := json.Unmarshal(data, st); err != nil {
		return nil, nil, fmt.Errorf("decode state %s: %w", filepath.Join(dir, stateFile), err)
	}
	if st.VMs == nil {
		st.VMs = map[int]*vmState{}
	}
	if st.Volumes == nil {
		st.Volumes = map[string]*volume{}
	}
	return p, st, nil
}

// write stores data atomically.
func (p *persister) write(data []byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	tmp, err := os.CreateTemp(p.dir, stateFile+".tmp*")
	if err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write state: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("sync state: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("close state: %w", err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(p.dir, stateFile)); err != nil {
		return fmt.Errorf("rename state: %w", err)
	}
	return nil
}

// restore installs a loaded state, ending interrupted tasks.
func (s *Server) restore(st *state) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock.Now().Unix()
	for _, t := range st.Tasks {
		if !t.Running {
			continue
		}
		t.Running = false
		t.EndTime = now
		t.ExitStatus = "unexpected status"
		for _, id := range t.LockedVMs {
			if v := st.VMs[id]; v != nil {
				delete(v.Conf, "lock")
			}
		}
	}
	for _, v := range st.VMs {
		if v.Conf == nil {
			v.Conf = map[string]string{}
		}
		if l := v.Conf["lock"]; l == "destroyed" {
			delete(v.Conf, "lock")
		}
	}
	if st.NextPID < 0x1000 {
		st.NextPID = 0x1000
	}
	s.st = st
}

// markDirtyLocked schedules a debounced state write (s.mu held).
func (s *Server) markDirtyLocked() {
	if s.persist == nil || s.persist.pending || s.closed {
		return
	}
	s.persist.pending = true
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTimer(s.opts.StateFlushDelay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-s.ctx.Done():
			return // Close writes the final state
		}
		s.mu.Lock()
		s.persist.pending = false
		data, err := s.snapshotLocked()
		s.mu.Unlock()
		if err != nil {
			s.log.Error("encode state", "err", err)
			return
		}
		if err := s.persist.write(data); err != nil {
			s.log.Error("persist state", "err", err)
		}
	}()
}

func (s *Server) snapshotLocked() ([]byte, error) {
	data, err := json.Marshal(s.st)
	if err != nil {
		return nil, fmt.Errorf("encode state: %w", err)
	}
	return data, nil
}
