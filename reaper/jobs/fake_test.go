package jobs

import (
	"context"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/agentlab/terraform-provider-agentlab/internal/clock"
	"github.com/agentlab/terraform-provider-agentlab/internal/lease"
	"github.com/agentlab/terraform-provider-agentlab/internal/pve"
	"github.com/agentlab/terraform-provider-agentlab/reaper/sqlite"
)

// fakePVE is a cluster of VMs held in memory, recording what was done.
type fakePVE struct {
	mu        sync.Mutex
	vms       map[int]map[string]any
	destroyed []int
	stopped   []int
	deleted   map[int][]string
	// destroying, when set, is called at the start of every Destroy,
	// outside the lock.
	destroying func(vmid int)
}

func newFakePVE() *fakePVE {
	return &fakePVE{vms: map[int]map[string]any{}, deleted: map[int][]string{}}
}

// addSandbox adds a VM whose metadata names jobID; extra config keys are set too.
func (f *fakePVE) addSandbox(t *testing.T, vmid int, jobID string, extra map[string]any) {
	t.Helper()
	l, err := lease.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), time.Hour, 0, lease.Destroy)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := lease.Encode("", lease.Metadata{Nonce: lease.NewNonce(), Lease: l, JobID: jobID})
	if err != nil {
		t.Fatal(err)
	}
	cfg := map[string]any{"description": desc, "tags": lease.TagOwned, "digest": "d1"}
	for k, v := range extra {
		cfg[k] = v
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.vms[vmid] = cfg
}

func (f *fakePVE) ListVMs(ctx context.Context) ([]pve.VMEntry, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []pve.VMEntry
	for id := range f.vms {
		out = append(out, pve.VMEntry{VMID: id, Node: "pve", Type: "qemu", Tags: []string{lease.TagOwned}})
	}
	return out, nil
}

func (f *fakePVE) Config(ctx context.Context, ref pve.VMRef) (pve.VMConfig, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	cfg, ok := f.vms[ref.VMID]
	if !ok {
		return pve.VMConfig{}, pve.ErrNotFound
	}
	return pve.VMConfig{Raw: cfg}, nil
}

func (f *fakePVE) UpdateConfig(ctx context.Context, ref pve.VMRef, upd pve.ConfigUpdate) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	cfg, ok := f.vms[ref.VMID]
	if !ok {
		return pve.ErrNotFound
	}
	for _, k := range upd.Delete {
		delete(cfg, k)
	}
	f.deleted[ref.VMID] = append(f.deleted[ref.VMID], upd.Delete...)
	return nil
}

func (f *fakePVE) Stop(ctx context.Context, ref pve.VMRef) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stopped = append(f.stopped, ref.VMID)
	return nil
}

func (f *fakePVE) Destroy(ctx context.Context, ref pve.VMRef) error {
	if f.destroying != nil {
		f.destroying(ref.VMID)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.vms, ref.VMID)
	f.destroyed = append(f.destroyed, ref.VMID)
	return nil
}

func (f *fakePVE) wasDestroyed(vmid int) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Contains(f.destroyed, vmid)
}

// env is a registry over a real store in a temp dir, a fake clock and a fake cluster.
type env struct {
	svc   *Service
	db    *sqlite.DB
	pve   *fakePVE
	clock *clock.Fake
	dir   string
}

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func newEnv(t *testing.T, opts Options) *env {
	t.Helper()
	dir := t.TempDir()
	db := sqlite.New(filepath.Join(dir, "reaper.db"))
	if err := db.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	clk := clock.NewFake(t0)
	db.Now = clk.Now
	f := newFakePVE()
	opts.Dir = filepath.Join(dir, "artifacts")
	opts.Clock = clk
	svc, err := New(db, f, opts)
	if err != nil {
		t.Fatal(err)
	}
	return &env{svc: svc, db: db, pve: f, clock: clk, dir: opts.Dir}
}
