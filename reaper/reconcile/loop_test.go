package reconcile

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentlab/terraform-provider-agentlab/internal/clock"
	"github.com/agentlab/terraform-provider-agentlab/internal/lease"
	"github.com/agentlab/terraform-provider-agentlab/reaper"
	"github.com/agentlab/terraform-provider-agentlab/reaper/sqlite"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

type harness struct {
	t      *testing.T
	pve    *fakePVE
	clock  *clock.Fake
	dbPath string
	db     *sqlite.DB
	loop   *Loop
	opts   Options
}

func newHarness(t *testing.T, opts Options) *harness {
	t.Helper()
	h := &harness{t: t, pve: newFakePVE(), clock: clock.NewFake(t0), dbPath: filepath.Join(t.TempDir(), "reaper.db"), opts: opts}
	h.start()
	return h
}

// start opens the store and makes a fresh loop over it, as a new process would.
func (h *harness) start() {
	h.t.Helper()
	db := sqlite.New(h.dbPath)
	db.Now = h.clock.Now
	if err := db.Open(context.Background()); err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { db.Close() })
	h.db = db
	opts := h.opts
	opts.Clock = h.clock
	if opts.Interval == 0 {
		opts.Interval = 30 * time.Second
	}
	h.loop = New(h.pve, db, opts)
}

func (h *harness) tick() {
	h.t.Helper()
	if err := h.loop.Tick(context.Background()); err != nil {
		h.t.Fatalf("Tick = %v", err)
	}
}

func (h *harness) events(vmid int) []reaper.Event {
	h.t.Helper()
	evs, err := h.db.Events(context.Background(), reaper.EventFilter{VMID: vmid, Limit: 1000})
	if err != nil {
		h.t.Fatal(err)
	}
	return evs
}

// summary renders events as "kind/decision" strings.
func summary(evs []reaper.Event) []string {
	out := make([]string, 0, len(evs))
	for _, e := range evs {
		out = append(out, string(e.Kind)+"/"+string(e.Decision))
	}
	return out
}

func (h *harness) lease(vmid int) reaper.Lease {
	h.t.Helper()
	l, err := h.db.Lease(context.Background(), vmid)
	if err != nil {
		h.t.Fatal(err)
	}
	return l
}

func (h *harness) wantEvents(vmid int, want ...string) {
	h.t.Helper()
	if got := summary(h.events(vmid)); !slices.Equal(got, want) {
		h.t.Errorf("events of %d = %v; want %v", vmid, got, want)
	}
}

func (h *harness) wantState(vmid int, want reaper.State) {
	h.t.Helper()
	if got := h.lease(vmid); got.State != want {
		h.t.Errorf("state of %d = %s (%s); want %s", vmid, got.State, got.Reason, want)
	}
}

func TestExpiryAndGrace(t *testing.T) {
	h := newHarness(t, Options{Grace: 10 * time.Minute})
	addSandbox(t, h.pve, sandbox{vmid: 101, created: t0, ttl: time.Hour})

	h.tick()
	h.wantState(101, reaper.StateActive)

	h.clock.Advance(time.Hour) // expired, within grace
	h.tick()
	if !h.pve.exists(101) {
		t.Fatalf("VM 101 destroyed within its grace period")
	}
	h.wantState(101, reaper.StateExpired)

	h.clock.Advance(10*time.Minute - time.Second)
	h.tick()
	if !h.pve.exists(101) {
		t.Fatalf("VM 101 destroyed 1s before grace ended")
	}

	h.clock.Advance(time.Second)
	h.tick()
	if h.pve.exists(101) {
		t.Fatalf("VM 101 still exists after expiry + grace")
	}
	h.wantState(101, reaper.StateDestroyed)
	if got, want := h.pve.mutations(), []string{"destroy 101"}; !slices.Equal(got, want) {
		t.Errorf("mutations = %v; want %v", got, want)
	}

	h.clock.Advance(time.Minute)
	h.tick() // the VM is gone: nothing more to record
	h.wantEvents(101, "observe/track", "expire/wait", "destroy/intent", "destroy/done")
	evs := h.events(101)
	if !evs[2].Time.Equal(t0.Add(70*time.Minute)) || !strings.Contains(evs[2].Reason, "lease expired at 2026-03-01T13:00:00Z") {
		t.Errorf("intent = %+v; want at expiry+grace with the expiry in the reason", evs[2])
	}
}

func TestStopOnExpiry(t *testing.T) {
	h := newHarness(t, Options{})
	addSandbox(t, h.pve, sandbox{vmid: 102, created: t0, ttl: time.Hour, onExpiry: lease.Stop})
	h.tick()
	h.clock.Advance(time.Hour)
	h.tick()
	if !h.pve.exists(102) {
		t.Fatal("VM 102 (on_expiry = stop) was destroyed")
	}
	if got := h.pve.vm(102).status; got != "stopped" {
		t.Errorf("status = %q; want stopped", got)
	}
	h.wantState(102, reaper.StateStopped)
	for range 3 {
		h.clock.Advance(time.Minute)
		h.tick()
	}
	h.wantEvents(102, "observe/track", "stop/intent", "stop/done")
	if got := h.pve.count("stop"); got != 1 {
		t.Errorf("stop calls = %d; want 1", got)
	}
}

func TestDryRunChangesNothing(t *testing.T) {
	h := newHarness(t, Options{DryRun: true})
	addSandbox(t, h.pve, sandbox{vmid: 103, created: t0.Add(-2 * time.Hour), ttl: time.Hour})
	addSandbox(t, h.pve, sandbox{vmid: 104, created: t0.Add(-2 * time.Hour), ttl: time.Hour, onExpiry: lease.Stop})
	for range 5 {
		h.tick()
		h.clock.Advance(time.Minute)
	}
	if !h.pve.exists(103) || !h.pve.exists(104) {
		t.Fatal("dry run destroyed a VM")
	}
	if got := h.pve.mutations(); len(got) != 0 {
		t.Errorf("dry run mutations = %v; want none", got)
	}
	h.wantEvents(103, "destroy/dry-run")
	h.wantEvents(104, "stop/dry-run")
	if ev := h.events(103)[0]; !ev.DryRun || !strings.Contains(ev.Reason, "would destroy") {
		t.Errorf("dry-run event = %+v; want DryRun and 'would destroy'", ev)
	}
}

func TestNeverTouched(t *testing.T) {
	long := t0.Add(-48 * time.Hour) // every lease below expired a day ago
	h := newHarness(t, Options{UserKeep: true})
	// Protected by agentlab-keep (user_keep is on in this test).
	addSandbox(t, h.pve, sandbox{vmid: 110, created: long, ttl: time.Hour, extraTags: []string{"agentlab-keep"}})
	// Valid metadata, but the agentlab tag was removed.
	addSandbox(t, h.pve, sandbox{vmid: 111, created: long, ttl: time.Hour})
	h.pve.set(111, "tags", "agentlab-exp-"+fmt.Sprint(long.Add(time.Hour).Unix()))
	// Tagged, but no metadata block.
	addSandbox(t, h.pve, sandbox{vmid: 112, created: long, ttl: time.Hour})
	h.pve.set(112, "description", "someone replaced the notes")
	// Tagged, malformed metadata.
	addSandbox(t, h.pve, sandbox{vmid: 113, created: long, ttl: time.Hour})
	h.pve.set(113, "description", lease.BeginMarker+"\n{\"version\":1,\"expires_at\":\"soon\"}\n"+lease.EndMarker)
	// Expiry tag disagrees with the metadata.
	addSandbox(t, h.pve, sandbox{vmid: 114, created: long, ttl: time.Hour})
	h.pve.set(114, "tags", "agentlab;agentlab-exp-"+fmt.Sprint(t0.Add(time.Hour).Unix()))
	// No expiry tag at all.
	addSandbox(t, h.pve, sandbox{vmid: 115, created: long, ttl: time.Hour})
	h.pve.set(115, "tags", "agentlab")
	// A template tagged agentlab.
	addSandbox(t, h.pve, sandbox{vmid: 116, created: long, ttl: time.Hour})
	h.pve.vms[116].template = true
	// A VM that is none of the reaper's business.
	h.pve.add(117, "db-server", "production database", "prod")
	// Config unreadable (permission).
	addSandbox(t, h.pve, sandbox{vmid: 118, created: long, ttl: time.Hour})
	h.pve.configErr[118] = errors.New("pve GET /nodes/pve/qemu/118/config: 403 Permission check failed")

	for range 4 {
		h.tick()
		h.clock.Advance(time.Minute)
	}
	if got := h.pve.mutations(); len(got) != 0 {
		t.Fatalf("mutations = %v; want none", got)
	}
	tests := []struct {
		vmid   int
		state  reaper.State
		reason string
	}{
		{110, reaper.StateProtected, "agentlab-keep"},
		{111, reaper.StateInvalid, "no agentlab tag"},
		{112, reaper.StateInvalid, "no agentlab metadata block"},
		{113, reaper.StateInvalid, "malformed"},
		{114, reaper.StateInvalid, "expiry tag says 2026-03-01T13:00:00Z but the metadata says 2026-02-27T13:00:00Z"},
		{115, reaper.StateInvalid, "no agentlab-exp-"},
		{116, reaper.StateProtected, "template"},
		{118, reaper.StateUnknown, "403 Permission check failed"},
	}
	for _, tt := range tests {
		l := h.lease(tt.vmid)
		if l.State != tt.state || !strings.Contains(l.Reason, tt.reason) {
			t.Errorf("vm %d: state %s (%q); want %s containing %q", tt.vmid, l.State, l.Reason, tt.state, tt.reason)
		}
		// Once per VM per state change: one event over four ticks.
		h.wantEvents(tt.vmid, "observe/skip")
	}
	if _, err := h.db.Lease(context.Background(), 117); !errors.Is(err, reaper.ErrNotFound) {
		t.Errorf("unrelated VM 117 is stored (err %v); want it ignored", err)
	}
	// Reads: every VM tagged agentlab (not templates) once, the unreadable one
	// at every tick, and the untagged 117 once (the orphan search).
	if got, want := h.pve.count("config"), 5+4+1; got != want {
		t.Errorf("config reads = %d; want %d", got, want)
	}
}

func TestWarnOncePerLease(t *testing.T) {
	h := newHarness(t, Options{WarnBefore: 5 * time.Minute})
	addSandbox(t, h.pve, sandbox{vmid: 120, created: t0, ttl: time.Hour, maxTTL: 4 * time.Hour, token: "tok-120"})
	h.tick()
	h.clock.Set(t0.Add(56 * time.Minute))
	h.tick()
	h.clock.Advance(time.Minute)
	h.tick()
	h.wantState(120, reaper.StateExpiring)
	h.wantEvents(120, "observe/track", "warn/track")

	// A restart does not warn again for the same lease.
	h.start()
	h.tick()
	h.wantEvents(120, "observe/track", "warn/track")

	// A renewed lease gets its own warning.
	if _, err := h.loop.Heartbeat(context.Background(), "tok-120"); err != nil {
		t.Fatalf("Heartbeat = %v", err)
	}
	h.tick()
	h.wantState(120, reaper.StateActive)
	h.clock.Set(t0.Add(57*time.Minute + 56*time.Minute))
	h.tick()
	h.tick()
	h.wantEvents(120, "observe/track", "warn/track", "heartbeat/done", "observe/track", "warn/track")
}

func TestUnrecordedDecisionsAreDecidedAgain(t *testing.T) {
	h := newHarness(t, Options{WarnBefore: 5 * time.Minute})
	addSandbox(t, h.pve, sandbox{vmid: 121, created: t0, ttl: time.Hour})
	addSandbox(t, h.pve, sandbox{vmid: 122, created: t0, ttl: 2 * time.Hour})
	cs := &crashingStore{DB: h.db, crashed: true}
	h.loop = New(h.pve, cs, Options{Clock: h.clock, WarnBefore: 5 * time.Minute})
	if err := h.loop.Tick(context.Background()); err == nil {
		t.Fatal("Tick with a store that refuses the decisions = nil; want an error")
	}
	cs.crashed = false
	h.tick()
	h.wantEvents(121, "observe/track")
	h.wantEvents(122, "observe/track")

	// The warning is due, but the store refuses it: the next tick warns.
	h.clock.Set(t0.Add(56 * time.Minute))
	cs.crashed = true
	if err := h.loop.Tick(context.Background()); err == nil {
		t.Fatal("Tick with a store that refuses the decisions = nil; want an error")
	}
	cs.crashed = false
	h.clock.Advance(time.Minute)
	h.tick()
	h.tick()
	h.wantState(121, reaper.StateExpiring)
	h.wantEvents(121, "observe/track", "warn/track")
	if got := h.lease(121); !got.WarnedFor.Equal(t0.Add(time.Hour)) || !got.LastSeen.Equal(t0.Add(57*time.Minute)) {
		t.Errorf("lease = warned for %v, last seen %v; want %v, %v", got.WarnedFor, got.LastSeen, t0.Add(time.Hour), t0.Add(57*time.Minute))
	}
	h.wantState(122, reaper.StateActive)
	h.wantEvents(122, "observe/track")
}

// countingStore counts the store's writes.
type countingStore struct {
	*sqlite.DB
	leases, events, touches int
}

func (c *countingStore) Record(ctx context.Context, leases []reaper.Lease, events []reaper.Event) error {
	c.leases += len(leases)
	c.events += len(events)
	return c.DB.Record(ctx, leases, events)
}

func (c *countingStore) Touch(ctx context.Context, at time.Time) error {
	c.touches++
	return c.DB.Touch(ctx, at)
}

func TestUnchangedTickWritesOneRow(t *testing.T) {
	h := newHarness(t, Options{WarnBefore: 5 * time.Minute})
	for i := range 20 {
		addSandbox(t, h.pve, sandbox{vmid: 300 + i, created: t0, ttl: 24 * time.Hour})
	}
	cs := &countingStore{DB: h.db}
	h.loop = New(h.pve, cs, Options{Clock: h.clock, WarnBefore: 5 * time.Minute})
	h.tick()
	if cs.leases != 20 || cs.events != 20 {
		t.Fatalf("first tick recorded %d leases and %d events; want 20 and 20", cs.leases, cs.events)
	}
	*cs = countingStore{DB: h.db}
	for range 5 {
		h.clock.Advance(30 * time.Second)
		h.tick()
	}
	if cs.leases != 0 || cs.events != 0 || cs.touches != 5 {
		t.Errorf("5 unchanged ticks: %d leases, %d events, %d touches; want 0, 0 and 5 (one row a tick)", cs.leases, cs.events, cs.touches)
	}
	if got := h.lease(300).LastSeen; !got.Equal(h.clock.Now()) {
		t.Errorf("last seen = %v; want the last tick's %v", got, h.clock.Now())
	}
}

func TestListFailureChangesNothing(t *testing.T) {
	h := newHarness(t, Options{})
	addSandbox(t, h.pve, sandbox{vmid: 130, created: t0, ttl: time.Hour})
	h.tick()
	h.pve.listErr = errConnReset
	h.clock.Advance(2 * time.Hour)
	if err := h.loop.Tick(context.Background()); err == nil {
		t.Fatal("Tick with a failing list = nil; want an error")
	}
	if !h.pve.exists(130) {
		t.Fatal("VM destroyed although the list failed")
	}
	h.wantState(130, reaper.StateActive)
	h.pve.listErr = nil
	h.tick()
	if h.pve.exists(130) {
		t.Fatal("VM not destroyed after the list recovered")
	}
}

func TestReadsOnlyWhatChanged(t *testing.T) {
	h := newHarness(t, Options{})
	for i := range 50 {
		addSandbox(t, h.pve, sandbox{vmid: 200 + i, created: t0, ttl: 24 * time.Hour})
	}
	// A VM without the agentlab tag: the orphan search reads its config once
	// per process, to find AgentLab metadata (there is none).
	h.pve.add(300, "other", "", "")
	h.tick()
	if got := h.pve.count("config"); got != 51 {
		t.Errorf("first tick config reads = %d; want 50 sandboxes and 1 untagged VM", got)
	}
	before := h.pve.total()
	for range 3 {
		h.clock.Advance(30 * time.Second)
		h.tick()
	}
	if got, want := h.pve.count("list"), 4; got != want {
		t.Errorf("list calls = %d; want %d (one per tick)", got, want)
	}
	if got := h.pve.total() - before; got != 3 {
		t.Errorf("Proxmox calls in 3 unchanged ticks = %d; want 3 (the resource list only)", got)
	}
	if got := h.pve.count("config"); got != 51 {
		t.Errorf("config reads after unchanged ticks = %d; want still 51", got)
	}
	// Each kind of change makes exactly one read.
	h.pve.set(201, "name", "renamed")
	h.pve.vms[202].status = "stopped"
	h.pve.set(203, "tags", h.pve.vms[203].cfg["tags"].(string)+";extra")
	h.tick()
	if got := h.pve.count("config"); got != 54 {
		t.Errorf("config reads after 3 changes = %d; want 54", got)
	}
	// A restart trusts the stored view: no reads for unchanged sandboxes
	// (the untagged VM is read again).
	h.start()
	h.tick()
	if got := h.pve.count("config"); got != 55 {
		t.Errorf("config reads after restart = %d; want 55", got)
	}
}

// crashingStore fails every write once crashed, as a killed process would
// not write.
type crashingStore struct {
	*sqlite.DB
	crashed bool
}

func (c *crashingStore) Record(ctx context.Context, leases []reaper.Lease, events []reaper.Event) error {
	if c.crashed {
		return errors.New("process killed")
	}
	return c.DB.Record(ctx, leases, events)
}

func TestCrashHalfWay(t *testing.T) {
	tests := []struct {
		name       string
		destroyed  bool // the destroy reached PVE before the crash
		wantEvents []string
	}{
		{"before the destroy", false, []string{"observe/track", "destroy/intent", "destroy/intent", "destroy/done"}},
		{"after the destroy", true, []string{"observe/track", "destroy/intent", "destroy/done"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, Options{})
			addSandbox(t, h.pve, sandbox{vmid: 140, created: t0, ttl: time.Hour})
			h.tick()
			cs := &crashingStore{DB: h.db}
			h.loop = New(h.pve, cs, Options{Clock: h.clock, Interval: 30 * time.Second})
			h.pve.onDestroy = func(int) (bool, error) {
				cs.crashed = true // the process dies now
				return tt.destroyed, errConnReset
			}
			h.clock.Advance(time.Hour)
			h.tick()
			h.wantState(140, reaper.StateDestroying)
			if got := h.pve.exists(140); got == tt.destroyed {
				t.Fatalf("VM exists = %v after the crash; want %v", got, !tt.destroyed)
			}

			// Restart: a new process over the same database finishes the job.
			h.pve.onDestroy = nil
			h.start()
			h.clock.Advance(30 * time.Second)
			h.tick()
			if h.pve.exists(140) {
				t.Fatal("VM 140 still exists after the restart's tick")
			}
			h.wantState(140, reaper.StateDestroyed)
			h.wantEvents(140, tt.wantEvents...)
			if evs := h.events(140); tt.destroyed && !strings.Contains(evs[len(evs)-1].Reason, "interruption") {
				t.Errorf("outcome = %q; want it to say the destroy completed after an interruption", evs[len(evs)-1].Reason)
			} else if !tt.destroyed && !strings.Contains(evs[2].Reason, "resuming") {
				t.Errorf("second intent = %q; want it to say it resumes", evs[2].Reason)
			}
		})
	}
}

func TestFailedDestroyBacksOff(t *testing.T) {
	h := newHarness(t, Options{Interval: 30 * time.Second})
	addSandbox(t, h.pve, sandbox{vmid: 150, created: t0, ttl: time.Hour})
	h.pve.onDestroy = func(int) (bool, error) { return false, errors.New("can't remove VM 150 - protection mode enabled") }
	h.tick()
	h.clock.Advance(time.Hour)
	h.tick() // attempt 1
	h.clock.Advance(30 * time.Second)
	h.tick() // attempt 2 (backoff 30s)
	h.clock.Advance(30 * time.Second)
	h.tick() // backoff is now 60s: no attempt
	if got := h.pve.count("destroy"); got != 2 {
		t.Errorf("destroy attempts = %d; want 2", got)
	}
	h.wantEvents(150, "observe/track", "destroy/intent", "destroy/failed", "destroy/intent", "destroy/failed")
	l := h.lease(150)
	if l.State != reaper.StateExpired || !strings.Contains(l.Reason, "protection mode") {
		t.Errorf("lease = %s %q; want expired with the failure", l.State, l.Reason)
	}
	h.pve.onDestroy = nil
	h.clock.Advance(30 * time.Second)
	h.tick()
	if h.pve.exists(150) {
		t.Error("VM 150 not destroyed once the failure cleared")
	}
}

func TestWorkspaceDetachedBeforeDestroy(t *testing.T) {
	h := newHarness(t, Options{})
	const ws = "local-lvm:vm-999000-disk-0"
	addSandbox(t, h.pve, sandbox{vmid: 160, created: t0, ttl: time.Hour, workspace: ws})
	h.pve.set(160, "scsi1", ws+",size=10G")
	// A workspace owned by the sandbox's own VMID would be freed by PVE.
	addSandbox(t, h.pve, sandbox{vmid: 161, created: t0, ttl: time.Hour, workspace: "local-lvm:vm-161-disk-1"})
	h.pve.set(161, "scsi1", "local-lvm:vm-161-disk-1,size=10G")
	h.tick()
	h.clock.Advance(time.Hour)
	h.tick()
	if got, want := h.pve.mutations(), []string{"stop 160", "update 160 delete=[scsi1]", "destroy 160"}; !slices.Equal(got, want) {
		t.Errorf("mutations = %v; want %v", got, want)
	}
	if !h.pve.exists(161) {
		t.Fatal("VM 161, whose workspace it owns, was destroyed")
	}
	l := h.lease(161)
	if l.State != reaper.StateInvalid || !strings.Contains(l.Reason, "owned by VM 161 itself") {
		t.Errorf("vm 161: %s %q; want invalid, owned by VM 161 itself", l.State, l.Reason)
	}
	h.wantEvents(160, "observe/track", "destroy/intent", "destroy/done")
	if ev := h.events(160)[1]; !strings.Contains(ev.Reason, "detach workspace "+ws+" (scsi1)") {
		t.Errorf("intent = %q; want the workspace detach in it", ev.Reason)
	}
}

func TestLockedVMWaits(t *testing.T) {
	h := newHarness(t, Options{})
	addSandbox(t, h.pve, sandbox{vmid: 170, created: t0, ttl: time.Hour})
	h.pve.vms[170].lock = "backup"
	h.clock.Advance(2 * time.Hour)
	h.tick()
	h.tick()
	if !h.pve.exists(170) || h.pve.count("destroy") != 0 {
		t.Fatal("locked VM destroyed")
	}
	h.wantEvents(170, "expire/wait")
	h.pve.vms[170].lock = ""
	h.tick()
	if h.pve.exists(170) {
		t.Fatal("VM not destroyed once unlocked")
	}
}

func TestRenewedBetweenListAndDestroy(t *testing.T) {
	h := newHarness(t, Options{})
	m := addSandbox(t, h.pve, sandbox{vmid: 180, created: t0, ttl: time.Hour})
	h.tick()
	h.clock.Advance(time.Hour)
	// The provider renews the lease, but the resource list still shows the
	// old expiry tag: only the config read right before acting can tell.
	h.pve.staleTags = map[int]string{180: h.pve.vms[180].cfg["tags"].(string)}
	renewed, err := m.Lease.Renew(h.clock.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	m.Lease = renewed
	desc, _ := lease.Encode("", m)
	h.pve.set(180, "description", desc)
	h.pve.set(180, "tags", lease.WithExpiry([]string{"agentlab"}, renewed.ExpiresAt))
	h.tick()
	if !h.pve.exists(180) {
		t.Fatal("renewed VM destroyed")
	}
	if got := h.pve.count("destroy"); got != 0 {
		t.Errorf("destroy calls = %d; want 0", got)
	}
	h.wantState(180, reaper.StateActive)
	h.wantEvents(180, "observe/track", "observe/track")
}

func TestEventTimesUseTheClock(t *testing.T) {
	h := newHarness(t, Options{})
	addSandbox(t, h.pve, sandbox{vmid: 190, created: t0, ttl: time.Hour})
	h.tick()
	if ev := h.events(190)[0]; !ev.Time.Equal(t0) {
		t.Errorf("event time = %v; want the fake clock's %v", ev.Time, t0)
	}
	if l := h.lease(190); !l.FirstSeen.Equal(t0) || !l.ExpiresAt.Equal(t0.Add(time.Hour)) {
		t.Errorf("lease = first seen %v, expires %v; want %v, %v", l.FirstSeen, l.ExpiresAt, t0, t0.Add(time.Hour))
	}
}

// crashBeforeOutcome expires VM vmid and makes the loop "die" during its
// destroy, before anything reaches PVE; then it starts a new loop.
func crashBeforeOutcome(t *testing.T, h *harness, vmid int) {
	t.Helper()
	cs := &crashingStore{DB: h.db}
	h.loop = New(h.pve, cs, Options{Clock: h.clock, Interval: 30 * time.Second})
	h.pve.onDestroy = func(int) (bool, error) {
		cs.crashed = true
		return false, errConnReset
	}
	h.tick()
	h.wantState(vmid, reaper.StateDestroying)
	h.pve.onDestroy = nil
	h.start()
}

func TestInterruptedDestroyFinishedByPVE(t *testing.T) {
	h := newHarness(t, Options{})
	addSandbox(t, h.pve, sandbox{vmid: 141, created: t0, ttl: time.Hour})
	h.tick()
	h.clock.Advance(time.Hour)
	crashBeforeOutcome(t, h, 141)
	// PVE is still working on it: the VM carries lock "destroyed".
	h.pve.vms[141].lock = "destroyed"
	h.tick()
	h.wantState(141, reaper.StateDestroying)
	if got := h.pve.count("destroy"); got != 1 {
		t.Errorf("destroy calls = %d; want 1 (none while PVE holds the lock)", got)
	}
	delete(h.pve.vms, 141) // PVE finished
	h.tick()
	h.wantState(141, reaper.StateDestroyed)
	h.wantEvents(141, "observe/track", "destroy/intent", "destroy/done")
}

func TestInterruptedDestroyAbandoned(t *testing.T) {
	h := newHarness(t, Options{})
	m := addSandbox(t, h.pve, sandbox{vmid: 142, created: t0, ttl: time.Hour, maxTTL: 4 * time.Hour})
	h.tick()
	h.clock.Advance(time.Hour)
	crashBeforeOutcome(t, h, 142)
	// Meanwhile the provider renewed the lease.
	renewed, err := m.Lease.Renew(h.clock.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	m.Lease = renewed
	desc, _ := lease.Encode("", m)
	h.pve.set(142, "description", desc)
	h.pve.set(142, "tags", lease.WithExpiry([]string{"agentlab"}, renewed.ExpiresAt))
	h.tick()
	if !h.pve.exists(142) {
		t.Fatal("renewed VM destroyed")
	}
	h.wantState(142, reaper.StateActive)
	h.wantEvents(142, "observe/track", "destroy/intent", "destroy/skip")
	if evs := h.events(142); !strings.Contains(evs[2].Reason, "abandoned") {
		t.Errorf("closing event = %q; want it to say the destroy was abandoned", evs[2].Reason)
	}
}

func TestTransientReadErrorHoldsVerdict(t *testing.T) {
	h := newHarness(t, Options{})
	addSandbox(t, h.pve, sandbox{vmid: 143, created: t0, ttl: 24 * time.Hour})
	h.tick()
	h.pve.set(143, "name", "renamed") // a change: the next tick reads the config
	h.pve.configErr[143] = errors.New("pve GET config: 596 Broken pipe")
	h.tick()
	h.tick()
	h.wantState(143, reaper.StateActive)
	h.wantEvents(143, "observe/track")
	h.tick() // the third failure in a row: the reaper no longer knows
	h.wantState(143, reaper.StateUnknown)
	delete(h.pve.configErr, 143)
	h.tick()
	h.wantState(143, reaper.StateActive)
	h.wantEvents(143, "observe/track", "observe/skip", "observe/track")
}
