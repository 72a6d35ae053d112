package reconcile

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentlab/terraform-provider-agentlab/internal/lease"
	"github.com/agentlab/terraform-provider-agentlab/internal/pve"
	"github.com/agentlab/terraform-provider-agentlab/reaper"
)

func hasReason(evs []reaper.Event, kind reaper.EventKind, decision reaper.Decision, substr string) bool {
	return slices.ContainsFunc(evs, func(e reaper.Event) bool {
		return e.Kind == kind && e.Decision == decision && strings.Contains(e.Reason, substr)
	})
}

func TestPolicyMaxLeaseCapsEveryLease(t *testing.T) {
	const week = 168 * time.Hour
	h := newHarness(t, Options{MaxLease: week})
	// The metadata allows a year; the operator's ceiling is a week.
	addSandbox(t, h.pve, sandbox{vmid: 101, created: t0, ttl: 365 * 24 * time.Hour, token: "tok"})
	addSandbox(t, h.pve, sandbox{vmid: 102, created: t0, ttl: time.Hour})
	h.tick()
	l := h.lease(101)
	if !l.PolicyExpiresAt.Equal(t0.Add(week)) || l.State != reaper.StateActive || !strings.Contains(l.Reason, "capped by policy.max_lease 168h0m0s") {
		t.Errorf("lease 101 = %s, policy expiry %v, %q; want active, capped at %v", l.State, l.PolicyExpiresAt, l.Reason, t0.Add(week))
	}
	if l := h.lease(102); !l.PolicyExpiresAt.IsZero() {
		t.Errorf("lease 102 policy expiry = %v; want none (its lease ends first)", l.PolicyExpiresAt)
	}

	// Renewals and heartbeats cannot pass the ceiling either.
	ctx := context.Background()
	h.clock.Set(t0.Add(week - time.Hour))
	ren, err := h.loop.Renew(ctx, 101, 48*time.Hour, "operator@unix")
	var pc *reaper.PolicyCapError
	if !errors.As(err, &pc) || !errors.Is(err, lease.ErrPastMaxTTL) || ren.CappedBy != "policy.max_lease" || !ren.Lease.ExpiresAt.Equal(t0.Add(week)) {
		t.Errorf("Renew past the ceiling = %+v, %v; want capped by policy.max_lease at %v", ren, err, t0.Add(week))
	}

	h.clock.Set(t0.Add(week + time.Second))
	h.tick()
	if h.pve.exists(101) {
		t.Fatal("VM 101 outlived policy.max_lease")
	}
	h.wantState(101, reaper.StateDestroyed)
}

func TestUserKeepIsTheOperatorsChoice(t *testing.T) {
	long := t0.Add(-48 * time.Hour)
	h := newHarness(t, Options{})
	// A Terraform user tagged these agentlab-keep; user_keep is false.
	addSandbox(t, h.pve, sandbox{vmid: 101, created: long, ttl: time.Hour, extraTags: []string{"agentlab-keep"}})
	addSandbox(t, h.pve, sandbox{vmid: 102, created: t0, ttl: time.Hour, extraTags: []string{"agentlab-keep"}})
	addSandbox(t, h.pve, sandbox{vmid: 103, created: t0, ttl: time.Hour})
	ctx := context.Background()
	h.tick()
	if h.pve.exists(101) {
		t.Error("VM 101 kept by a user's tag; want it reaped (policy.user_keep is false)")
	}
	if !hasReason(h.events(101), reaper.KindDestroy, reaper.DecisionIntent, "agentlab-keep tag ignored") {
		t.Errorf("events of 101 = %v; want the destroy to say the keep tag was ignored", summary(h.events(101)))
	}
	for range 2 {
		h.tick()
		h.clock.Advance(time.Minute)
	}
	evs := h.events(102)
	if len(evs) != 1 || !strings.Contains(evs[0].Reason, "agentlab-keep tag ignored") {
		t.Errorf("events of 102 = %+v; want one saying the keep tag is ignored", evs)
	}
	// The operator keeps 103.
	if l, err := h.loop.Keep(ctx, 103, true, "operator@unix"); err != nil || l.State != reaper.StateProtected {
		t.Fatalf("Keep(103) = %s, %v; want protected", l.State, err)
	}
	h.clock.Set(t0.Add(2 * time.Hour))
	h.tick()
	if h.pve.exists(102) {
		t.Error("VM 102 kept by a user's tag; want it reaped")
	}
	if !h.pve.exists(103) || !lease.Kept(lease.ParseTags(h.pve.vm(103).cfg["tags"].(string))) {
		t.Fatal("VM 103, kept by the operator, reaped or untagged")
	}
	h.wantState(103, reaper.StateProtected)
	if !hasReason(h.events(103), reaper.KindKeep, reaper.DecisionDone, "kept by the operator") {
		t.Errorf("events of 103 = %v; want the keep", summary(h.events(103)))
	}

	// A new process remembers who set the tag.
	h.start()
	h.tick()
	h.wantState(103, reaper.StateProtected)

	// keep --remove: the lease applies again.
	if _, err := h.loop.Keep(ctx, 103, false, "operator@unix"); err != nil {
		t.Fatalf("Keep(103, remove) = %v", err)
	}
	// Keep decides at once: the expired lease is reaped.
	if h.pve.exists(103) {
		t.Error("VM 103 not reaped after keep --remove")
	}
	if !hasReason(h.events(103), reaper.KindKeep, reaper.DecisionDone, "keep removed by the operator") {
		t.Errorf("events of 103 = %v; want the keep removal", summary(h.events(103)))
	}
	if kept, _ := h.db.Kept(ctx); kept[103] {
		t.Error("keep record left after keep --remove")
	}
	if _, err := h.loop.Keep(ctx, 999, true, "operator@unix"); !errors.Is(err, reaper.ErrNotFound) {
		t.Errorf("Keep(unknown) = %v; want ErrNotFound", err)
	}

	// With user_keep, a user's tag protects.
	h2 := newHarness(t, Options{UserKeep: true})
	addSandbox(t, h2.pve, sandbox{vmid: 101, created: long, ttl: time.Hour, extraTags: []string{"agentlab-keep"}})
	h2.tick()
	h2.wantState(101, reaper.StateProtected)
}

func TestSeedISODeletedWithItsVM(t *testing.T) {
	long := t0.Add(-48 * time.Hour)
	h := newHarness(t, Options{})
	addSandbox(t, h.pve, sandbox{vmid: 101, created: long, ttl: time.Hour})
	iso101 := h.pve.addISO(101)
	// 102's ISO was detached (it is still on storage): the scan finds it.
	addSandbox(t, h.pve, sandbox{vmid: 102, created: t0, ttl: time.Hour})
	iso102 := h.pve.addISO(102)
	h.pve.set(102, "ide2", "none,media=cdrom")
	// 103's ISO deletion fails once, as when the reaper is killed between the
	// destroy and the deletion.
	addSandbox(t, h.pve, sandbox{vmid: 103, created: long, ttl: time.Hour})
	iso103 := h.pve.addISO(103)

	h.pve.deleteErr = errConnReset
	h.tick()
	if h.pve.exists(101) || h.pve.exists(103) {
		t.Fatal("expired VMs not destroyed")
	}
	if !h.pve.hasISO(iso101) || !h.pve.hasISO(iso103) {
		t.Fatal("ISOs gone although every deletion failed")
	}
	if !hasReason(h.events(103), reaper.KindVolume, reaper.DecisionFailed, iso103) {
		t.Errorf("events of 103 = %v; want the failed deletion", summary(h.events(103)))
	}
	// A new process finishes what the old one recorded.
	h.pve.deleteErr = nil
	h.start()
	h.tick()
	for _, iso := range []string{iso101, iso103} {
		if h.pve.hasISO(iso) {
			t.Errorf("%s left on storage after its VM was reaped", iso)
		}
	}
	if !hasReason(h.events(101), reaper.KindVolume, reaper.DecisionDone, iso101) {
		t.Errorf("events of 101 = %v; want volume/done", summary(h.events(101)))
	}
	if pending, _ := h.db.VolumeDeletions(context.Background()); len(pending) != 0 {
		t.Errorf("pending deletions = %+v; want none", pending)
	}

	h.clock.Set(t0.Add(2 * time.Hour))
	h.tick()
	if h.pve.exists(102) || h.pve.hasISO(iso102) {
		t.Errorf("VM 102 exists %v, its detached ISO exists %v; want both gone", h.pve.exists(102), h.pve.hasISO(iso102))
	}
	// Nothing is left for the orphan search.
	h.tick()
	if os, _ := h.loop.Orphans(context.Background()); len(os) != 0 {
		t.Errorf("orphans = %+v; want none", os)
	}
}

func TestOrphansFoundOnceAndPruned(t *testing.T) {
	h := newHarness(t, Options{Prune: true, OrphanGrace: time.Hour, StorageScanEvery: 15 * time.Minute,
		PlaceholderFirst: 100, PlaceholderLast: 999})
	ctx := context.Background()
	// (a) A provider killed between the clone and the tag.
	addSandbox(t, h.pve, sandbox{vmid: 120, created: t0, ttl: time.Hour})
	h.pve.set(120, "tags", "")
	iso120 := h.pve.addISO(120)
	// (b) An interrupted clone, and one outside the range.
	h.pve.addPlaceholder(130)
	h.pve.addPlaceholder(5000)
	// (c) A seed ISO whose VM is gone.
	iso140 := h.pve.addISO(140)
	// Not orphans: a VM of someone else, and a sandbox with its ISO.
	h.pve.add(150, "db", "production database", "prod")
	addSandbox(t, h.pve, sandbox{vmid: 160, created: t0, ttl: 24 * time.Hour})
	iso160 := h.pve.addISO(160)

	h.tick()
	os, _ := h.loop.Orphans(ctx)
	if got := orphanIDs(os); !slices.Equal(got, []string{"iso/" + iso140}) {
		t.Errorf("orphans after the first tick = %v; want only the ISO (VMs need a second look)", got)
	}
	h.clock.Advance(time.Minute)
	h.tick()
	os, _ = h.loop.Orphans(ctx)
	if got, want := orphanIDs(os), []string{"vm/120", "vm/130", "iso/" + iso140}; !slices.Equal(got, want) {
		t.Fatalf("orphans = %v; want %v", got, want)
	}
	for _, o := range os {
		if o.Kind == reaper.OrphanPlaceholder && !strings.Contains(o.Action, "qm unlock 130 && qm destroy 130") {
			t.Errorf("placeholder action = %q; want the operator's command", o.Action)
		}
	}
	// One event per orphan, not per tick; an unchanged tick is one call.
	calls := h.pve.total()
	for range 5 {
		h.clock.Advance(time.Minute)
		h.tick()
	}
	if got := h.pve.total() - calls; got != 5 {
		t.Errorf("Proxmox calls in 5 unchanged ticks = %d; want 5", got)
	}
	for _, vmid := range []int{120, 130, 140} {
		evs := h.events(vmid)
		if len(evs) != 1 || evs[0].Kind != reaper.KindOrphan || evs[0].Decision != reaper.DecisionTrack {
			t.Errorf("events of %d = %v; want one orphan/track", vmid, summary(evs))
		}
	}
	// The storage is scanned again after StorageScanEvery.
	h.clock.Advance(15 * time.Minute)
	storages := h.pve.count("storages")
	h.tick()
	if got := h.pve.count("storages") - storages; got != 1 {
		t.Errorf("storage scans after 15 minutes = %d; want 1", got)
	}

	// Past the grace period, prune removes what it can prove.
	h.clock.Advance(time.Hour)
	h.tick()
	if h.pve.exists(120) || h.pve.hasISO(iso120) || h.pve.hasISO(iso140) {
		t.Errorf("after prune: vm 120 %v, its ISO %v, ISO 140 %v; want all gone",
			h.pve.exists(120), h.pve.hasISO(iso120), h.pve.hasISO(iso140))
	}
	if !h.pve.exists(130) || !h.pve.exists(150) || !h.pve.exists(160) || !h.pve.hasISO(iso160) || !h.pve.exists(5000) {
		t.Error("prune removed what it cannot prove or does not own")
	}
	if !hasReason(h.events(120), reaper.KindOrphan, reaper.DecisionDone, "destroy VM 120 and delete its seed ISO") {
		t.Errorf("events of 120 = %v; want the prune", summary(h.events(120)))
	}
	os, _ = h.loop.Orphans(ctx)
	if got := orphanIDs(os); !slices.Equal(got, []string{"vm/130"}) {
		t.Errorf("orphans after prune = %v; want the placeholder only", got)
	}
}

func TestPlaceholderWhileAClonesRuns(t *testing.T) {
	h := newHarness(t, Options{OrphanGrace: 10 * time.Minute})
	h.pve.addPlaceholder(130)
	h.pve.cloning = 1
	h.tick()
	h.clock.Advance(time.Minute)
	h.tick()
	if os, _ := h.loop.Orphans(context.Background()); len(os) != 0 {
		t.Errorf("orphans while a clone runs = %v; want none", orphanIDs(os))
	}
	if h.pve.count("tasks") != 1 {
		t.Errorf("task list calls = %d; want 1", h.pve.count("tasks"))
	}
	// Past orphan_grace it is one, whatever runs.
	h.clock.Advance(10 * time.Minute)
	h.tick()
	if os, _ := h.loop.Orphans(context.Background()); !slices.Equal(orphanIDs(os), []string{"vm/130"}) {
		t.Errorf("orphans past grace = %v; want vm/130", orphanIDs(os))
	}
	// Not pruned: a token cannot unlock it.
	if !h.pve.exists(130) {
		t.Error("placeholder destroyed")
	}
}

func TestEventRetention(t *testing.T) {
	h := newHarness(t, Options{EventRetention: 24 * time.Hour})
	addSandbox(t, h.pve, sandbox{vmid: 101, created: t0, ttl: 72 * time.Hour})
	h.tick()
	if len(h.events(101)) != 1 {
		t.Fatalf("events = %v; want one", summary(h.events(101)))
	}
	h.clock.Advance(25 * time.Hour)
	h.tick()
	if evs := h.events(101); len(evs) != 0 {
		t.Errorf("events after retention = %v; want none", summary(evs))
	}
}

func orphanIDs(os []reaper.Orphan) []string {
	var out []string
	for _, o := range os {
		out = append(out, o.ID)
	}
	return out
}

func TestWorkspaceOwnerIsTheLastPathElement(t *testing.T) {
	tests := []struct {
		workspace string
		vmid      int
		refuse    bool
	}{
		// A linked clone of template 9000 owned by the sandbox itself: PVE
		// frees it with VM 101, so the reaper must refuse.
		{"local:9000/base-9000-disk-0.qcow2/101/vm-101-disk-1.qcow2", 101, true},
		{"local-lvm:base-9000-disk-0/vm-101-disk-1", 101, true},
		// A linked clone owned by another VMID, based on the sandbox's VMID as
		// a template: not the sandbox's.
		{"local-lvm:base-101-disk-0/vm-900-disk-0", 101, false},
		{"local-lvm:vm-900-disk-0", 101, false},
		{"local-lvm:vm-101-disk-1", 101, true},
	}
	for _, tt := range tests {
		_, err := workspaceKeys(pve.VMConfig{Raw: map[string]any{"scsi1": tt.workspace + ",size=1G"}}, tt.workspace, tt.vmid)
		if (err != nil) != tt.refuse {
			t.Errorf("workspaceKeys(%q, vm %d) error = %v; want refused %v", tt.workspace, tt.vmid, err, tt.refuse)
		}
	}
}

func TestRefusedHeartbeatsAreOneRow(t *testing.T) {
	h := newHarness(t, Options{})
	addSandbox(t, h.pve, sandbox{vmid: 101, created: t0, ttl: time.Hour, token: "tok", onExpiry: lease.Stop})
	h.tick()
	h.clock.Set(t0.Add(2 * time.Hour))
	h.tick() // expired and stopped: heartbeats cannot revive it
	before := len(h.events(101))
	for range 100 {
		h.clock.Advance(time.Minute)
		if _, err := h.loop.Heartbeat(context.Background(), "tok"); !errors.Is(err, reaper.ErrConflict) {
			t.Fatalf("Heartbeat = %v; want ErrConflict", err)
		}
	}
	evs := h.events(101)
	if len(evs) != before+1 {
		t.Fatalf("events = %v; want one row for 100 refused heartbeats", summary(evs))
	}
	if last := evs[len(evs)-1]; last.Kind != reaper.KindHeartbeat || last.Decision != reaper.DecisionRejected || last.Count != 100 ||
		!last.LastTime.Equal(h.clock.Now()) {
		t.Errorf("last event = %+v; want heartbeat/rejected counted 100 times, last now", last)
	}
}

func TestOrphanISOOfAReusedVMIDIsNotPruned(t *testing.T) {
	h := newHarness(t, Options{Prune: true, OrphanGrace: time.Hour})
	h.pve.add(9000, "template", "", "")
	h.pve.vms[9000].template = true
	iso := h.pve.addISO(140)
	h.tick()
	if os, _ := h.loop.Orphans(context.Background()); len(os) != 1 {
		t.Fatalf("orphans = %v; want the ISO", orphanIDs(os))
	}
	// A new sandbox takes VMID 140 (its upload replaces the ISO) after the
	// tick listed the cluster, before prune acts.
	h.clock.Advance(time.Hour)
	h.pve.add(140, "new", "", "")
	h.loop.pruneOrphans(context.Background(), h.clock.Now())
	if !h.pve.hasISO(iso) {
		t.Error("prune deleted the ISO of a VMID in use again")
	}
	if os, _ := h.loop.Orphans(context.Background()); len(os) != 0 {
		t.Errorf("orphans = %v; want none", orphanIDs(os))
	}
}

func TestKeepRecordDroppedWhenTheTagIsRemoved(t *testing.T) {
	h := newHarness(t, Options{})
	addSandbox(t, h.pve, sandbox{vmid: 101, created: t0, ttl: time.Hour})
	h.tick()
	ctx := context.Background()
	if _, err := h.loop.Keep(ctx, 101, true, "operator@unix"); err != nil {
		t.Fatal(err)
	}
	// Someone removes the tag by hand, then a user adds it back.
	tags := lease.ParseTags(h.pve.vm(101).cfg["tags"].(string))
	h.pve.set(101, "tags", lease.JoinTags(slices.DeleteFunc(tags, func(s string) bool { return s == lease.TagKeep })))
	h.tick()
	if kept, _ := h.db.Kept(ctx); kept[101] {
		t.Fatal("keep record kept after the tag was removed")
	}
	h.pve.set(101, "tags", lease.JoinTags(append(tags, lease.TagKeep)))
	h.clock.Set(t0.Add(2 * time.Hour))
	h.tick()
	if h.pve.exists(101) {
		t.Error("a user's keep tag protected 101 through a stale keep record")
	}
}

func TestOrphansSurviveARestart(t *testing.T) {
	h := newHarness(t, Options{})
	addSandbox(t, h.pve, sandbox{vmid: 120, created: t0, ttl: time.Hour})
	h.pve.set(120, "tags", "")
	h.pve.addPlaceholder(130)
	h.pve.addISO(140)
	h.tick()
	h.clock.Advance(time.Minute)
	h.tick()
	first, _ := h.loop.Orphans(context.Background())
	if len(first) != 3 {
		t.Fatalf("orphans = %v; want 3", orphanIDs(first))
	}
	h.start()
	for range 3 {
		h.clock.Advance(time.Minute)
		h.tick()
	}
	again, _ := h.loop.Orphans(context.Background())
	if len(again) != 3 {
		t.Fatalf("orphans after restart = %v; want the same 3", orphanIDs(again))
	}
	for i := range again {
		if !again[i].FirstSeen.Equal(first[i].FirstSeen) {
			t.Errorf("%s first seen %v after restart; want %v (the grace period must not restart)", again[i].ID, again[i].FirstSeen, first[i].FirstSeen)
		}
	}
	for _, vmid := range []int{120, 130, 140} {
		if evs := h.events(vmid); len(evs) != 1 {
			t.Errorf("events of %d = %v; want one orphan/track across the restart", vmid, summary(evs))
		}
	}
}
