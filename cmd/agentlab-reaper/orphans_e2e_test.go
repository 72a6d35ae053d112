package main

import (
	"bytes"
	"context"
	"net/http"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/agentlab/terraform-provider-agentlab/internal/pve"
	"github.com/agentlab/terraform-provider-agentlab/internal/volume"
	"github.com/agentlab/terraform-provider-agentlab/reaper"
	"github.com/agentlab/terraform-provider-agentlab/reaper/reapertest"
)

// TestE2EOrphansAndSeedISOs runs the real daemon against the real simulator:
// a reaped sandbox's seed ISO goes with it; a VM the provider left untagged
// and an ISO whose VM is gone are listed by `orphans`, then pruned by a
// reaper started with prune: true on the same database (which the first one
// released on exit).
func TestE2EOrphansAndSeedISOs(t *testing.T) {
	reaperBin, simBin := buildBinaries(t)
	sim := reapertest.StartSimulator(t, simBin, "--listen", "127.0.0.1:0", "--plain-http")
	api := &reapertest.PVE{Endpoint: sim.Endpoint, Token: sim.Token, HTTP: &http.Client{}}
	ctx := context.Background()
	client, err := pve.New(ctx, pve.Config{Endpoint: sim.Endpoint, APIToken: sim.Token, HTTPClient: &http.Client{}})
	if err != nil {
		t.Fatal(err)
	}
	upload := func(vmid int) string {
		t.Helper()
		volid, err := client.UploadISO(ctx, "pve", "local", volume.SeedISOName(vmid), bytes.NewReader(make([]byte, 2048)), 2048)
		if err != nil {
			t.Fatal(err)
		}
		return volid
	}
	isos := func() []string {
		vols, err := client.StorageContent(ctx, "pve", "local", "iso", 0)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, v := range vols {
			out = append(out, v.VolID)
		}
		return out
	}
	now := time.Now().UTC().Truncate(time.Second)
	// 201: expired, its seed ISO attached.
	if _, err := api.Create(ctx, reapertest.Sandbox{VMID: 201, Created: now.Add(-2 * time.Hour), TTL: time.Hour}); err != nil {
		t.Fatal(err)
	}
	iso201 := upload(201)
	if err := api.SetConfig(ctx, 201, map[string]string{"ide2": iso201 + ",media=cdrom"}); err != nil {
		t.Fatal(err)
	}
	// 202: the provider died between the clone and the tag.
	if _, err := api.Create(ctx, reapertest.Sandbox{VMID: 202, Created: now, TTL: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if err := api.SetConfig(ctx, 202, map[string]string{"tags": ""}); err != nil {
		t.Fatal(err)
	}
	iso202 := upload(202)
	if err := api.SetConfig(ctx, 202, map[string]string{"ide2": iso202 + ",media=cdrom"}); err != nil {
		t.Fatal(err)
	}
	// 203's VM is long gone; its ISO stayed.
	iso203 := upload(203)
	// Someone else's VM.
	if err := api.Clone(ctx, 204, "not-ours"); err != nil {
		t.Fatal(err)
	}

	cfg := reapertest.Config{Dir: t.TempDir(), Endpoint: sim.Endpoint, Token: sim.Token, Interval: 300 * time.Millisecond}
	p := reapertest.Start(t, reaperBin, "serve", "--config", cfg.Write(t), "--log-format", "json")
	p.WaitFor(t, 0, 30*time.Second, "vm 201 destroyed", logLine("sandbox destroy", 201, "done"))
	p.WaitFor(t, 0, 30*time.Second, "seed ISO of 201 deleted", logLine("seed ISO deleted", 201, ""))
	p.WaitFor(t, 0, 30*time.Second, "orphan 202 found", logLine("orphan found", 202, ""))
	p.WaitFor(t, 0, 30*time.Second, "orphan 203 found", logLine("orphan found", 203, ""))
	if slices.Contains(isos(), iso201) {
		t.Errorf("seed ISO %s left after its sandbox was reaped", iso201)
	}

	var orphans []reaper.Orphan
	cli(t, reaperBin, cfg.Socket(), &orphans, "orphans")
	var got []string
	for _, o := range orphans {
		got = append(got, string(o.Kind)+"/"+strconv.Itoa(o.VMID))
	}
	if want := []string{"untagged/202", "iso/203"}; !slices.Equal(got, want) {
		var logs []string
		for _, l := range p.Lines() {
			if strings.Contains(l, "orphan") || strings.Contains(l, `"vmid":202`) {
				logs = append(logs, l)
			}
		}
		t.Fatalf("orphans = %v; want %v; log:\n%s", got, want, strings.Join(logs, "\n"))
	}
	if a := orphans[0].Action; !strings.Contains(a, "set prune: true") || !strings.Contains(a, "qm destroy 202 --purge") {
		t.Errorf("action for 202 = %q; want prune or the command", a)
	}
	out, err := exec.Command(reaperBin, "orphans", "--socket", cfg.Socket()).Output()
	if err != nil || !regexpMatch(`(?m)^KIND\s+VMID\s+NODE\s+VOLUME\s+SINCE`, string(out)) ||
		!regexpMatch(`(?m)^iso\s+203\s+pve\s+`+regexp.QuoteMeta(iso203), string(out)) {
		t.Errorf("orphans table = %v\n%s", err, out)
	}

	// Stop it; a reaper with prune on, on the same database, removes them.
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err, exited := p.Wait(30 * time.Second); !exited || err != nil {
		t.Fatalf("reaper exit = %v (exited %v)", err, exited)
	}
	cfg.Prune, cfg.OrphanGrace = true, time.Second
	p2 := reapertest.Start(t, reaperBin, "serve", "--config", cfg.Write(t), "--log-format", "json")
	p2.WaitFor(t, 0, 30*time.Second, "orphan 202 pruned", logLine("orphan pruned", 202, ""))
	p2.WaitFor(t, 0, 30*time.Second, "orphan 203 pruned", logLine("orphan pruned", 203, ""))
	p2.WaitFor(t, 0, 30*time.Second, "seed ISO of 202 deleted", logLine("seed ISO deleted", 202, ""))
	if ok, _ := api.Exists(ctx, 202); ok {
		t.Error("untagged VM 202 not pruned")
	}
	if ok, _ := api.Exists(ctx, 204); !ok {
		t.Error("someone else's VM 204 pruned")
	}
	if left := isos(); slices.Contains(left, iso202) || slices.Contains(left, iso203) {
		t.Errorf("ISOs after prune = %v; want neither %s nor %s", left, iso202, iso203)
	}
	var evs []reaper.Event
	cli(t, reaperBin, cfg.Socket(), &evs, "events", "--vmid", "203")
	if got, want := summarize(evs), []string{"orphan/track", "orphan/intent", "orphan/done"}; !slices.Equal(got, want) {
		t.Errorf("events of 203 = %v; want %v", got, want)
	}
}
