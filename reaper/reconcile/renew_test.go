package reconcile

import (
	"context"
	"errors"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/agentlab/terraform-provider-agentlab/internal/lease"
	"github.com/agentlab/terraform-provider-agentlab/internal/pve"
	"github.com/agentlab/terraform-provider-agentlab/reaper"
)

// vmLease reads the lease back from the fake's config, checking that the
// metadata block and the expiry tag agree.
func vmLease(t *testing.T, f *fakePVE, vmid int) lease.Lease {
	t.Helper()
	v := f.vm(vmid)
	m, err := lease.Decode(v.cfg["description"].(string))
	if err != nil {
		t.Fatalf("vm %d metadata: %v", vmid, err)
	}
	exp, err := lease.ExpiryFromTags(pve.SplitTags(v.cfg["tags"].(string)))
	if err != nil {
		t.Fatalf("vm %d expiry tag: %v", vmid, err)
	}
	if !exp.Equal(m.ExpiresAt) {
		t.Fatalf("vm %d: expiry tag %v disagrees with metadata %v", vmid, exp, m.ExpiresAt)
	}
	return m.Lease
}

func TestHeartbeat(t *testing.T) {
	h := newHarness(t, Options{Grace: 10 * time.Minute})
	addSandbox(t, h.pve, sandbox{vmid: 101, created: t0, ttl: time.Hour, maxTTL: 3 * time.Hour, token: "secret-101"})
	addSandbox(t, h.pve, sandbox{vmid: 102, created: t0, ttl: 4 * time.Hour, token: "secret-102"})
	ctx := context.Background()

	// Before any tick, a heartbeat runs one catch-up tick, which finds the
	// sandbox; the lease is extended from now (t0) by its ttl: unchanged here.
	if _, err := h.loop.Heartbeat(ctx, "secret-101"); err != nil {
		t.Errorf("Heartbeat before the reaper saw the VM = %v; want nil after a catch-up tick", err)
	}
	if got := h.pve.count("list"); got != 1 {
		t.Errorf("catch-up: %d ListVMs calls; want 1", got)
	}
	// Unknown tokens may not make it list Proxmox again within catchUpEvery.
	for range 3 {
		if _, err := h.loop.Heartbeat(ctx, "nobody"); !errors.Is(err, reaper.ErrUnauthorized) {
			t.Errorf("Heartbeat with an unknown token = %v; want ErrUnauthorized", err)
		}
	}
	if got := h.pve.count("list"); got != 1 {
		t.Errorf("after unknown tokens: %d ListVMs calls; want still 1", got)
	}
	h.tick()

	tests := []struct {
		name    string
		at      time.Duration // since t0
		token   string
		wantErr error
		wantExp time.Duration // since t0; 0: unchanged
	}{
		{"extends by ttl from now", 30 * time.Minute, "secret-101", nil, 90 * time.Minute},
		{"wrong token", 31 * time.Minute, "secret-102x", reaper.ErrUnauthorized, 0},
		{"another sandbox's token", 31 * time.Minute, "secret-102", nil, 0},
		{"unknown token", 31 * time.Minute, "nobody", reaper.ErrUnauthorized, 0},
		{"empty token", 31 * time.Minute, "", reaper.ErrUnauthorized, 0},
		{"extends again", 80 * time.Minute, "secret-101", nil, 140 * time.Minute},
		{"extends again", 110 * time.Minute, "secret-101", nil, 170 * time.Minute},
		{"capped by max_ttl", 170 * time.Minute, "secret-101", lease.ErrPastMaxTTL, 180 * time.Minute},
		{"at the cap already", 175 * time.Minute, "secret-101", lease.ErrPastMaxTTL, 180 * time.Minute},
	}
	want := t0.Add(time.Hour)
	for _, tt := range tests {
		h.clock.Set(t0.Add(tt.at))
		r, err := h.loop.Heartbeat(ctx, tt.token)
		if !errors.Is(err, tt.wantErr) {
			t.Errorf("%s: Heartbeat = %v; want %v", tt.name, err, tt.wantErr)
		}
		if tt.wantExp != 0 {
			want = t0.Add(tt.wantExp)
			if !r.Lease.ExpiresAt.Equal(want) {
				t.Errorf("%s: returned expiry %v; want %v", tt.name, r.Lease.ExpiresAt, want)
			}
		}
		if got := vmLease(t, h.pve, 101); !got.ExpiresAt.Equal(want) {
			t.Errorf("%s: VM expiry %v; want %v", tt.name, got.ExpiresAt, want)
		}
		if got := vmLease(t, h.pve, 101).TTL; got != time.Hour {
			t.Errorf("%s: TTL %v; want unchanged 1h", tt.name, got)
		}
	}
	var pe *lease.PastMaxTTLError
	if _, err := h.loop.Heartbeat(ctx, "secret-101"); !errors.As(err, &pe) || !pe.Limit.Equal(t0.Add(3*time.Hour)) {
		t.Errorf("capped error = %v; want a *PastMaxTTLError with limit %v", err, t0.Add(3*time.Hour))
	}
	// Writes: three extensions, one up to the cap (and one for 102).
	if got := h.pve.count("update"); got != 5 {
		t.Errorf("config writes = %d; want 5", got)
	}
	// The wrong token at 31m ran a catch-up tick (the first was 31 minutes
	// earlier), which observed 101's extended lease. The two heartbeats at
	// the cap had the same outcome: one row, counted twice.
	h.wantEvents(101, "observe/track", "heartbeat/done", "heartbeat/done", "observe/track",
		"heartbeat/done", "heartbeat/done", "heartbeat/done", "heartbeat/done")
	if evs := h.events(101); evs[len(evs)-1].Count != 2 {
		t.Errorf("last event count = %d; want 2 (two identical capped heartbeats)", evs[len(evs)-1].Count)
	}

	// The loop learnt the new expiry from the write: no read at the next tick.
	reads := h.pve.count("config")
	h.tick()
	if got := h.pve.count("config"); got != reads {
		t.Errorf("config reads after a heartbeat's tick = %d; want %d", got, reads)
	}
	if l := h.lease(101); !l.ExpiresAt.Equal(t0.Add(3 * time.Hour)) {
		t.Errorf("stored expiry = %v; want %v", l.ExpiresAt, t0.Add(3*time.Hour))
	}

}

func TestHeartbeatGrace(t *testing.T) {
	h := newHarness(t, Options{Grace: 10 * time.Minute})
	addSandbox(t, h.pve, sandbox{vmid: 101, created: t0, ttl: time.Hour, token: "tok"})
	h.tick()
	ctx := context.Background()
	// Within grace a heartbeat still extends; past it, it cannot revive the lease.
	h.clock.Set(t0.Add(65 * time.Minute))
	if _, err := h.loop.Heartbeat(ctx, "tok"); err != nil {
		t.Errorf("Heartbeat within grace = %v; want nil", err)
	}
	h.clock.Set(t0.Add(125*time.Minute + 10*time.Minute))
	if _, err := h.loop.Heartbeat(ctx, "tok"); !errors.Is(err, reaper.ErrConflict) {
		t.Errorf("Heartbeat past grace = %v; want ErrConflict", err)
	}
	if got := vmLease(t, h.pve, 101).ExpiresAt; !got.Equal(t0.Add(125 * time.Minute)) {
		t.Errorf("expiry = %v; want %v", got, t0.Add(125*time.Minute))
	}
}

func TestRenew(t *testing.T) {
	h := newHarness(t, Options{})
	addSandbox(t, h.pve, sandbox{vmid: 101, created: t0, ttl: time.Hour, maxTTL: 4 * time.Hour})
	addSandbox(t, h.pve, sandbox{vmid: 102, created: t0, ttl: time.Hour})
	h.pve.set(102, "tags", "agentlab;agentlab-exp-1")
	h.pve.add(103, "plain", "", "prod")
	addSandbox(t, h.pve, sandbox{vmid: 104, created: t0, ttl: time.Hour})
	h.pve.set(104, "description", "gone")
	h.tick()
	ctx := context.Background()
	h.clock.Set(t0.Add(30 * time.Minute))

	tests := []struct {
		name    string
		vmid    int
		d       time.Duration
		wantErr error
		wantExp time.Duration
	}{
		{"renew", 101, 2 * time.Hour, nil, 150 * time.Minute},
		{"shorten", 101, 10 * time.Minute, nil, 40 * time.Minute},
		{"longer than max_ttl", 101, 5 * time.Hour, lease.ErrInvalid, 40 * time.Minute},
		{"capped", 101, 3*time.Hour + 45*time.Minute, lease.ErrPastMaxTTL, 240 * time.Minute},
		{"zero", 101, 0, lease.ErrInvalid, 240 * time.Minute},
		{"tag mismatch", 102, time.Hour, reaper.ErrConflict, 0},
		{"not ours", 103, time.Hour, reaper.ErrNotFound, 0},
		{"no metadata", 104, time.Hour, reaper.ErrConflict, 0},
		{"unknown vm", 999, time.Hour, reaper.ErrNotFound, 0},
	}
	for _, tt := range tests {
		r, err := h.loop.Renew(ctx, tt.vmid, tt.d, "operator@unix")
		if !errors.Is(err, tt.wantErr) {
			t.Errorf("%s: Renew(%d, %s) = %v; want %v", tt.name, tt.vmid, tt.d, err, tt.wantErr)
		}
		if tt.wantExp == 0 {
			continue
		}
		want := t0.Add(tt.wantExp)
		if got := vmLease(t, h.pve, tt.vmid).ExpiresAt; !got.Equal(want) {
			t.Errorf("%s: VM expiry = %v; want %v", tt.name, got, want)
		}
		if err == nil && !r.Lease.ExpiresAt.Equal(want) {
			t.Errorf("%s: returned expiry = %v; want %v", tt.name, r.Lease.ExpiresAt, want)
		}
	}
	if got := vmLease(t, h.pve, 101).TTL; got != 3*time.Hour+45*time.Minute {
		t.Errorf("TTL after renewals = %v; want the last renewal's 3h45m", got)
	}
	h.wantEvents(101, "observe/track", "renew/done", "renew/done", "renew/rejected", "renew/done", "renew/rejected")
	h.wantEvents(102, "observe/skip", "renew/rejected")
	if evs := h.events(101); evs[1].Actor != "operator@unix" {
		t.Errorf("actor = %q; want operator@unix", evs[1].Actor)
	}
}

func TestRenewRetriesOnDigestMismatch(t *testing.T) {
	for _, mismatch := range []string{
		"checksum mismatch (file change by other user?)",                           // qemu-server's config update
		"detected modified configuration - file changed by other user? Try again.", // PVE::Tools::assert_if_modified
	} {
		t.Run(mismatch, func(t *testing.T) {
			h := newHarness(t, Options{})
			h.pve.mismatch = mismatch
			addSandbox(t, h.pve, sandbox{vmid: 101, created: t0, ttl: time.Hour})
			h.tick()
			races := 0
			h.pve.beforeWrite = func(vmid int) {
				if races < 2 {
					races++
					h.pve.set(vmid, "cores", strconv.Itoa(races)) // another writer gets in first
				}
			}
			if _, err := h.loop.Renew(context.Background(), 101, 2*time.Hour, "test"); err != nil {
				t.Fatalf("Renew = %v; want nil after retries", err)
			}
			if got := h.pve.count("update"); got != 3 {
				t.Errorf("update attempts = %d; want 3", got)
			}
			v := h.pve.vm(101)
			if v.cfg["cores"] != "2" {
				t.Errorf("other writer's change lost: cores = %v; want 2", v.cfg["cores"])
			}
			if got := vmLease(t, h.pve, 101).ExpiresAt; !got.Equal(t0.Add(2 * time.Hour)) {
				t.Errorf("expiry = %v; want %v", got, t0.Add(2*time.Hour))
			}

			// A writer that always wins makes the renewal fail, never clobber.
			h.pve.beforeWrite = func(vmid int) { h.pve.set(vmid, "cores", "9") }
			_, err := h.loop.Renew(context.Background(), 101, 3*time.Hour, "test")
			if !pve.IsDigestMismatch(err) {
				t.Errorf("Renew against a writer that always wins = %v; want a digest mismatch", err)
			}
			if got := h.pve.count("update"); got != 3+maxDigestRetries {
				t.Errorf("update attempts = %d; want %d", got, 3+maxDigestRetries)
			}
		})
	}
}

func TestRenewInDryRunWritesNothing(t *testing.T) {
	h := newHarness(t, Options{DryRun: true})
	addSandbox(t, h.pve, sandbox{vmid: 101, created: t0, ttl: time.Hour, token: "t"})
	h.tick()
	r, err := h.loop.Renew(context.Background(), 101, 2*time.Hour, "test")
	if err != nil || !r.DryRun || !r.Lease.ExpiresAt.Equal(t0.Add(2*time.Hour)) {
		t.Errorf("Renew = %+v, %v; want a dry-run renewal to %v", r, err, t0.Add(2*time.Hour))
	}
	if _, err := h.loop.Heartbeat(context.Background(), "t"); err != nil {
		t.Errorf("Heartbeat = %v", err)
	}
	if got := h.pve.count("update"); got != 0 {
		t.Errorf("updates in dry run = %d; want 0", got)
	}
	if got := vmLease(t, h.pve, 101).ExpiresAt; !got.Equal(t0.Add(time.Hour)) {
		t.Errorf("expiry = %v; want unchanged %v", got, t0.Add(time.Hour))
	}
}

func TestRenewWaitsForDestroy(t *testing.T) {
	h := newHarness(t, Options{})
	addSandbox(t, h.pve, sandbox{vmid: 101, created: t0, ttl: time.Hour, token: "tok"})
	h.tick()
	h.clock.Advance(time.Hour)
	results := make(chan error, 2)
	h.pve.onDestroy = func(vmid int) (bool, error) {
		// A renewal and a heartbeat arrive during the destroy: they must wait
		// for the VM's lock, held by the destroy, and then find it gone.
		go func() {
			_, err := h.loop.Renew(context.Background(), vmid, time.Hour, "test")
			results <- err
		}()
		go func() {
			_, err := h.loop.Heartbeat(context.Background(), "tok")
			results <- err
		}()
		for h.loop.locks.waiters(vmid) < 2 {
			runtime.Gosched()
		}
		return true, nil
	}
	h.tick()
	if h.pve.exists(101) {
		t.Fatal("VM not destroyed")
	}
	for range 2 {
		if err := <-results; !errors.Is(err, reaper.ErrNotFound) {
			t.Errorf("renewal during destroy = %v; want ErrNotFound", err)
		}
	}
	if got := h.pve.count("update"); got != 0 {
		t.Errorf("config writes = %d; want 0", got)
	}
}
