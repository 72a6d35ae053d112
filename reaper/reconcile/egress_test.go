package reconcile

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentlab/terraform-provider-agentlab/internal/egressrule"
	"github.com/agentlab/terraform-provider-agentlab/internal/lease"
	"github.com/agentlab/terraform-provider-agentlab/reaper"
	"github.com/agentlab/terraform-provider-agentlab/reaper/egress"
)

// fakeFilter records what the loop hands the egress filter and reports
// changes the way egress.Filter does (by VMID, against the last call).
type fakeFilter struct {
	mu    sync.Mutex
	calls [][]egress.Sandbox
	last  map[int]egress.Sandbox
}

func (f *fakeFilter) Sync(_ context.Context, sbs []egress.Sandbox) ([]egress.Change, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, slices.Clone(sbs))
	var changes []egress.Change
	now := map[int]egress.Sandbox{}
	for _, s := range sbs {
		now[s.VMID] = s
		if _, ok := f.last[s.VMID]; !ok {
			changes = append(changes, egress.Change{Kind: egress.Added, Sandbox: s})
		}
	}
	f.last = now
	return changes, nil
}

func (f *fakeFilter) lastCall() []egress.Sandbox {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[len(f.calls)-1]
}

// setEgress rewrites a test sandbox's metadata with an egress policy.
func setEgress(t *testing.T, h *harness, vmid int, m lease.Metadata, p egressrule.Policy, allow ...string) {
	t.Helper()
	m.Egress, m.EgressAllow = p, allow
	desc, err := lease.Encode("Sandbox for tests.", m)
	if err != nil {
		t.Fatal(err)
	}
	h.pve.set(vmid, "description", desc)
}

func TestEgressFromMetadata(t *testing.T) {
	ff := &fakeFilter{}
	h := newHarness(t, Options{Egress: ff, EgressBridge: "vmbr1"})
	m := addSandbox(t, h.pve, sandbox{vmid: 101, created: t0, ttl: time.Hour})
	setEgress(t, h, 101, m, egressrule.Allowlist, "192.168.5.0/24:443/tcp")
	h.pve.set(101, "net0", "virtio=BC:24:11:00:00:01,bridge=vmbr1,firewall=1")
	h.pve.set(101, "net1", "virtio=BC:24:11:00:00:09,bridge=vmbr0")
	addSandbox(t, h.pve, sandbox{vmid: 102, created: t0, ttl: time.Hour})
	h.pve.set(102, "net0", "virtio=BC:24:11:00:00:02,bridge=vmbr1")
	h.pve.set(102, "description", "broken "+lease.BeginMarker+"\n{nope\n"+lease.EndMarker)
	h.tick()

	got := ff.lastCall()
	if len(got) != 2 {
		t.Fatalf("Sync got %d sandboxes; want 2: %+v", len(got), got)
	}
	want101 := egress.Sandbox{VMID: 101, MACs: []string{"BC:24:11:00:00:01"}, Policy: egressrule.Allowlist,
		Allow: []egressrule.Rule{mustRule(t, "192.168.5.0/24:443/tcp")}}
	if g := got[0]; g.VMID != 101 || !slices.Equal(g.MACs, want101.MACs) || g.Policy != want101.Policy || !slices.Equal(g.Allow, want101.Allow) || g.Broken {
		t.Errorf("sandbox 101 = %+v; want %+v (only the NIC on vmbr1)", g, want101)
	}
	if g := got[1]; g.VMID != 102 || !g.Broken || !slices.Equal(g.MACs, []string{"BC:24:11:00:00:02"}) {
		t.Errorf("sandbox 102 = %+v; want Broken with its MAC (fail closed)", g)
	}
	evs := h.events(101)
	if !slices.ContainsFunc(evs, func(e reaper.Event) bool {
		return e.Kind == reaper.KindEgress && strings.Contains(e.Reason, "added")
	}) {
		t.Errorf("events of 101 = %v; want an egress event", summary(evs))
	}

	// An unchanged tick costs one Proxmox call, egress filter or not.
	before := h.pve.total()
	h.clock.Advance(30 * time.Second)
	h.tick()
	if calls := h.pve.total() - before; calls != 1 {
		t.Errorf("unchanged tick made %d Proxmox calls; want 1", calls)
	}
	if len(ff.lastCall()) != 2 {
		t.Errorf("unchanged tick handed %d sandboxes to the filter; want 2", len(ff.lastCall()))
	}

	// A restarted reaper knows leases from its store but not MACs: it
	// reads each sandbox's config once more.
	h.start()
	h.tick()
	if got := ff.lastCall(); len(got) != 2 || len(got[0].MACs) != 1 {
		t.Errorf("after a restart Sync got %+v; want both sandboxes with their MACs", got)
	}
}

func mustRule(t *testing.T, s string) egressrule.Rule {
	t.Helper()
	r, err := egressrule.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
