package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentlab/terraform-provider-agentlab/internal/egressrule"
	"github.com/agentlab/terraform-provider-agentlab/internal/lease"
	"github.com/agentlab/terraform-provider-agentlab/internal/pvesim/pvesimtest"
	"github.com/agentlab/terraform-provider-agentlab/reaper"
	"github.com/agentlab/terraform-provider-agentlab/reaper/api"
	"github.com/agentlab/terraform-provider-agentlab/reaper/reapertest"
)

// netnsNft returns an nft command (a script) that runs nft inside a network
// namespace the test creates, so the daemon's table never reaches the
// machine's own network. It skips where that is impossible.
func netnsNft(t *testing.T) (script, ns string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("egress daemon test skipped: it needs root to create a network namespace")
	}
	for _, c := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(c); err != nil {
			t.Skipf("egress daemon test skipped: %s not found (install iproute2 and nftables)", c)
		}
	}
	ns = fmt.Sprintf("agreaper%d", os.Getpid()%100000)
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Skipf("egress daemon test skipped: cannot create network namespace: %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	script = filepath.Join(t.TempDir(), "nft")
	if err := os.WriteFile(script, []byte("#!/bin/sh\nexec ip netns exec "+ns+" nft \"$@\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return script, ns
}

func TestMainEgress(t *testing.T) {
	nft, ns := netnsNft(t)
	ctx := context.Background()
	sim := pvesimtest.Start(t)
	pveAPI := &reapertest.PVE{Endpoint: sim.URL, Token: sim.Token, HTTP: sim.Client}
	now := time.Now().UTC().Truncate(time.Second)
	m, err := pveAPI.Create(ctx, reapertest.Sandbox{VMID: 101, Created: now, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	m.Egress, m.EgressAllow = egressrule.Allowlist, []string{"192.168.5.0/24:443/tcp"}
	desc, err := lease.Encode("", m)
	if err != nil {
		t.Fatal(err)
	}
	if err := pveAPI.SetConfig(ctx, 101, map[string]string{"description": desc, "net0": "virtio=BC:24:11:AA:00:01,bridge=vmbr1,firewall=1"}); err != nil {
		t.Fatal(err)
	}

	cfg := reapertest.Config{Dir: t.TempDir(), Endpoint: sim.URL, Token: sim.Token, Insecure: true, Interval: time.Hour,
		GuestListen: "127.0.0.1:0", MetricsListen: "127.0.0.1:0"}
	path := cfg.Write(t)
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "egress:\n  enabled: true\n  bridge: vmbr1\n  subnet: 10.77.0.0/16\n  resolver: 10.77.0.1\n  nft: %q\n", nft)
	f.Close()

	var logs bytes.Buffer
	d := NewMain(&logs)
	if err := d.ParseFlags(ctx, []string{"--config", path}); err != nil {
		t.Fatal(err)
	}
	if err := d.Run(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	if err := d.loop.Tick(ctx); err != nil {
		t.Fatal(err)
	}

	loaded, err := exec.Command("ip", "netns", "exec", ns, "nft", "list", "table", "inet", "agentlab").CombinedOutput()
	if err != nil || !strings.Contains(string(loaded), "bc:24:11:aa:00:01 : goto sandbox_101") ||
		!strings.Contains(string(loaded), "ip daddr 192.168.5.0/24 tcp dport 443 accept") {
		t.Fatalf("loaded table = %v\n%s\nwant sandbox 101's MAC and allow entry", err, loaded)
	}
	code, out, errOut := runCmd(t, "egress", "--print", "--socket", cfg.Socket())
	if code != 0 || !strings.Contains(out, "table inet agentlab {") || !strings.Contains(out, "chain sandbox_101 {") {
		t.Errorf("egress --print = %d %q %q; want the ruleset", code, out, errOut)
	}
	evs, err := api.NewUnixClient(cfg.Socket()).Events(ctx, reaper.EventFilter{VMID: 101})
	var found bool
	for _, e := range evs {
		found = found || e.Kind == reaper.KindEgress && strings.Contains(e.Reason, "policy allowlist, allow 192.168.5.0/24:443/tcp")
	}
	if err != nil || !found {
		t.Errorf("events of 101 = %+v, %v; want an egress event naming the policy", evs, err)
	}
	resp, err := http.Get("http://" + d.Addr("metrics").String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`agentlab_egress_applies_total{result="ok"}`, `agentlab_egress_dropped_packets_total{vmid="101"} 0`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	// A table of another owner survives the daemon's shutdown; its own goes.
	if out, err := exec.Command("ip", "netns", "exec", ns, "nft", "add", "table", "inet", "other").CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	if err := d.Close(); err != nil {
		t.Fatalf("Close = %v", err)
	}
	out2, _ := exec.Command("ip", "netns", "exec", ns, "nft", "list", "tables").CombinedOutput()
	if strings.Contains(string(out2), "inet agentlab") || !strings.Contains(string(out2), "inet other") {
		t.Errorf("tables after Close = %q; want inet other only", out2)
	}
}

// TestMainEgressNeedsNft: egress on without a working nft stops the daemon
// at start, saying what it needs.
func TestMainEgressNeedsNft(t *testing.T) {
	ctx := context.Background()
	sim := pvesimtest.Start(t)
	cfg := reapertest.Config{Dir: t.TempDir(), Endpoint: sim.URL, Token: sim.Token, Insecure: true, Interval: time.Hour}
	path := cfg.Write(t)
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "egress:\n  enabled: true\n  nft: %q\n", filepath.Join(cfg.Dir, "no-such-nft"))
	f.Close()
	d := NewMain(io.Discard)
	if err := d.ParseFlags(ctx, []string{"--config", path}); err != nil {
		t.Fatal(err)
	}
	err = d.Run(ctx)
	d.Close()
	if err == nil || !strings.Contains(err.Error(), "nftables and CAP_NET_ADMIN") {
		t.Errorf("Run without nft = %v; want an error naming nftables and CAP_NET_ADMIN", err)
	}
}
