package pvesim

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"
)

// VM is a snapshot of one simulated guest, for tests and tools.
type VM struct {
	VMID int
	Node string
	// Config is the active configuration as stored (values as in the .conf file).
	Config map[string]string
	// Pending holds changes waiting for the next start; PendingDelete the
	// options to delete then ("!opt" when forced).
	Pending       map[string]string
	PendingDelete []string
	Running       bool
	StartedAt     time.Time
	// BootTime is how long the running VM takes to boot since StartedAt:
	// its guest agent reports an address from StartedAt+BootTime on
	// (boot.go). Zero when stopped. Benchmarks compute critical paths from it.
	BootTime time.Duration
	Pool     string
}

// VM returns a copy of VM vmid.
func (s *Server) VM(vmid int) (VM, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.st.VMs[vmid]
	if v == nil {
		return VM{}, false
	}
	var boot time.Duration
	if v.Running {
		boot = s.bootTime(v.VMID, v.PID)
	}
	return VM{
		VMID: v.VMID, Node: v.Node, Config: copyMap(v.Conf), Pending: copyMap(v.Pending),
		PendingDelete: append([]string(nil), v.PendingDelete...), Running: v.Running,
		StartedAt: v.StartedAt, BootTime: boot, Pool: v.Pool,
	}, true
}

// VMConfig returns a copy of VM vmid's active configuration.
func (s *Server) VMConfig(vmid int) (map[string]string, bool) {
	v, ok := s.VM(vmid)
	return v.Config, ok
}

// VMIDs returns the IDs of all guests, templates included, in ascending order.
func (s *Server) VMIDs() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st.sortedVMIDs()
}

func copyMap(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// Volume returns the bytes of an uploaded volume. volid is "storage:volname"
// (e.g. "local:iso/cidata.iso") or just the volname; it is looked up on every
// node. ok is false when no such volume exists; allocated disk images exist
// but have no bytes.
func (s *Server) Volume(storage, volid string) ([]byte, bool) {
	if !strings.Contains(volid, ":") {
		volid = storage + ":" + volid
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range s.nodes {
		if v := s.volumeLocked(n, volid); v != nil {
			return append([]byte(nil), v.Data...), true
		}
	}
	return nil, false
}

// VolumeInfo describes one storage volume.
type VolumeInfo struct {
	Node, Storage, Volid, Content, Format string
	Size                                  int64
	VMID                                  int
	// Parent is the base volume of a linked clone.
	Parent string
}

// Volumes lists the volumes on node (all nodes when node is ""), sorted by node and volid.
func (s *Server) Volumes(node string) []VolumeInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []VolumeInfo
	for _, v := range s.st.Volumes {
		if node != "" && v.Node != node {
			continue
		}
		out = append(out, VolumeInfo{Node: v.Node, Storage: v.Storage, Volid: v.Volid, Content: v.Content,
			Format: v.Format, Size: v.Size, VMID: v.VMID, Parent: v.Parent})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Node != out[j].Node {
			return out[i].Node < out[j].Node
		}
		return out[i].Volid < out[j].Volid
	})
	return out
}

// TaskInfo describes one task.
type TaskInfo struct {
	UPID, Node, Type, ID, User string
	Running                    bool
	// ExitStatus is "OK" or the error text once the task stopped.
	ExitStatus string
	Log        []string
}

// Tasks returns all tasks in the history, oldest first.
func (s *Server) Tasks() []TaskInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]TaskInfo, 0, len(s.st.Tasks))
	for _, t := range s.st.Tasks {
		out = append(out, TaskInfo{UPID: t.UPID, Node: t.Node, Type: t.Type, ID: t.ID, User: t.User,
			Running: t.Running, ExitStatus: t.ExitStatus, Log: append([]string(nil), t.Log...)})
	}
	return out
}

// WaitTask blocks until the task upid stops or ctx ends, and returns it.
func (s *Server) WaitTask(ctx context.Context, upid string) (TaskInfo, error) {
	s.mu.Lock()
	t := s.findTaskLocked(upid)
	if t == nil {
		s.mu.Unlock()
		return TaskInfo{}, fmt.Errorf("no such task %q", upid)
	}
	done := t.done
	s.mu.Unlock()
	if done != nil {
		select {
		case <-done:
		case <-ctx.Done():
			return TaskInfo{}, fmt.Errorf("wait for task %s: %w", upid, ctx.Err())
		}
	}
	for _, ti := range s.Tasks() {
		if ti.UPID == upid {
			return ti, nil
		}
	}
	return TaskInfo{}, fmt.Errorf("no such task %q", upid)
}

// SetLock sets (or with "" clears) the config lock of VM vmid, as an
// interrupted backup or clone would leave it; for tests of locked VMs.
func (s *Server) SetLock(vmid int, lock string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.st.VMs[vmid]
	if v == nil {
		return fmt.Errorf("no VM %d", vmid)
	}
	if lock == "" {
		delete(v.Conf, "lock")
	} else {
		v.Conf["lock"] = lock
	}
	s.markDirtyLocked()
	return nil
}

// HoldConfigLock takes VM vmid's config file lock (exclusive) as a long
// operation would, so that tests can provoke "can't lock file ... got
// timeout". Call the returned function to release it.
func (s *Server) HoldConfigLock(ctx context.Context, vmid int) (release func(), err error) {
	return s.lockConfig(ctx, vmid)
}

// Latency returns the timing model in use.
func (s *Server) Latency() Latency { return s.opts.Latency }
