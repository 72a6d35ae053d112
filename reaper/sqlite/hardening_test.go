package sqlite

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/agentlab/terraform-provider-agentlab/reaper"
)

func TestRepeatedEventsAreOneRow(t *testing.T) {
	db := openDB(t, filepath.Join(t.TempDir(), "reaper.db"))
	ctx := context.Background()
	refused := func(i int) reaper.Event {
		return reaper.Event{Time: t0.Add(time.Duration(i) * time.Minute), VMID: 101, Kind: reaper.KindHeartbeat,
			Decision: reaper.DecisionRejected, Reason: "lease expired", Actor: reaper.ActorGuest}
	}
	for i := range 500 {
		if err := db.AddEvents(ctx, refused(i)); err != nil {
			t.Fatal(err)
		}
	}
	// Another VM's events in between do not break the run of 101.
	if err := db.AddEvents(ctx, reaper.Event{Time: t0, VMID: 102, Kind: reaper.KindObserve, Decision: reaper.DecisionTrack, Actor: "reaper"}); err != nil {
		t.Fatal(err)
	}
	if err := db.AddEvents(ctx, refused(500)); err != nil {
		t.Fatal(err)
	}
	evs, err := db.Events(ctx, reaper.EventFilter{VMID: 101})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 {
		t.Fatalf("events of 101 = %d rows; want 1 with a count", len(evs))
	}
	if got := evs[0]; got.Count != 501 || !got.Time.Equal(t0) || !got.LastTime.Equal(t0.Add(500*time.Minute)) {
		t.Errorf("event = count %d, time %s, last %s; want 501, %s, %s", got.Count, got.Time, got.LastTime, t0, t0.Add(500*time.Minute))
	}
	// A different outcome is a new row, and the same one after it another.
	other := refused(501)
	other.Decision = reaper.DecisionDone
	if err := db.AddEvents(ctx, other, refused(502)); err != nil {
		t.Fatal(err)
	}
	if evs, _ := db.Events(ctx, reaper.EventFilter{VMID: 101}); len(evs) != 3 || evs[2].Count != 1 {
		t.Errorf("after a different outcome: %d rows (last count %d); want 3 (last 1)", len(evs), evs[len(evs)-1].Count)
	}
}

func TestPruneEvents(t *testing.T) {
	db := openDB(t, filepath.Join(t.TempDir(), "reaper.db"))
	ctx := context.Background()
	ev := func(vmid int, at time.Time, reason string) reaper.Event {
		return reaper.Event{Time: at, VMID: vmid, Kind: reaper.KindObserve, Decision: reaper.DecisionTrack, Reason: reason, Actor: "reaper"}
	}
	old, recent := t0.Add(-40*24*time.Hour), t0.Add(-time.Hour)
	if err := db.AddEvents(ctx, ev(101, old, "old"), ev(102, old, "repeated"), ev(102, recent, "repeated"), ev(103, recent, "recent")); err != nil {
		t.Fatal(err)
	}
	n, err := db.PruneEvents(ctx, t0.Add(-30*24*time.Hour))
	if err != nil || n != 1 {
		t.Fatalf("PruneEvents = %d, %v; want 1 (the old one; a row repeated since is kept)", n, err)
	}
	evs, _ := db.Events(ctx, reaper.EventFilter{})
	if len(evs) != 2 || evs[0].VMID != 102 || evs[1].VMID != 103 {
		t.Errorf("events after prune = %+v; want 102 and 103", evs)
	}
}

func TestKeepsVolumesOrphansAndSize(t *testing.T) {
	path := filepath.Join(t.TempDir(), "reaper.db")
	db := openDB(t, path)
	ctx := context.Background()
	ev := reaper.Event{Time: t0, VMID: 101, Kind: reaper.KindKeep, Decision: reaper.DecisionDone, Actor: "operator@unix"}
	if err := db.SetKept(ctx, 101, true, t0, "operator@unix", ev); err != nil {
		t.Fatal(err)
	}
	if err := db.SetKept(ctx, 102, true, t0, "operator@unix", ev); err != nil {
		t.Fatal(err)
	}
	if err := db.SetKept(ctx, 102, false, t0, "operator@unix", ev); err != nil {
		t.Fatal(err)
	}
	if k, err := db.Kept(ctx); err != nil || len(k) != 1 || !k[101] {
		t.Errorf("Kept = %v, %v; want {101}", k, err)
	}

	vd := reaper.VolumeDeletion{Volid: "local:iso/agentlab-101-cidata.iso", Node: "pve", VMID: 101, Since: t0}
	if err := db.AddVolumeDeletions(ctx, []reaper.VolumeDeletion{vd, vd}); err != nil {
		t.Fatal(err)
	}
	if got, err := db.VolumeDeletions(ctx); err != nil || len(got) != 1 || got[0] != vd {
		t.Errorf("VolumeDeletions = %+v, %v; want [%+v]", got, err, vd)
	}
	if err := db.VolumeDeleted(ctx, vd.Volid, reaper.Event{Time: t0, VMID: 101, Kind: reaper.KindVolume, Decision: reaper.DecisionDone, Actor: "reaper"}); err != nil {
		t.Fatal(err)
	}
	if got, _ := db.VolumeDeletions(ctx); len(got) != 0 {
		t.Errorf("VolumeDeletions after VolumeDeleted = %+v; want none", got)
	}
	// A seed ISO to retire keeps Retire; recorded again without it (the
	// destroy of a sandbox whose guest made contact), it still has it.
	retire := reaper.VolumeDeletion{Volid: "local:iso/agentlab-102-cidata.iso", Node: "pve", VMID: 102, Since: t0, Retire: true}
	again := retire
	again.Retire, again.Since = false, t0.Add(time.Minute)
	for _, add := range [][]reaper.VolumeDeletion{{retire}, {again}} {
		if err := db.AddVolumeDeletions(ctx, add); err != nil {
			t.Fatal(err)
		}
		if got, err := db.VolumeDeletions(ctx); err != nil || len(got) != 1 || got[0] != retire {
			t.Errorf("VolumeDeletions after adding %+v = %+v, %v; want [%+v]", add, got, err, retire)
		}
	}
	plain := reaper.VolumeDeletion{Volid: "local:iso/agentlab-103-cidata.iso", Node: "pve", VMID: 103, Since: t0}
	upgraded := plain
	upgraded.Retire = true
	if err := db.AddVolumeDeletions(ctx, []reaper.VolumeDeletion{plain}); err != nil {
		t.Fatal(err)
	}
	if err := db.AddVolumeDeletions(ctx, []reaper.VolumeDeletion{upgraded}); err != nil {
		t.Fatal(err)
	}
	if got, err := db.VolumeDeletions(ctx); err != nil || len(got) != 2 || got[1] != upgraded {
		t.Errorf("VolumeDeletions = %+v, %v; want %+v second, now to retire", got, err, upgraded)
	}

	vmOrphan := reaper.Orphan{ID: "vm/120", Kind: reaper.OrphanUntagged, VMID: 120, Node: "pve", Reason: "r", FirstSeen: t0, LastSeen: t0}
	isoOrphan := reaper.Orphan{ID: "iso/local:iso/agentlab-130-cidata.iso", Kind: reaper.OrphanISO, VMID: 130, Volid: "local:iso/agentlab-130-cidata.iso", FirstSeen: t0, LastSeen: t0}
	if err := db.SyncOrphans(ctx, reaper.OrphanKinds(), []reaper.Orphan{vmOrphan, isoOrphan}, nil); err != nil {
		t.Fatal(err)
	}
	// A tick that finds no VM orphan leaves the ISOs alone.
	if err := db.SyncOrphans(ctx, []reaper.OrphanKind{reaper.OrphanUntagged, reaper.OrphanPlaceholder}, nil, nil); err != nil {
		t.Fatal(err)
	}
	got, err := db.Orphans(ctx)
	if err != nil || len(got) != 1 || got[0].ID != isoOrphan.ID || !got[0].FirstSeen.Equal(t0) {
		t.Errorf("Orphans = %+v, %v; want only the ISO", got, err)
	}

	size, err := db.Size()
	if err != nil || size < 4096 {
		t.Errorf("Size = %d, %v; want at least a page", size, err)
	}
}
