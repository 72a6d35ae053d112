package sqlite

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/agentlab/terraform-provider-agentlab/reaper"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func openDB(t *testing.T, path string) *DB {
	t.Helper()
	db := New(path)
	db.Now = func() time.Time { return t0 }
	if err := db.Open(context.Background()); err != nil {
		t.Fatalf("Open = %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestOpenMigratesOnceAndUsesWAL(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "reaper.db")
	db := openDB(t, path)
	ctx := context.Background()
	var mode string
	if err := db.db.QueryRowContext(ctx, `PRAGMA journal_mode`).Scan(&mode); err != nil {
		t.Fatal(err)
	}
	if mode != "wal" {
		t.Errorf("journal_mode = %q; want wal", mode)
	}
	for _, table := range []string{"leases", "events", "jobs", "artifacts"} {
		var n int
		if err := db.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM sqlite_master WHERE type='table' AND name=?`, table).Scan(&n); err != nil || n != 1 {
			t.Errorf("table %s: count %d, %v; want 1, nil", table, n, err)
		}
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o600 {
		t.Errorf("database mode = %04o; want 0600", got)
	}
	if err := db.AddEvents(ctx, reaper.Event{VMID: 1, Kind: reaper.KindObserve, Decision: reaper.DecisionTrack, Actor: "t"}); err != nil {
		t.Fatal(err)
	}
	db.Close()

	// Reopening applies nothing twice and keeps the data.
	db2 := openDB(t, path)
	var n int
	files, _ := fs.Glob(migrationFS, "migration/*.sql")
	if err := db2.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM migrations`).Scan(&n); err != nil || n != len(files) {
		t.Errorf("migrations: %d, %v; want %d, nil", n, err, len(files))
	}
	evs, err := db2.Events(ctx, reaper.EventFilter{})
	if err != nil || len(evs) != 1 {
		t.Errorf("events after reopen: %d, %v; want 1, nil", len(evs), err)
	}
}

func TestLeaseRoundTrip(t *testing.T) {
	db := openDB(t, filepath.Join(t.TempDir(), "reaper.db"))
	ctx := context.Background()
	want := reaper.Lease{
		VMID: 101, Node: "pve1", Name: "sbx", Status: "running", Tags: []string{"agentlab", "agentlab-exp-1772370000"},
		State: reaper.StateActive, Reason: "", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour), MaxExpiresAt: t0.Add(24 * time.Hour),
		TTL: time.Hour, OnExpiry: "destroy", Owner: "ci", Profile: "small", JobID: "j1", Workspace: "scsi1",
		TokenSHA256: "abcd", WarnedFor: t0.Add(time.Hour), FirstSeen: t0, LastSeen: t0,
	}
	gone := reaper.Lease{VMID: 102, Node: "pve1", State: reaper.StateDestroyed, FirstSeen: t0, LastSeen: t0}
	if err := db.Record(ctx, []reaper.Lease{want, gone}, nil); err != nil {
		t.Fatal(err)
	}
	got, err := db.Lease(ctx, 101)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Lease(101) = %+v; want %+v", got, want)
	}
	if _, err := db.Lease(ctx, 999); !errors.Is(err, reaper.ErrNotFound) {
		t.Errorf("Lease(999) error = %v; want ErrNotFound", err)
	}
	present, err := db.Leases(ctx, false)
	if err != nil || len(present) != 1 || present[0].VMID != 101 {
		t.Errorf("Leases(present) = %v, %v; want [101]", present, err)
	}
	all, err := db.Leases(ctx, true)
	if err != nil || len(all) != 2 {
		t.Errorf("Leases(all) = %d leases, %v; want 2", len(all), err)
	}
	byTok, err := db.LeaseByToken(ctx, "abcd")
	if err != nil || byTok.VMID != 101 {
		t.Errorf("LeaseByToken = %d, %v; want 101, nil", byTok.VMID, err)
	}
	if _, err := db.LeaseByToken(ctx, "nope"); !errors.Is(err, reaper.ErrNotFound) {
		t.Errorf("LeaseByToken(nope) = %v; want ErrNotFound", err)
	}
	if _, err := db.LeaseByToken(ctx, ""); !errors.Is(err, reaper.ErrNotFound) {
		t.Errorf("LeaseByToken(\"\") = %v; want ErrNotFound", err)
	}

	later := t0.Add(time.Minute)
	if err := db.Touch(ctx, later); err != nil {
		t.Fatal(err)
	}
	if got, _ := db.Lease(ctx, 101); !got.LastSeen.Equal(later) {
		t.Errorf("LastSeen after Touch = %v; want %v", got.LastSeen, later)
	}
	if got, _ := db.Lease(ctx, 102); !got.LastSeen.Equal(t0) {
		t.Errorf("destroyed LastSeen after Touch = %v; want unchanged %v", got.LastSeen, t0)
	}
	n, err := db.PruneLeases(ctx, t0.Add(time.Second))
	if err != nil || n != 1 {
		t.Errorf("PruneLeases = %d, %v; want 1, nil", n, err)
	}
}

func TestEventsFilter(t *testing.T) {
	db := openDB(t, filepath.Join(t.TempDir(), "reaper.db"))
	now := t0.Add(time.Hour)
	db.Now = func() time.Time { return now }
	ctx := context.Background()
	var evs []reaper.Event
	for i := range 10 {
		evs = append(evs, reaper.Event{
			Time: t0.Add(time.Duration(i) * time.Minute), VMID: 100 + i%2, Kind: reaper.KindWarn,
			Decision: reaper.DecisionTrack, Reason: fmt.Sprintf("r%d", i), Actor: reaper.ActorReaper,
		})
	}
	evs = append(evs, reaper.Event{VMID: 101, Kind: reaper.KindDestroy, Decision: reaper.DecisionDryRun, Actor: reaper.ActorReaper, DryRun: true})
	if err := db.AddEvents(ctx, evs...); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		f       reaper.EventFilter
		wantIDs []int64
	}{
		{"all", reaper.EventFilter{}, []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}},
		{"vmid", reaper.EventFilter{VMID: 100}, []int64{1, 3, 5, 7, 9}},
		{"since", reaper.EventFilter{Since: t0.Add(8 * time.Minute)}, []int64{9, 10, 11}},
		{"limit keeps latest", reaper.EventFilter{Limit: 2}, []int64{10, 11}},
		{"combined", reaper.EventFilter{VMID: 101, Since: t0.Add(4 * time.Minute), Limit: 2}, []int64{10, 11}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := db.Events(ctx, tt.f)
			if err != nil {
				t.Fatal(err)
			}
			var ids []int64
			for _, e := range got {
				ids = append(ids, e.ID)
			}
			if !reflect.DeepEqual(ids, tt.wantIDs) {
				t.Errorf("Events(%+v) IDs = %v; want %v", tt.f, ids, tt.wantIDs)
			}
		})
	}
	last, _ := db.Events(ctx, reaper.EventFilter{Limit: 1})
	if got := last[0]; !got.Time.Equal(now) || !got.DryRun || got.Kind != reaper.KindDestroy {
		t.Errorf("stamped event = %+v; want time %v (Now), dry_run, kind destroy", got, now)
	}
}
