package pvesim

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
)

// State persistence (Options.StateDir).
//
// A change the simulator has answered survives a crash (kill -9), as a
// change PVE has answered is in /etc/pve (pmxcfs writes before it answers):
// every answer waits until the state it shows is on disk. Writes use group
// commit: one writer goroutine writes the whole state (state.json, through a
// temporary file, fsync and a rename, so a crash leaves the old or the new
// state, never a torn one), and every call that changed something while a
// write was running waits for the next write, which covers all of them. The
// cost of a write therefore grows with the size of the state, not with the
// number of calls (BenchmarkDurableConfigWrite measures it). Uploaded bytes
// (seed ISOs) are written once each, to volumes/<sha256>, outside state.json.
// Worker tasks mark their changes too (a clone's placeholder config is
// durable before its disks are made); they do not wait for the write.
//
// On restart, tasks that were still running (the simulator died or stopped
// while they ran) end as stopped with exitstatus "unexpected status", which
// is what PVE shows for a worker that vanished. Config locks stay: PVE keeps
// "lock: clone" in the VM's config file, so a clone interrupted by a crash
// leaves the placeholder its worker last wrote ("lock: clone" alone before
// any disk was copied, then the config with the disks copied so far, still
// locked) until root runs "qm unlock" and destroys it; disks already made
// stay on storage, owned by the target VMID. Every other lock ("create",
// "destroyed", ...) stays too. VMs that were running stay running.

const (
	stateFile = "state.json"
	blobDir   = "volumes"
)

type persister struct {
	dir string
	// written are the blobs known to be on disk (guarded by Server.mu).
	written map[string]bool
	mu      sync.Mutex // serialises writes
}

// blob is uploaded data to store under volumes/.
type blob struct {
	name string
	data []byte
}

// openPersister prepares dir and loads a saved state, if any.
func openPersister(dir string) (*persister, *state, error) {
	if err := os.MkdirAll(filepath.Join(dir, blobDir), 0o700); err != nil {
		return nil, nil, fmt.Errorf("create state dir: %w", err)
	}
	p := &persister{dir: dir, written: map[string]bool{}}
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
	for _, v := range st.Volumes {
		if len(v.InlineData) > 0 {
			v.Data, v.InlineData = v.InlineData, nil
		}
		if v.DataFile == "" {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, blobDir, v.DataFile))
		if err != nil {
			return nil, nil, fmt.Errorf("read data of volume %s: %w", v.Volid, err)
		}
		v.Data = b
		p.written[v.DataFile] = true
	}
	return p, st, nil
}

// write stores the blobs not yet on disk, then data as state.json, atomically.
func (p *persister) write(data []byte, blobs []blob) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, b := range blobs {
		if err := p.writeFile(filepath.Join(p.dir, blobDir), b.name, b.data); err != nil {
			return err
		}
	}
	return p.writeFile(p.dir, stateFile, data)
}

func (p *persister) writeFile(dir, name string, data []byte) error {
	tmp, err := os.CreateTemp(dir, name+".tmp*")
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
	if err := os.Rename(tmp.Name(), filepath.Join(dir, name)); err != nil {
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
	}
	for _, v := range st.VMs {
		if v.Conf == nil {
			v.Conf = map[string]string{}
		}
	}
	if st.NextPID < 0x1000 {
		st.NextPID = 0x1000
	}
	s.st = st
}

// markDirtyLocked records a change to the state and wakes the writer (s.mu held).
func (s *Server) markDirtyLocked() {
	if s.persist == nil {
		return
	}
	s.dirtyGen++
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// writer writes the state whenever it changed, until the server closes.
func (s *Server) writer() {
	defer s.wg.Done()
	defer func() {
		// Wake the waiters: the server is closing (Close writes the state).
		s.mu.Lock()
		s.durable.Broadcast()
		s.mu.Unlock()
	}()
	for {
		select {
		case <-s.kick:
		case <-s.ctx.Done():
			return
		}
		s.mu.Lock()
		gen := s.dirtyGen
		data, blobs, err := s.snapshotLocked()
		s.mu.Unlock()
		if err == nil {
			err = s.persist.write(data, blobs)
		}
		s.mu.Lock()
		s.writtenGen = gen
		s.writeErr = err
		if err == nil {
			s.durableGen = gen
			for _, b := range blobs {
				s.persist.written[b.name] = true
			}
		} else {
			s.log.Error("persist state", "err", err)
		}
		s.durable.Broadcast()
		s.mu.Unlock()
	}
}

// waitDurable waits until every change made so far is on disk. It fails
// when the write failed; a closing server writes the state in Close.
func (s *Server) waitDurable() error {
	if s.persist == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	gen := s.dirtyGen
	for s.durableGen < gen && !s.closed {
		if s.writtenGen >= gen && s.writeErr != nil {
			return fail("unable to write state: %v", s.writeErr)
		}
		s.durable.Wait()
	}
	return nil
}

// snapshotLocked encodes the state and collects uploaded data not yet named
// (s.mu held).
func (s *Server) snapshotLocked() ([]byte, []blob, error) {
	var blobs []blob
	for _, v := range s.st.Volumes {
		if len(v.Data) == 0 {
			continue
		}
		if v.DataFile == "" {
			sum := sha256.Sum256(v.Data)
			v.DataFile = hex.EncodeToString(sum[:])
		}
		if !s.persist.written[v.DataFile] {
			blobs = append(blobs, blob{name: v.DataFile, data: v.Data})
		}
	}
	data, err := encodeStateLocked(s.st)
	if err != nil {
		return nil, nil, fmt.Errorf("encode state: %w", err)
	}
	return data, blobs, nil
}

// encodeStateLocked is json.Marshal(st), reusing the cached encoding of
// stopped tasks: the history holds up to maxTasks of them, and encoding it
// anew on every write would hold Server.mu for milliseconds.
func encodeStateLocked(st *state) ([]byte, error) {
	vms, err := json.Marshal(st.VMs)
	if err != nil {
		return nil, err
	}
	vols, err := json.Marshal(st.Volumes)
	if err != nil {
		return nil, err
	}
	size := len(vms) + len(vols) + 128
	encs := make([][]byte, len(st.Tasks))
	for i, t := range st.Tasks {
		enc := t.enc
		if enc == nil {
			if enc, err = json.Marshal(t); err != nil {
				return nil, err
			}
			if !t.Running {
				t.enc = enc
			}
		}
		encs[i] = enc
		size += len(enc) + 1
	}
	// The field names are state's JSON tags (TestEncodeStateMatchesMarshal).
	b := bytes.NewBuffer(make([]byte, 0, size))
	b.WriteString(`{"vms":`)
	b.Write(vms)
	b.WriteString(`,"volumes":`)
	b.Write(vols)
	b.WriteString(`,"tasks":[`)
	for i, enc := range encs {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(enc)
	}
	fmt.Fprintf(b, `],"next_pid":%d,"mac_seq":%d}`, st.NextPID, st.MACSeq)
	return b.Bytes(), nil
}
