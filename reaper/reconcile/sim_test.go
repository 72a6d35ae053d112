package reconcile

import (
	"context"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	"github.com/agentlab/terraform-provider-agentlab/internal/clock"
	"github.com/agentlab/terraform-provider-agentlab/internal/lease"
	"github.com/agentlab/terraform-provider-agentlab/internal/pve"
	"github.com/agentlab/terraform-provider-agentlab/internal/pvesim"
	"github.com/agentlab/terraform-provider-agentlab/internal/pvesim/pvesimtest"
	"github.com/agentlab/terraform-provider-agentlab/reaper"
	"github.com/agentlab/terraform-provider-agentlab/reaper/reapertest"
	"github.com/agentlab/terraform-provider-agentlab/reaper/sqlite"
)

// TestAgainstSimulator drives the loop with the real Proxmox client against
// the in-process simulator.
func TestAgainstSimulator(t *testing.T) {
	ctx := context.Background()
	sim := pvesimtest.Start(t)
	client, err := pve.New(ctx, pve.Config{Endpoint: sim.URL, APIToken: sim.Token, HTTPClient: sim.Client})
	if err != nil {
		t.Fatal(err)
	}
	api := &reapertest.PVE{Endpoint: sim.URL, Token: sim.Token, HTTP: sim.Client}
	now := time.Now().UTC().Truncate(time.Second)
	clk := clock.NewFake(now)
	past := now.Add(-2 * time.Hour)

	create := func(s reapertest.Sandbox) {
		t.Helper()
		if _, err := api.Create(ctx, s); err != nil {
			t.Fatalf("create %d: %v", s.VMID, err)
		}
	}
	create(reapertest.Sandbox{VMID: 101, Created: past, TTL: time.Hour, Start: true})                            // expired
	create(reapertest.Sandbox{VMID: 102, Created: now, TTL: time.Hour, Token: "tok-102", MaxTTL: 2 * time.Hour}) // active
	create(reapertest.Sandbox{VMID: 103, Created: past, TTL: time.Hour, Tags: []string{"agentlab-keep"}})        // protected
	create(reapertest.Sandbox{VMID: 104, Created: past, TTL: time.Hour, OnExpiry: lease.Stop, Start: true})      // stop
	create(reapertest.Sandbox{VMID: 105, Created: past, TTL: time.Hour})                                         // malformed below
	if err := api.SetConfig(ctx, 105, map[string]string{"description": lease.BeginMarker + "\n{}\n" + lease.EndMarker}); err != nil {
		t.Fatal(err)
	}
	if err := api.Clone(ctx, 106, "not-a-sandbox"); err != nil { // untagged
		t.Fatal(err)
	}
	// A sandbox with a workspace volume owned by an unused VMID.
	const ws = "local-lvm:vm-999000-disk-0"
	if err := api.Do(ctx, "POST", "/nodes/pve/storage/local-lvm/content", url.Values{
		"vmid": {"999000"}, "filename": {"vm-999000-disk-0"}, "size": {"1G"}}, nil); err != nil {
		t.Fatal(err)
	}
	create(reapertest.Sandbox{VMID: 107, Created: past, TTL: time.Hour, Workspace: ws})
	if err := api.SetConfig(ctx, 107, map[string]string{"scsi1": ws + ",size=1G"}); err != nil {
		t.Fatal(err)
	}

	db := sqlite.New(filepath.Join(t.TempDir(), "reaper.db"))
	db.Now = clk.Now
	if err := db.Open(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	loop := New(client, db, Options{Clock: clk, UserKeep: true})

	if err := loop.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		vmid   int
		exists bool
		state  reaper.State
	}{
		{101, false, reaper.StateDestroyed},
		{102, true, reaper.StateActive},
		{103, true, reaper.StateProtected},
		{104, true, reaper.StateStopped},
		{105, true, reaper.StateInvalid},
		{107, false, reaper.StateDestroyed},
	}
	for _, tt := range tests {
		ok, err := api.Exists(ctx, tt.vmid)
		if err != nil || ok != tt.exists {
			t.Errorf("vm %d exists = %v, %v; want %v", tt.vmid, ok, err, tt.exists)
		}
		if l, err := db.Lease(ctx, tt.vmid); err != nil || l.State != tt.state {
			t.Errorf("vm %d state = %s (%s), %v; want %s", tt.vmid, l.State, l.Reason, err, tt.state)
		}
	}
	if ok, _ := api.Exists(ctx, 106); !ok {
		t.Error("untagged VM 106 destroyed")
	}
	if v, _ := sim.Server.VM(104); v.Running {
		t.Error("VM 104 (on_expiry = stop) still runs")
	}
	found := false
	for _, v := range sim.Server.Volumes("") {
		found = found || v.Volid == ws
	}
	if !found {
		t.Errorf("workspace volume %s was freed with sandbox 107", ws)
	}

	// A heartbeat rewrites metadata and tag through the real client.
	clk.Advance(30 * time.Minute)
	ren, err := loop.Heartbeat(ctx, "tok-102")
	if err != nil {
		t.Fatalf("Heartbeat = %v", err)
	}
	m, err := api.Lease(ctx, 102)
	if err != nil || !m.ExpiresAt.Equal(now.Add(90*time.Minute)) || !ren.Lease.ExpiresAt.Equal(m.ExpiresAt) {
		t.Errorf("after heartbeat: metadata %v, %v, returned %v; want %v", m.ExpiresAt, err, ren.Lease.ExpiresAt, now.Add(90*time.Minute))
	}
	cfg, _, _ := api.Config(ctx, 102)
	if tags, _ := cfg["tags"].(string); tags != lease.JoinTags([]string{"agentlab", lease.ExpiryTag(m.ExpiresAt)}) {
		t.Errorf("tags after heartbeat = %q; want agentlab and the new expiry tag", tags)
	}

	// The tick after VMs disappeared scans the ISO storage once (seed ISOs
	// left behind); then, with nothing changed, a tick is one request:
	// GET /cluster/resources.
	if err := loop.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	before := sim.Server.Stats()
	if err := loop.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	after := sim.Server.Stats()
	total := func(s pvesim.Stats) int {
		n := 0
		for route := range s.Requests {
			n += s.RequestCount(route)
		}
		return n
	}
	if got := total(after) - total(before); got != 1 {
		t.Errorf("requests in an unchanged tick = %d; want 1 (%s)", got, after)
	}
	if got := after.RequestCount("GET /cluster/resources") - before.RequestCount("GET /cluster/resources"); got != 1 {
		t.Errorf("resource list calls = %d; want 1", got)
	}
}
