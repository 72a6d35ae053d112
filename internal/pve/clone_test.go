package pve

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

func cloneReq(nonce string) CloneRequest {
	return CloneRequest{Node: "pve", SourceVMID: 9000, Name: "sbx", Nonce: nonce,
		Description: "sandbox\n<!-- agentlab nonce=" + nonce + " -->"}
}

func TestCloneParallelDistinctVMIDs(t *testing.T) {
	f := newFakePVE(t)
	for _, id := range []int{100, 101, 105, 130} {
		f.addVM(id, "someone else's")
	}
	c, _ := newTestClient(t, f.srv)
	const n = 50
	refs := make([]VMRef, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			refs[i], errs[i] = c.Clone(context.Background(), cloneReq(fmt.Sprintf("n%02d", i)))
		})
	}
	wg.Wait()
	seen := map[int]int{}
	for i := range n {
		if errs[i] != nil {
			t.Errorf("clone %d: %v", i, errs[i])
			continue
		}
		if prev, dup := seen[refs[i].VMID]; dup {
			t.Errorf("clones %d and %d both got vmid %d", prev, i, refs[i].VMID)
		}
		seen[refs[i].VMID] = i
		cfg, ok := f.vm(refs[i].VMID)
		if !ok {
			t.Errorf("clone %d: vm %d does not exist", i, refs[i].VMID)
			continue
		}
		if d, _ := cfg["description"].(string); !strings.Contains(d, fmt.Sprintf("nonce=n%02d", i)) {
			t.Errorf("clone %d: vm %d has description %q; want its own nonce", i, refs[i].VMID, d)
		}
		if refs[i].Node != "pve" {
			t.Errorf("clone %d: got node %q; want pve", i, refs[i].Node)
		}
	}
	for _, id := range []int{100, 101, 105, 130} {
		if cfg, _ := f.vm(id); cfg["description"] != "someone else's" {
			t.Errorf("vm %d was touched: %v", id, cfg)
		}
	}
	if got, want := f.count(), n+5; got != want {
		t.Errorf("got %d vms; want %d (template, 4 others, %d clones)", got, want, n)
	}
	if got := f.calls(); got != n {
		t.Errorf("got %d clone calls; want %d (no duplicate attempts)", got, n)
	}
	if len(c.alloc.reserved) != 0 {
		t.Errorf("got reservations %v left; want none", c.alloc.reserved)
	}
}

// TestCloneTrustsNextID: the VMID /cluster/nextid answers is cloned to
// without asking about it again; a candidate past it (taken by a clone in
// flight in this process) is checked first.
func TestCloneTrustsNextID(t *testing.T) {
	f := newFakePVE(t)
	f.addVM(100, "x")
	c, _ := newTestClient(t, f.srv)
	ref, err := c.Clone(context.Background(), cloneReq("a"))
	if err != nil || ref.VMID != 101 {
		t.Fatalf("got %v, %v; want vm 101", ref, err)
	}
	checks := func() int { f.mu.Lock(); defer f.mu.Unlock(); return f.nextIDChecks }
	if n := checks(); n != 0 {
		t.Errorf("got %d checks of a vmid; want none for nextid's own answer", n)
	}
	if !c.alloc.reserveExact(102) { // a clone in flight holds nextid's next answer
		t.Fatal("102 is reserved already")
	}
	ref, err = c.Clone(context.Background(), cloneReq("b"))
	if err != nil || ref.VMID != 103 {
		t.Fatalf("got %v, %v; want vm 103", ref, err)
	}
	if n := checks(); n != 1 {
		t.Errorf("got %d checks of a vmid; want 1, for 103", n)
	}
}

func TestCloneRange(t *testing.T) {
	f := newFakePVE(t)
	f.addVM(500, "x")
	c, _ := newTestClient(t, f.srv, func(cfg *Config) { cfg.VMIDMin, cfg.VMIDMax = 500, 502 })
	var got []int
	for i := range 2 {
		ref, err := c.Clone(context.Background(), cloneReq(fmt.Sprint(i)))
		if err != nil {
			t.Fatalf("clone %d: %v", i, err)
		}
		got = append(got, ref.VMID)
	}
	if got[0] != 501 || got[1] != 502 {
		t.Errorf("got vmids %v; want [501 502]", got)
	}
	_, err := c.Clone(context.Background(), cloneReq("full"))
	if !errors.Is(err, ErrNoFreeVMID) {
		t.Errorf("got %v; want ErrNoFreeVMID", err)
	}
}

func TestCloneLostResponseIsOurs(t *testing.T) {
	f := newFakePVE(t)
	f.taskLength = 6 // the clone is still locked when the retry comes
	f.afterClone = func(call, vmid int, w http.ResponseWriter) bool {
		if call == 1 {
			dropConnection(t, w) // PVE started the clone, the answer is lost
			return true
		}
		return false
	}
	c, _ := newTestClient(t, f.srv)
	ref, err := c.Clone(context.Background(), cloneReq("abc"))
	if err != nil {
		t.Fatalf("Clone: %v", err)
	}
	if ref.VMID != 100 {
		t.Errorf("got vmid %d; want 100", ref.VMID)
	}
	if got := f.count(); got != 2 {
		t.Errorf("got %d vms; want 2 (template and one clone)", got)
	}
	if got := f.calls(); got != 2 {
		t.Errorf("got %d clone calls; want 2", got)
	}
	cfg, _ := f.vm(100)
	if _, locked := cfg["lock"]; locked {
		t.Errorf("got config %v; want the finished clone", cfg)
	}
}

func TestCloneLostResponseNotOurs(t *testing.T) {
	f := newFakePVE(t)
	f.beforeClone = func(call, vmid int, w http.ResponseWriter) bool {
		if call == 1 {
			// another client creates vmid, and our request is lost on the way
			f.addVM(vmid, "not ours")
			dropConnection(t, w)
			return true
		}
		return false
	}
	c, _ := newTestClient(t, f.srv)
	ref, err := c.Clone(context.Background(), cloneReq("abc"))
	if err != nil {
		t.Fatalf("Clone: %v", err)
	}
	if ref.VMID != 101 {
		t.Errorf("got vmid %d; want 101 (100 belongs to another client)", ref.VMID)
	}
	if cfg, _ := f.vm(100); cfg["description"] != "not ours" {
		t.Errorf("vm 100 was touched: %v", cfg)
	}
	if got := f.calls(); got != 3 {
		t.Errorf("got %d clone calls; want 3 (lost, taken, success)", got)
	}
}

func TestCloneRaceWithOtherClient(t *testing.T) {
	f := newFakePVE(t)
	f.beforeClone = func(call, vmid int, w http.ResponseWriter) bool {
		if call == 1 {
			f.addVM(vmid, "raced") // created between our nextid check and the clone
		}
		return false
	}
	c, _ := newTestClient(t, f.srv)
	ref, err := c.Clone(context.Background(), cloneReq("abc"))
	if err != nil {
		t.Fatalf("Clone: %v", err)
	}
	if ref.VMID != 101 {
		t.Errorf("got vmid %d; want 101", ref.VMID)
	}
	if cfg, _ := f.vm(100); cfg["description"] != "raced" {
		t.Errorf("vm 100 was touched: %v", cfg)
	}
}

func TestCloneRetriesTransientTaskFailure(t *testing.T) {
	f := newFakePVE(t)
	f.cloneExit = func(call int) string {
		if call == 1 {
			return "can't lock file '/var/lock/qemu-server/lock-9000.conf' - got timeout"
		}
		return "OK"
	}
	c, _ := newTestClient(t, f.srv)
	ref, err := c.Clone(context.Background(), cloneReq("abc"))
	if err != nil {
		t.Fatalf("Clone: %v", err)
	}
	if ref.VMID != 100 || f.calls() != 2 || f.count() != 2 {
		t.Errorf("got vmid %d after %d calls with %d vms; want 100 after 2 calls with 2 vms", ref.VMID, f.calls(), f.count())
	}
}

func TestClonePermanentTaskFailureReturnsRef(t *testing.T) {
	f := newFakePVE(t)
	f.cloneExit = func(int) string { return "clone failed: storage 'x' does not support vm images" }
	c, _ := newTestClient(t, f.srv)
	ref, err := c.Clone(context.Background(), cloneReq("abc"))
	var te *TaskError
	if !errors.As(err, &te) {
		t.Fatalf("got %v; want a *TaskError", err)
	}
	if ref.VMID != 100 {
		t.Errorf("got ref %v; want pve/100 so the caller can make sure it is gone", ref)
	}
	if f.calls() != 1 {
		t.Errorf("got %d calls; want 1", f.calls())
	}
}

func TestCloneExplicitVMID(t *testing.T) {
	f := newFakePVE(t)
	f.addVM(150, "x")
	c, _ := newTestClient(t, f.srv)
	req := cloneReq("abc")
	req.NewVMID = 150
	ref, err := c.Clone(context.Background(), req)
	if !errors.Is(err, ErrVMIDInUse) || !ref.IsZero() {
		t.Errorf("got %v, %v; want ErrVMIDInUse and no ref", ref, err)
	}
	req.NewVMID = 151
	ref, err = c.Clone(context.Background(), req)
	if err != nil || ref.VMID != 151 {
		t.Errorf("got %v, %v; want pve/151", ref, err)
	}
}

func TestCloneCancelledWaitReturnsRef(t *testing.T) {
	f := newFakePVE(t)
	f.taskLength = 1 << 30 // never finishes
	ctx, cancel := context.WithCancel(context.Background())
	f.afterClone = func(call, vmid int, w http.ResponseWriter) bool {
		cancel()
		return false
	}
	c, _ := newTestClient(t, f.srv)
	ref, err := c.Clone(ctx, cloneReq("abc"))
	if !errors.Is(err, context.Canceled) {
		t.Errorf("got %v; want context.Canceled", err)
	}
	if ref.VMID != 100 {
		t.Errorf("got ref %v; want pve/100: the clone may exist", ref)
	}
}

func TestCloneValidation(t *testing.T) {
	c, err := New(context.Background(), Config{Endpoint: "https://pve:8006", APIToken: testToken})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		req  CloneRequest
	}{
		{"storage needs full", CloneRequest{Node: "pve", SourceVMID: 9000, Description: "d", Storage: "local-lvm"}},
		{"no identity", CloneRequest{Node: "pve", SourceVMID: 9000}},
		{"nonce not in description", CloneRequest{Node: "pve", SourceVMID: 9000, Nonce: "n1", Description: "d"}},
		{"bad source", CloneRequest{Node: "pve", SourceVMID: 5, Description: "d"}},
		{"bad node", CloneRequest{Node: "", SourceVMID: 9000, Description: "d"}},
	}
	for _, tt := range tests {
		if _, err := c.Clone(context.Background(), tt.req); err == nil {
			t.Errorf("%s: got nil error; want one", tt.name)
		}
	}
}

// TestCloneStalePlaceholder: PVE dies mid-clone and the answer is lost; on
// restart the placeholder keeps its clone lock but no clone runs. Clone must
// not wait for the lock until its context ends: it returns the VM (it may
// be ours) with ErrLocked.
func TestCloneStalePlaceholder(t *testing.T) {
	f := newFakePVE(t)
	f.taskLength = 1000 // the clone never finishes on its own
	f.afterClone = func(call, vmid int, w http.ResponseWriter) bool {
		if call != 1 {
			return false
		}
		f.mu.Lock()
		for upid := range f.tasks {
			delete(f.tasks, upid) // PVE restarted: no task runs, the lock stays
		}
		f.mu.Unlock()
		dropConnection(t, w)
		return true
	}
	c, _ := newTestClient(t, f.srv)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ref, err := c.Clone(ctx, cloneReq("abc"))
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("Clone = %v, %v; want ErrLocked", ref, err)
	}
	if ctx.Err() != nil {
		t.Fatal("Clone waited until its context ended")
	}
	if ref.VMID != 100 || ref.Node != "pve" {
		t.Errorf("ref = %v; want pve/100, the placeholder, so the caller can record it", ref)
	}
	if cfg, _ := f.vm(100); cfg["lock"] != "clone" {
		t.Errorf("placeholder config = %v; want it left locked", cfg)
	}
}

// TestCloneWaitsForARunningClone: a locked VMID whose clone still runs is
// waited for, and turns out ours.
func TestCloneWaitsForARunningClone(t *testing.T) {
	f := newFakePVE(t)
	f.taskLength = 12
	f.afterClone = func(call, vmid int, w http.ResponseWriter) bool {
		if call == 1 {
			dropConnection(t, w)
			return true
		}
		return false
	}
	c, _ := newTestClient(t, f.srv)
	ref, err := c.Clone(context.Background(), cloneReq("abc"))
	if err != nil || ref.VMID != 100 {
		t.Fatalf("Clone = %v, %v; want pve/100, nil", ref, err)
	}
}
