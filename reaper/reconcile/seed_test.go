package reconcile

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentlab/terraform-provider-agentlab/internal/clock"
	"github.com/agentlab/terraform-provider-agentlab/internal/lease"
	"github.com/agentlab/terraform-provider-agentlab/internal/pve"
	"github.com/agentlab/terraform-provider-agentlab/internal/pvesim"
	"github.com/agentlab/terraform-provider-agentlab/internal/pvesim/pvesimtest"
	"github.com/agentlab/terraform-provider-agentlab/internal/volume"
	"github.com/agentlab/terraform-provider-agentlab/reaper"
	"github.com/agentlab/terraform-provider-agentlab/reaper/reapertest"
	"github.com/agentlab/terraform-provider-agentlab/reaper/sqlite"
)

// seedWorld is the in-process simulator with sandboxes that carry seed
// ISOs, the real Proxmox client and a store, for the seed retirement tests.
type seedWorld struct {
	t      *testing.T
	sim    *pvesimtest.Sim
	client *pve.Client
	api    *reapertest.PVE
	clock  *clock.Fake
	db     *sqlite.DB
	now    time.Time
}

func newSeedWorld(t *testing.T) *seedWorld {
	t.Helper()
	ctx := context.Background()
	sim := pvesimtest.Start(t)
	client, err := pve.New(ctx, pve.Config{Endpoint: sim.URL, APIToken: sim.Token, HTTPClient: sim.Client})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Second)
	w := &seedWorld{t: t, sim: sim, client: client, clock: clock.NewFake(now), now: now,
		api: &reapertest.PVE{Endpoint: sim.URL, Token: sim.Token, HTTP: sim.Client}}
	w.db = sqlite.New(filepath.Join(t.TempDir(), "reaper.db"))
	w.db.Now = w.clock.Now
	if err := w.db.Open(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.db.Close() })
	return w
}

// upload puts an ISO named name on storage "local" and returns its volid.
func (w *seedWorld) upload(name string) string {
	w.t.Helper()
	volid, err := w.client.UploadISO(context.Background(), "pve", "local", name, strings.NewReader("cidata"), 6)
	if err != nil {
		w.t.Fatal(err)
	}
	return volid
}

// sandbox creates a running sandbox with heartbeat token token (and job
// jobID) whose ide2 holds its seed ISO, as the provider leaves it, and
// returns the seed's volid.
func (w *seedWorld) sandbox(vmid int, token, jobID string) string {
	w.t.Helper()
	ctx := context.Background()
	if _, err := w.api.Create(ctx, reapertest.Sandbox{VMID: vmid, Created: w.now, TTL: time.Hour, Token: token, JobID: jobID, Start: true}); err != nil {
		w.t.Fatalf("create %d: %v", vmid, err)
	}
	seed := w.upload(volume.SeedISOName(vmid))
	if err := w.api.SetConfig(ctx, vmid, map[string]string{"ide2": seed + ",media=cdrom"}); err != nil {
		w.t.Fatal(err)
	}
	return seed
}

func (w *seedWorld) isos() []string {
	var out []string
	for _, v := range w.sim.Server.Volumes("pve") {
		if strings.Contains(v.Volid, ":iso/") {
			out = append(out, v.Volid)
		}
	}
	slices.Sort(out)
	return out
}

func (w *seedWorld) drive(vmid int, key string) string {
	w.t.Helper()
	cfg, ok, err := w.api.Config(context.Background(), vmid)
	if err != nil || !ok {
		w.t.Fatalf("config of %d: %v, %v", vmid, ok, err)
	}
	s, _ := cfg[key].(string)
	return s
}

// volumeEvents returns vmid's volume events as "decision: reason".
func (w *seedWorld) volumeEvents(vmid int) []string {
	w.t.Helper()
	evs, err := w.db.Events(context.Background(), reaper.EventFilter{VMID: vmid})
	if err != nil {
		w.t.Fatal(err)
	}
	var out []string
	for _, e := range evs {
		if e.Kind == reaper.KindVolume {
			out = append(out, string(e.Decision)+": "+e.Reason)
		}
	}
	return out
}

// countingMetrics counts seed ISOs retired and deleted with their VM.
type countingMetrics struct {
	noMetrics
	retired, deleted int
}

func (m *countingMetrics) SeedRetired()   { m.retired++ }
func (m *countingMetrics) VolumeDeleted() { m.deleted++ }

// mutations counts the requests that change the VM config or storage.
func mutations(s pvesim.Stats) (updates, deletes int) {
	return s.RequestCount("PUT /nodes/{node}/qemu/{vmid}/config") + s.RequestCount("POST /nodes/{node}/qemu/{vmid}/config"),
		s.RequestCount("DELETE /nodes/{node}/storage/{storage}/content/{volume}")
}

// TestSeedRetiredOnFirstHeartbeat: a sandbox's first heartbeat ejects its
// seed ISO (empty CD-ROM) and deletes it from storage, leaving every other
// ISO alone (another sandbox's seed in a second drive of the same VM, an
// installer ISO); the retirement is in the audit log and counted. The
// second heartbeat makes no eject and no delete.
func TestSeedRetiredOnFirstHeartbeat(t *testing.T) {
	ctx := context.Background()
	w := newSeedWorld(t)
	seed := w.sandbox(102, "tok-102-abcdefghijklmnop", "")
	other := w.sandbox(103, "tok-103-abcdefghijklmnop", "")
	installer := w.upload("debian-13.iso")
	// Not 102's: the seed of 103 and an installer, in 102's other drives.
	if err := w.api.SetConfig(ctx, 102, map[string]string{"ide0": installer + ",media=cdrom", "ide3": other + ",media=cdrom"}); err != nil {
		t.Fatal(err)
	}
	m := &countingMetrics{}
	loop := New(w.client, w.db, Options{Clock: w.clock, Metrics: m})
	if err := loop.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if got := w.drive(102, "ide2"); !strings.HasPrefix(got, seed) {
		t.Fatalf("a tick without contact touched the seed: ide2 = %q", got)
	}

	start := w.sim.Server.Stats()
	w.clock.Advance(time.Minute)
	if _, err := loop.Heartbeat(ctx, "tok-102-abcdefghijklmnop"); err != nil {
		t.Fatalf("Heartbeat = %v", err)
	}
	loop.FinishSeeds(ctx, 102)
	u0, d0 := mutations(start)
	u1, d1 := mutations(w.sim.Server.Stats())
	if u1-u0 != 2 || d1-d0 != 1 {
		t.Errorf("first heartbeat: %d config updates, %d deletions; want 2 (the lease, the eject) and 1", u1-u0, d1-d0)
	}
	if got := w.drive(102, "ide2"); got != "none,media=cdrom" {
		t.Errorf("ide2 after the first heartbeat = %q; want none,media=cdrom", got)
	}
	if got, want := w.isos(), []string{other, installer}; !slices.Equal(got, want) {
		t.Errorf("ISOs after the first heartbeat = %v; want %v (102's seed gone, the rest kept)", got, want)
	}
	for key, want := range map[string]string{"ide0": installer, "ide3": other} {
		if got := w.drive(102, key); !strings.HasPrefix(got, want) {
			t.Errorf("%s = %q; want %s kept", key, got, want)
		}
	}
	if got := w.drive(103, "ide2"); !strings.HasPrefix(got, other) {
		t.Errorf("VM 103's ide2 = %q; want its seed, untouched", got)
	}
	evs := w.volumeEvents(102)
	if len(evs) != 2 || !strings.HasPrefix(evs[0], "intent: ") || !strings.Contains(evs[0], "first heartbeat") ||
		!strings.HasPrefix(evs[1], "done: ") || !strings.Contains(evs[1], seed) {
		t.Errorf("volume events of 102 = %q; want the intent (first heartbeat), then done naming %s", evs, seed)
	}
	if m.retired != 1 {
		t.Errorf("seed ISOs retired = %d; want 1", m.retired)
	}
	if pending, _ := w.db.VolumeDeletions(ctx); len(pending) != 0 {
		t.Errorf("pending deletions = %+v; want none", pending)
	}

	// The second heartbeat renews the lease and does nothing else.
	before := w.sim.Server.Stats()
	w.clock.Advance(time.Minute)
	if _, err := loop.Heartbeat(ctx, "tok-102-abcdefghijklmnop"); err != nil {
		t.Fatalf("second Heartbeat = %v", err)
	}
	loop.FinishSeeds(ctx, 102)
	u0, d0 = mutations(before)
	u1, d1 = mutations(w.sim.Server.Stats())
	if u1-u0 != 1 || d1-d0 != 0 {
		t.Errorf("second heartbeat: %d config updates, %d deletions; want 1 (the lease) and 0", u1-u0, d1-d0)
	}
	if got := len(w.volumeEvents(102)); got != 2 {
		t.Errorf("volume events of 102 after the second heartbeat = %d; want still 2", got)
	}
	// Nor does the next tick.
	before = w.sim.Server.Stats()
	if err := loop.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	u0, d0 = mutations(before)
	u1, d1 = mutations(w.sim.Server.Stats())
	if u1 != u0 || d1 != d0 {
		t.Errorf("tick after the retirement: %d config updates, %d deletions; want none", u1-u0, d1-d0)
	}
	if m.retired != 1 {
		t.Errorf("seed ISOs retired = %d; want still 1", m.retired)
	}
}

// faultyPVE is the real client with a fault injected into the eject or the
// deletion, standing in for a reaper killed at that point.
type faultyPVE struct {
	*pve.Client
	failEject, failDelete bool
}

var errKilled = errors.New("the reaper was killed here")

func (f *faultyPVE) UpdateConfig(ctx context.Context, ref pve.VMRef, upd pve.ConfigUpdate) error {
	if _, eject := upd.Set["ide2"]; eject && f.failEject {
		return errKilled
	}
	return f.Client.UpdateConfig(ctx, ref, upd)
}

func (f *faultyPVE) DeleteVolume(ctx context.Context, node, volid string) error {
	if f.failDelete {
		return errKilled
	}
	return f.Client.DeleteVolume(ctx, node, volid)
}

// TestSeedRetirementResumes: a reaper stopped anywhere between the first
// contact and the deletion (before the eject, between the eject and the
// deletion, or with the provider retiring the seed meanwhile) leaves the
// intent in its store; the next process finishes at its first tick, once,
// and the second guest contact makes no further call.
func TestSeedRetirementResumes(t *testing.T) {
	for _, tc := range []struct {
		name                  string
		failEject, failDelete bool
		providerFirst         bool // the provider ejects and deletes before the restart
		wantEjected           bool // ide2 empty before the restart
	}{
		{name: "killed before the eject", failEject: true},
		{name: "killed between eject and delete", failDelete: true, wantEjected: true},
		{name: "provider retired it meanwhile", failEject: true, providerFirst: true, wantEjected: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			w := newSeedWorld(t)
			seed := w.sandbox(104, "tok-104-abcdefghijklmnop", "")
			first := New(&faultyPVE{Client: w.client, failEject: tc.failEject, failDelete: tc.failDelete}, w.db, Options{Clock: w.clock})
			if err := first.Tick(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := first.Heartbeat(ctx, "tok-104-abcdefghijklmnop"); err != nil {
				t.Fatalf("Heartbeat = %v", err)
			}
			first.FinishSeeds(ctx, 104)
			if tc.providerFirst {
				if err := w.api.SetConfig(ctx, 104, map[string]string{"ide2": "none,media=cdrom"}); err != nil {
					t.Fatal(err)
				}
				if err := w.client.DeleteVolume(ctx, "pve", seed); err != nil {
					t.Fatal(err)
				}
			}
			if got := w.drive(104, "ide2") == "none,media=cdrom"; got != tc.wantEjected {
				t.Fatalf("ejected before the restart = %v; want %v", got, tc.wantEjected)
			}
			if pending, _ := w.db.VolumeDeletions(ctx); len(pending) != 1 || pending[0].Volid != seed || !pending[0].Retire {
				t.Fatalf("pending deletions after the failure = %+v; want %s to retire", pending, seed)
			}

			m := &countingMetrics{}
			second := New(w.client, w.db, Options{Clock: w.clock, Metrics: m})
			if err := second.Tick(ctx); err != nil {
				t.Fatal(err)
			}
			if got := w.drive(104, "ide2"); got != "none,media=cdrom" {
				t.Errorf("ide2 after the restart = %q; want none,media=cdrom", got)
			}
			if got := w.isos(); slices.Contains(got, seed) {
				t.Errorf("ISOs after the restart = %v; want %s gone", got, seed)
			}
			if pending, _ := w.db.VolumeDeletions(ctx); len(pending) != 0 {
				t.Errorf("pending deletions after the restart = %+v; want none", pending)
			}
			evs := w.volumeEvents(104)
			if len(evs) == 0 || !strings.HasPrefix(evs[len(evs)-1], "done: ") {
				t.Errorf("volume events = %q; want the retirement done last", evs)
			}
			if m.retired != 1 {
				t.Errorf("seed ISOs retired = %d; want 1", m.retired)
			}
			before := w.sim.Server.Stats()
			w.clock.Advance(time.Minute)
			if _, err := second.Heartbeat(ctx, "tok-104-abcdefghijklmnop"); err != nil {
				t.Fatalf("Heartbeat after the restart = %v", err)
			}
			second.FinishSeeds(ctx, 104)
			if err := second.Tick(ctx); err != nil {
				t.Fatal(err)
			}
			u0, d0 := mutations(before)
			u1, d1 := mutations(w.sim.Server.Stats())
			if u1-u0 != 1 || d1 != d0 {
				t.Errorf("heartbeat and tick after the restart: %d config updates, %d deletions; want 1 (the lease) and 0", u1-u0, d1-d0)
			}
		})
	}
}

// TestSeedRetiredOnJobContact: a job runner's spec fetch retires the seed of
// the job's sandbox, and only when the VM's metadata names that job.
func TestSeedRetiredOnJobContact(t *testing.T) {
	ctx := context.Background()
	w := newSeedWorld(t)
	seed := w.sandbox(105, "tok-105-abcdefghijklmnop", "job-a")
	loop := New(w.client, w.db, Options{Clock: w.clock})
	if err := loop.JobContact(ctx, "pve", 105, "job-b"); !errors.Is(err, reaper.ErrConflict) {
		t.Errorf("JobContact with another job's ID = %v; want ErrConflict", err)
	}
	if got := w.drive(105, "ide2"); !strings.HasPrefix(got, seed) {
		t.Fatalf("another job's contact touched the seed: ide2 = %q", got)
	}
	if err := loop.JobContact(ctx, "pve", 106, "job-a"); !errors.Is(err, reaper.ErrNotFound) {
		t.Errorf("JobContact for a missing VM = %v; want ErrNotFound", err)
	}
	if err := loop.JobContact(ctx, "pve", 105, "job-a"); err != nil {
		t.Fatalf("JobContact = %v", err)
	}
	if got := w.drive(105, "ide2"); got != "none,media=cdrom" {
		t.Errorf("ide2 after the job's contact = %q; want none,media=cdrom", got)
	}
	if slices.Contains(w.isos(), seed) {
		t.Errorf("%s still on storage after the job's contact", seed)
	}
	if evs := w.volumeEvents(105); len(evs) != 2 || !strings.Contains(evs[0], "first job spec") {
		t.Errorf("volume events = %q; want intent (first job spec) and done", evs)
	}
}

// TestSeedLeftAloneInDryRun: with dry_run the first contact is recorded and
// nothing is ejected or deleted.
func TestSeedLeftAloneInDryRun(t *testing.T) {
	ctx := context.Background()
	w := newSeedWorld(t)
	seed := w.sandbox(107, "tok-107-abcdefghijklmnop", "")
	loop := New(w.client, w.db, Options{Clock: w.clock, DryRun: true})
	if err := loop.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := loop.Heartbeat(ctx, "tok-107-abcdefghijklmnop"); err != nil {
		t.Fatalf("Heartbeat = %v", err)
	}
	loop.FinishSeeds(ctx, 107)
	if err := loop.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if got := w.drive(107, "ide2"); !strings.HasPrefix(got, seed) || !slices.Contains(w.isos(), seed) {
		t.Errorf("dry run: ide2 = %q, ISOs %v; want the seed attached and kept", got, w.isos())
	}
	if evs := w.volumeEvents(107); len(evs) != 1 || !strings.HasPrefix(evs[0], "dry-run: ") {
		t.Errorf("volume events = %q; want one dry-run", evs)
	}
}

// TestSeedRetiredOnBootReport: the guest's boot report (its heartbeat token
// on /v1/booted) retires the seed and leaves the lease as it was; it works
// before any tick has seen the sandbox, a wrong token is refused, and a
// second report changes nothing.
func TestSeedRetiredOnBootReport(t *testing.T) {
	ctx := context.Background()
	w := newSeedWorld(t)
	seed := w.sandbox(108, "tok-108-abcdefghijklmnop", "")
	before, err := w.api.Lease(ctx, 108)
	if err != nil {
		t.Fatal(err)
	}
	loop := New(w.client, w.db, Options{Clock: w.clock})
	if _, _, err := loop.Booted(ctx, "tok-999-abcdefghijklmnop"); !errors.Is(err, reaper.ErrUnauthorized) {
		t.Errorf("Booted with an unknown token = %v; want ErrUnauthorized", err)
	}
	w.clock.Advance(time.Minute) // past the catch-up tick the unknown token ran
	vmid, fresh, err := loop.Booted(ctx, "tok-108-abcdefghijklmnop")
	if err != nil || vmid != 108 || fresh == "" {
		t.Fatalf("Booted = %d, %q, %v; want 108 and a fresh heartbeat token", vmid, fresh, err)
	}
	loop.FinishSeeds(ctx, 108)
	if got := w.drive(108, "ide2"); got != "none,media=cdrom" {
		t.Errorf("ide2 after the boot report = %q; want none,media=cdrom", got)
	}
	if slices.Contains(w.isos(), seed) {
		t.Errorf("%s still on storage after the boot report", seed)
	}
	after, err := w.api.Lease(ctx, 108)
	if err != nil || !after.ExpiresAt.Equal(before.ExpiresAt) {
		t.Errorf("lease after the boot report expires at %v (%v); want %v, unchanged", after.ExpiresAt, err, before.ExpiresAt)
	}
	if evs := w.volumeEvents(108); len(evs) != 2 || !strings.Contains(evs[0], "first boot report") {
		t.Errorf("volume events = %q; want intent (first boot report) and done", evs)
	}
	// A second report, with the token the first one handed the guest.
	start := w.sim.Server.Stats()
	if _, again, err := loop.Booted(ctx, fresh); err != nil || again != "" {
		t.Fatalf("second boot report = %q, %v; want no new token", again, err)
	}
	loop.FinishSeeds(ctx, 108)
	u0, d0 := mutations(start)
	u1, d1 := mutations(w.sim.Server.Stats())
	if u1 != u0 || d1 != d0 {
		t.Errorf("second boot report: %d config updates, %d deletions; want none", u1-u0, d1-d0)
	}
}

// TestRetiredSeedNotDeletedAgain: a sandbox whose seed was retired, then
// reaped, has no second deletion of its seed in the audit log, although
// the storage scan before the retirement saw the ISO.
func TestRetiredSeedNotDeletedAgain(t *testing.T) {
	ctx := context.Background()
	w := newSeedWorld(t)
	w.sandbox(109, "tok-109-abcdefghijklmnop", "")
	m := &countingMetrics{}
	loop := New(w.client, w.db, Options{Clock: w.clock, Metrics: m})
	if err := loop.Tick(ctx); err != nil { // scans the ISO storage: the seed is there
		t.Fatal(err)
	}
	if _, err := loop.Heartbeat(ctx, "tok-109-abcdefghijklmnop"); err != nil {
		t.Fatal(err)
	}
	loop.FinishSeeds(ctx, 109)
	w.clock.Advance(3 * time.Hour) // past the lease
	for range 2 {
		if err := loop.Tick(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if ok, _ := w.api.Exists(ctx, 109); ok {
		t.Fatal("VM 109 not reaped")
	}
	if evs := w.volumeEvents(109); len(evs) != 2 {
		t.Errorf("volume events = %q; want the retirement's intent and done only", evs)
	}
	if m.deleted != 0 || m.retired != 1 {
		t.Errorf("seed ISOs deleted with their VM %d, retired %d; want 0 and 1", m.deleted, m.retired)
	}
}

// TestSeedLeftOnUntaggedVM: a VM that lost its agentlab tag between the
// contact and the eject keeps its CD-ROM and ISO; the pending retirement is
// dropped with a skip event.
func TestSeedLeftOnUntaggedVM(t *testing.T) {
	ctx := context.Background()
	w := newSeedWorld(t)
	seed := w.sandbox(110, "tok-110-abcdefghijklmnop", "")
	loop := New(w.client, w.db, Options{Clock: w.clock})
	if err := loop.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := loop.Heartbeat(ctx, "tok-110-abcdefghijklmnop"); err != nil {
		t.Fatal(err)
	}
	if err := w.api.SetConfig(ctx, 110, map[string]string{"tags": "someone-elses"}); err != nil {
		t.Fatal(err)
	}
	loop.FinishSeeds(ctx, 110)
	if got := w.drive(110, "ide2"); !strings.HasPrefix(got, seed) || !slices.Contains(w.isos(), seed) {
		t.Errorf("ide2 = %q, ISOs %v; want the seed attached and kept", got, w.isos())
	}
	if pending, _ := w.db.VolumeDeletions(ctx); len(pending) != 0 {
		t.Errorf("pending deletions = %+v; want none", pending)
	}
	if evs := w.volumeEvents(110); len(evs) != 2 || !strings.HasPrefix(evs[1], "skip: ") {
		t.Errorf("volume events = %q; want the intent, then skip", evs)
	}
}

// TestBootReportSwapsTheToken: the boot report swaps the seed's token (which
// sat on PVE storage) for a fresh one: the seed's token no longer extends the
// lease; until the first heartbeat with the fresh token it may ask again (the
// answer was lost) and gets another, which voids the one before; after that
// heartbeat it buys nothing.
func TestBootReportSwapsTheToken(t *testing.T) {
	ctx := context.Background()
	w := newSeedWorld(t)
	const seedTok = "tok-110-abcdefghijklmnop"
	w.sandbox(110, seedTok, "")
	loop := New(w.client, w.db, Options{Clock: w.clock})
	if err := loop.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	_, first, err := loop.Booted(ctx, seedTok)
	if err != nil || first == "" {
		t.Fatalf("boot report = %q, %v; want a fresh token", first, err)
	}
	if _, err := loop.Heartbeat(ctx, seedTok); !errors.Is(err, reaper.ErrUnauthorized) {
		t.Errorf("heartbeat with the seed's token after the boot report = %v; want ErrUnauthorized", err)
	}
	// The answer was lost: the guest reports again with the seed's token.
	_, second, err := loop.Booted(ctx, seedTok)
	if err != nil || second == "" || second == first {
		t.Fatalf("repeated boot report = %q, %v; want another fresh token", second, err)
	}
	if _, err := loop.Heartbeat(ctx, first); !errors.Is(err, reaper.ErrUnauthorized) {
		t.Errorf("heartbeat with the voided token = %v; want ErrUnauthorized", err)
	}
	w.clock.Advance(time.Minute)
	if _, err := loop.Heartbeat(ctx, second); err != nil {
		t.Fatalf("heartbeat with the handed token: %v", err)
	}
	if _, _, err := loop.Booted(ctx, seedTok); !errors.Is(err, reaper.ErrUnauthorized) {
		t.Errorf("boot report with the seed's token after a heartbeat = %v; want ErrUnauthorized", err)
	}
	// A reaper restarted from its database finds the sandbox by the handed
	// token at once.
	loop2 := New(w.client, w.db, Options{Clock: w.clock})
	w.clock.Advance(time.Minute)
	if _, err := loop2.Heartbeat(ctx, second); err != nil {
		t.Errorf("heartbeat with the handed token after a restart: %v", err)
	}
	// No token at rest: the metadata holds hashes only.
	m, err := lease.Decode(w.drive(110, "description"))
	if err != nil {
		t.Fatal(err)
	}
	if m.HeartbeatTokenSHA256 != lease.TokenSHA256(second) || m.BootTokenSHA256 != "" {
		t.Errorf("metadata hashes: heartbeat %s, boot %q; want the handed token's and none", m.HeartbeatTokenSHA256, m.BootTokenSHA256)
	}
}
