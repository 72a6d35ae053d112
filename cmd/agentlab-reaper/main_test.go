package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/agentlab/terraform-provider-agentlab/internal/pvesim/pvesimtest"
	"github.com/agentlab/terraform-provider-agentlab/reaper"
	"github.com/agentlab/terraform-provider-agentlab/reaper/api"
	"github.com/agentlab/terraform-provider-agentlab/reaper/reapertest"
	"github.com/agentlab/terraform-provider-agentlab/reaper/sqlite"
)

func regexpMatch(re, s string) bool { return regexp.MustCompile(re).MatchString(s) }

func runCmd(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestCommandLine(t *testing.T) {
	dir := t.TempDir()
	good := reapertest.Config{Dir: dir, Endpoint: "https://127.0.0.1:8006", Token: "root@pam!reaper=secret"}.Write(t)
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	unknown := write("unknown.yaml", "intervall: 30s\n", 0o644)
	openToken := write("open-token", "root@pam!reaper=secret\n", 0o644)
	badPort := write("badport.yaml", "metrics:\n  listen: 127.0.0.1:99999\nproxmox:\n  api_token_file: "+filepath.Join(dir, "pve-token")+"\n", 0o644)
	badPerm := write("badperm.yaml", "proxmox:\n  api_token_file: "+openToken+"\n", 0o644)

	tests := []struct {
		name       string
		args       []string
		code       int
		wantOut    string
		wantErrOut string
	}{
		{"no command", nil, 2, "", "Usage:"},
		{"unknown command", []string{"reap"}, 2, "", `unknown command "reap"`},
		{"help", []string{"help"}, 0, "Commands:", ""},
		{"check valid", []string{"serve", "--config", good, "--check"}, 0, "configuration is valid", ""},
		{"unknown key", []string{"serve", "--config", unknown}, 1, "", "line 1: intervall: unknown key; did you mean interval?"},
		{"token readable by others", []string{"serve", "--config", badPerm, "--check"}, 1, "", "chmod 600 " + openToken},
		{"missing config", []string{"serve", "--config", filepath.Join(dir, "nope.yaml")}, 1, "", "does not exist"},
		{"serve arguments", []string{"serve", "--config", good, "extra"}, 2, "", "serve takes no arguments"},
		{"bad log level", []string{"serve", "--config", good, "--log-level", "loud"}, 1, "", "--log-level"},
		{"artifacts without daemon", []string{"artifacts", "job-1", "--config", good}, 1, "", "is agentlab-reaper running"},
		{"artifacts usage", []string{"artifacts"}, 2, "", "Usage: agentlab-reaper artifacts JOB"},
		{"download usage", []string{"artifacts", "download", "job-1"}, 2, "", "Usage: agentlab-reaper artifacts download JOB DIR"},
		{"logs usage", []string{"logs"}, 2, "", "Usage: agentlab-reaper logs JOB"},
		{"ssh bad vmid", []string{"ssh", "abc", "--config", good}, 1, "", `VMID "abc"`},
		{"egress usage", []string{"egress"}, 2, "", "Usage: agentlab-reaper egress --print"},
		{"egress without daemon", []string{"egress", "--print", "--config", good}, 1, "", "is agentlab-reaper running"},
		{"renew usage", []string{"renew", "101"}, 2, "", "Usage: agentlab-reaper renew VMID DURATION"},
		{"renew bad duration", []string{"renew", "101", "soon", "--config", good}, 1, "", `DURATION "soon"`},
		{"renew negative", []string{"renew", "100", "-5m", "--config", good}, 1, "", "DURATION -5m is not positive"},
		{"renew negative before flag", []string{"renew", "--config", good, "100", "-5m"}, 1, "", "DURATION -5m is not positive"},
		{"renew too short", []string{"renew", "101", "1s", "--config", good}, 1, "", "DURATION 1s is shorter than 1m0s: the sandbox would be reaped at the next tick; add --force"},
		{"renew short forced", []string{"renew", "101", "1s", "--force", "--config", good}, 1, "", "is agentlab-reaper running"},
		{"check bad port", []string{"serve", "--config", badPort, "--check"}, 1, "", `line 2: metrics.listen: "127.0.0.1:99999": port "99999" is not a number from 0 to 65535`},
		{"serve bad port", []string{"serve", "--config", badPort}, 1, "", `line 2: metrics.listen: "127.0.0.1:99999": port "99999"`},
		{"leases without daemon", []string{"leases", "--config", good}, 1, "", "is agentlab-reaper running"},
		{"version", []string{"version", "--config", good}, 0, "agentlab-reaper dev", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runCmd(t, tt.args...)
			if code != tt.code || !strings.Contains(out, tt.wantOut) || !strings.Contains(errOut, tt.wantErrOut) {
				t.Errorf("run(%q) = %d, stdout %q, stderr %q; want %d, %q, %q", tt.args, code, out, errOut, tt.code, tt.wantOut, tt.wantErrOut)
			}
		})
	}
}

// TestMain runs the whole daemon in-process against the simulator, the way
// benbjohnson/wtf's main_test does: listeners on :0, a temporary database.
func TestMainInProcess(t *testing.T) {
	ctx := context.Background()
	sim := pvesimtest.Start(t)
	pveAPI := &reapertest.PVE{Endpoint: sim.URL, Token: sim.Token, HTTP: sim.Client}
	now := time.Now().UTC().Truncate(time.Second)
	for _, s := range []reapertest.Sandbox{
		{VMID: 101, Created: now.Add(-2 * time.Hour), TTL: time.Hour},
		{VMID: 102, Created: now.Add(-time.Minute), TTL: time.Hour, MaxTTL: 3 * time.Hour, Token: "heartbeat-102"},
		{VMID: 103, Created: now.Add(-2 * time.Hour), TTL: time.Hour, Tags: []string{"agentlab-keep"}},
		{VMID: 104, Created: now, TTL: time.Hour, Owner: "mallory\x1b[2J\x1b]0;pwned\x07\nfake row"},
		{VMID: 105, Created: now, TTL: 30 * 24 * time.Hour}, // past policy.max_lease (168h)
	} {
		if _, err := pveAPI.Create(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	cfg := reapertest.Config{Dir: t.TempDir(), Endpoint: sim.URL, Token: sim.Token, Insecure: true, Interval: time.Hour,
		GuestListen: "127.0.0.1:0", MetricsListen: "127.0.0.1:0", ControlListen: "127.0.0.1:0", ControlToken: "ctl-secret"}
	m, _ := startMain(ctx, t, cfg)

	// A second reaper on the same database refuses to start.
	second := NewMain(io.Discard)
	if err := second.ParseFlags(ctx, []string{"--config", cfg.Write(t)}); err != nil {
		t.Fatal(err)
	}
	err := second.Run(ctx)
	second.Close()
	if !errors.Is(err, sqlite.ErrLocked) || !strings.Contains(err.Error(), "stop that reaper first") {
		t.Fatalf("second reaper on the same database: Run = %v; want sqlite.ErrLocked naming the fix", err)
	}

	// Run ticked at once; this tick waits for it and makes sure it is done.
	if err := m.loop.Tick(ctx); err != nil {
		t.Fatal(err)
	}

	if ok, _ := pveAPI.Exists(ctx, 101); ok {
		t.Error("expired VM 101 not destroyed")
	}
	// A Terraform user's agentlab-keep tag is not honoured (policy.user_keep
	// is false by default); the operator keeps 104 with agentlab-reaper keep.
	if ok, _ := pveAPI.Exists(ctx, 103); ok {
		t.Error("VM 103, kept only by a user's tag, not destroyed")
	}
	if code, out, errOut := runCmd(t, "keep", "104", "--socket", cfg.Socket()); code != 0 || !strings.Contains(out, "vm 104: kept") {
		t.Errorf("keep 104 = %d %q %q; want kept", code, out, errOut)
	}

	// Control API over the socket and over TCP with the token.
	unix := api.NewUnixClient(cfg.Socket())
	ls, err := unix.Leases(ctx, true)
	if err != nil || len(ls) != 5 {
		t.Fatalf("Leases = %d, %v; want 5", len(ls), err)
	}
	tcp := &api.Client{BaseURL: "http://" + m.Addr("control").String(), Token: "ctl-secret"}
	ren, err := tcp.Renew(ctx, 102, 2*time.Hour)
	if err != nil || !ren.Lease.ExpiresAt.After(now.Add(time.Hour)) {
		t.Errorf("Renew over TCP = %+v, %v; want a later expiry", ren, err)
	}
	if _, err := (&api.Client{BaseURL: tcp.BaseURL}).Leases(ctx, false); err == nil {
		t.Error("TCP control API answered without a token")
	}

	// The operator commands over the socket.
	code, out, errOut := runCmd(t, "leases", "--socket", cfg.Socket())
	if code != 0 || !regexpMatch(`(?m)^VMID\s+NODE\s+NAME\s+STATE\s+EXPIRES`, out) ||
		!regexpMatch(`(?m)^104\s+pve\s+sbx-104\s+protected\s+.*tagged agentlab-keep \(agentlab-reaper keep\)$`, out) ||
		strings.Contains(out, "\n101 ") || strings.Contains(out, "\n103 ") {
		t.Errorf("leases = %d %q %q; want a table with 102 and 104 (not the destroyed 101 and 103)", code, out, errOut)
	}
	if !regexpMatch(`(?m)^105\s+pve\s+sbx-105\s+active\s+\S+ \(in (?:6d23h|7d0h)\) capped by policy\s+.*capped by policy.max_lease 168h0m0s`, out) {
		t.Errorf("leases does not show 105 capped by policy:\n%s", out)
	}
	if strings.ContainsAny(out, "\x1b\x07") || !strings.Contains(out, `mallory\x1b[2J\x1b]0;pwned\a\nfake row`) || strings.Contains(out, "\nfake row") {
		t.Errorf("leases printed the owner of 104 raw; want it escaped:\n%s", out)
	}
	code, out, _ = runCmd(t, "events", "--vmid", "101", "--socket", cfg.Socket())
	if code != 0 || !regexpMatch(`(?m)^\S+\s+101\s+destroy\s+intent\s+reaper\s+lease expired at`, out) ||
		!regexpMatch(`(?m)^\S+\s+101\s+destroy\s+done\s+reaper\s+destroyed`, out) {
		t.Errorf("events --vmid 101 = %d %q; want the intent and the outcome", code, out)
	}
	code, out, _ = runCmd(t, "version", "--socket", cfg.Socket())
	if code != 0 || !strings.Contains(out, "daemon: dev, interval 1h0m0s") {
		t.Errorf("version = %d %q; want the daemon's version too", code, out)
	}

	// A heartbeat through the guest listener.
	req, _ := http.NewRequest(http.MethodPost, "http://"+m.Addr("guest").String()+"/v1/heartbeat", nil)
	req.Header.Set("Authorization", "Bearer heartbeat-102")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"vmid":102`) {
		t.Errorf("heartbeat = %d %s; want 200 for vm 102", resp.StatusCode, body)
	}
	evs, err := unix.Events(ctx, reaper.EventFilter{VMID: 102})
	if err != nil || len(evs) == 0 || evs[len(evs)-1].Kind != reaper.KindHeartbeat {
		t.Errorf("events of 102 = %+v, %v; want a heartbeat last", evs, err)
	}
	sum := sha256.Sum256([]byte("heartbeat-102"))
	if l, _ := m.db.LeaseByToken(ctx, hex.EncodeToString(sum[:])); l.VMID != 102 {
		t.Errorf("lease by token = %d; want 102", l.VMID)
	}

	// Metrics.
	resp, err = http.Get("http://" + m.Addr("metrics").String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		"agentlab_sandboxes_destroyed_total 2",
		`agentlab_orphans{kind="iso"} 0`,
		`agentlab_sandboxes{state="protected"} 1`,
		`agentlab_proxmox_requests_total{code="200",method="GET"}`,
		`agentlab_heartbeats_total{result="ok"} 1`,
		`agentlab_build_info{goversion=`,
		"agentlab_last_successful_tick_timestamp_seconds 1.",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if !regexpMatch(`(?m)^agentlab_database_bytes [1-9]`, string(body)) {
		t.Error("/metrics lacks a measured agentlab_database_bytes")
	}

	code, out, errOut = runCmd(t, "egress", "--print", "--socket", cfg.Socket())
	if code != 1 || out != "" || !strings.Contains(errOut, "the egress filter is off: set egress.enabled: true") {
		t.Errorf("egress --print with the filter off = %d %q %q; want status 1 saying how to turn it on", code, out, errOut)
	}

	code, out, _ = runCmd(t, "orphans", "--socket", cfg.Socket())
	if code != 0 || out != "no orphans\n" {
		t.Errorf("orphans = %d %q; want no orphans", code, out)
	}

	code, out, errOut = runCmd(t, "renew", "102", "3h", "--socket", cfg.Socket())
	if code != 1 || !strings.Contains(out, "vm 102: lease expires at") || !strings.Contains(errOut, "capped by max_ttl") {
		t.Errorf("renew past max_ttl = %d %q %q; want status 1, the new expiry and 'capped by max_ttl'", code, out, errOut)
	}
	if err := m.Close(); err != nil {
		t.Errorf("Close = %v", err)
	}
	if _, err := os.Stat(cfg.Socket()); !os.IsNotExist(err) {
		t.Errorf("control socket left behind after Close (stat: %v)", err)
	}
	// Close released the database: a new reaper may take it.
	if l, err := sqlite.AcquireLock(cfg.Database()); err != nil {
		t.Errorf("lock after Close = %v; want it released", err)
	} else {
		l.Release()
	}
}

// startMain runs the daemon in-process with cfg, as agentlab-reaper serve
// would, and closes it when the test ends. logs receives what it prints.
func startMain(ctx context.Context, t *testing.T, cfg reapertest.Config) (*Main, *bytes.Buffer) {
	t.Helper()
	logs := &bytes.Buffer{}
	m := NewMain(logs)
	if err := m.ParseFlags(ctx, []string{"--config", cfg.Write(t)}); err != nil {
		t.Fatal(err)
	}
	if err := m.Run(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m, logs
}
