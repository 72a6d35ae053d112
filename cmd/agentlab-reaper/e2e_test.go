package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/agentlab/terraform-provider-agentlab/reaper"
	"github.com/agentlab/terraform-provider-agentlab/reaper/reapertest"
)

// The end-to-end tests run the real binaries: agentlab-pvesim and
// agentlab-reaper, built once into a temporary directory.

var binaries struct {
	once        sync.Once
	dir         string
	reaper, sim string
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "agentlab-reaper-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binaries.dir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// buildBinaries builds both binaries on first use.
func buildBinaries(t *testing.T) (reaperBin, simBin string) {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test: skipped with -short")
	}
	binaries.once.Do(func() {
		binaries.reaper = reapertest.GoBuild(t, binaries.dir, reapertest.Module+"/cmd/agentlab-reaper")
		binaries.sim = reapertest.GoBuild(t, binaries.dir, reapertest.Module+"/cmd/agentlab-pvesim")
	})
	if binaries.reaper == "" || binaries.sim == "" {
		t.Fatal("building the binaries failed in an earlier test")
	}
	return binaries.reaper, binaries.sim
}

// logLine matches a JSON log line of the reaper about one sandbox.
func logLine(msg string, vmid int, decision string) func(string) bool {
	return func(l string) bool {
		return strings.Contains(l, `"msg":"`+msg+`"`) && strings.Contains(l, fmt.Sprintf(`"vmid":%d,`, vmid)) &&
			(decision == "" || strings.Contains(l, `"decision":"`+decision+`"`))
	}
}

// ticksEndedBetween counts the reaper's debug "tick" lines (logged at the end
// of each tick) stamped after since that come before the first line
// matching until.
func ticksEndedBetween(t *testing.T, lines []string, since time.Time, until func(string) bool) int {
	t.Helper()
	n := 0
	for _, l := range lines {
		if until(l) {
			return n
		}
		var rec struct {
			Time time.Time `json:"time"`
			Msg  string    `json:"msg"`
		}
		if json.Unmarshal([]byte(l), &rec) != nil || rec.Msg != "tick" {
			continue
		}
		if rec.Time.After(since) {
			n++
		}
	}
	t.Fatalf("no line of the reaper's log matches; want a destroy intent")
	return n
}

// cli runs an operator subcommand against the socket and decodes its JSON.
func cli(t *testing.T, bin, socket string, out any, args ...string) {
	t.Helper()
	cmd := exec.Command(bin, append(args, "--socket", socket, "--json")...)
	b, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("agentlab-reaper %s: %v\n%s", strings.Join(args, " "), err, stderr)
	}
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatalf("agentlab-reaper %s: %v\n%s", strings.Join(args, " "), err, b)
	}
}

// listenAddr returns the address the reaper logged for a listener.
func listenAddr(t *testing.T, p *reapertest.Process, name string) string {
	t.Helper()
	i := p.WaitFor(t, 0, 30*time.Second, name+" listener", func(l string) bool {
		return strings.Contains(l, `"msg":"listening"`) && strings.Contains(l, `"listener":"`+name+`"`)
	})
	m := regexp.MustCompile(`"address":"([^"]+)"`).FindStringSubmatch(p.Lines()[i])
	if m == nil {
		t.Fatalf("no address in %s", p.Lines()[i])
	}
	return m[1]
}

func summarize(evs []reaper.Event) []string {
	var out []string
	for _, e := range evs {
		out = append(out, string(e.Kind)+"/"+string(e.Decision))
	}
	return out
}

func TestE2EServe(t *testing.T) {
	reaperBin, simBin := buildBinaries(t)
	sim := reapertest.StartSimulator(t, simBin, "--listen", "127.0.0.1:0", "--plain-http")
	api := &reapertest.PVE{Endpoint: sim.Endpoint, Token: sim.Token, HTTP: &http.Client{}}
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Second)
	past := now.Add(-2 * time.Hour)
	for _, s := range []reapertest.Sandbox{
		{VMID: 101, Created: past, TTL: time.Hour, Start: true},                           // expired
		{VMID: 102, Created: now, TTL: 3 * time.Second},                                   // expires soon
		{VMID: 103, Created: past, TTL: time.Hour, Tags: []string{"agentlab-keep"}},       // protected
		{VMID: 105, Created: now, TTL: time.Hour, MaxTTL: 4 * time.Hour, Token: "hb-105"}, // unexpired
		{VMID: 106, Created: past, TTL: time.Hour},                                        // malformed below
		{VMID: 107, Created: past, TTL: time.Hour, OnExpiry: "stop", Start: true},         // stop
		{VMID: 108, Created: past, TTL: time.Hour},                                        // mismatched tag below
	} {
		if _, err := api.Create(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	if err := api.Clone(ctx, 104, "untagged"); err != nil {
		t.Fatal(err)
	}
	if err := api.SetConfig(ctx, 106, map[string]string{"description": "<!-- agentlab:begin -->\nnot json\n<!-- agentlab:end -->"}); err != nil {
		t.Fatal(err)
	}
	if err := api.SetConfig(ctx, 108, map[string]string{"tags": "agentlab;agentlab-exp-4102444800"}); err != nil {
		t.Fatal(err)
	}

	const interval = 500 * time.Millisecond
	cfg := reapertest.Config{Dir: t.TempDir(), UserKeep: true, Endpoint: sim.Endpoint, Token: sim.Token, Interval: interval,
		GuestListen: "127.0.0.1:0", MetricsListen: "127.0.0.1:0"}
	p := reapertest.Start(t, reaperBin, "serve", "--config", cfg.Write(t), "--log-format", "json", "--log-level", "debug")

	p.WaitFor(t, 0, 30*time.Second, "vm 101 destroyed", logLine("sandbox destroy", 101, "done"))
	p.WaitFor(t, 0, 30*time.Second, "vm 102 destroyed", logLine("sandbox destroy", 102, "done"))
	p.WaitFor(t, 0, 30*time.Second, "vm 107 stopped", logLine("sandbox stop", 107, "done"))

	var evs []reaper.Event
	cli(t, reaperBin, cfg.Socket(), &evs, "events", "--vmid", "102")
	if last := evs[len(evs)-1]; last.Kind != reaper.KindDestroy || last.Decision != reaper.DecisionDone {
		t.Errorf("vm 102: last event %s/%s; want destroy/done", last.Kind, last.Decision)
	}
	// At the first tick after its expiry: a tick that ends after the expiry
	// without deciding the destroy listed the VMs before it, and only one
	// tick can. Counted in the reaper's own log, so a slow machine delaying
	// the ticks does not matter.
	if n := ticksEndedBetween(t, p.Lines(), now.Add(3*time.Second), logLine("sandbox destroy", 102, "intent")); n > 1 {
		t.Errorf("vm 102: %d ticks ended after its expiry before its destroy intent; want at most 1 (destroy at the first tick after expiry, interval %s)", n, interval)
	}

	for _, tt := range []struct {
		vmid   int
		exists bool
	}{{101, false}, {102, false}, {103, true}, {104, true}, {105, true}, {106, true}, {107, true}, {108, true}} {
		if ok, err := api.Exists(ctx, tt.vmid); err != nil || ok != tt.exists {
			t.Errorf("vm %d exists = %v, %v; want %v", tt.vmid, ok, err, tt.exists)
		}
	}

	var leases []reaper.Lease
	cli(t, reaperBin, cfg.Socket(), &leases, "leases", "--all")
	states := map[int]reaper.State{}
	for _, l := range leases {
		states[l.VMID] = l.State
	}
	want := map[int]reaper.State{101: reaper.StateDestroyed, 102: reaper.StateDestroyed, 103: reaper.StateProtected,
		105: reaper.StateActive, 106: reaper.StateInvalid, 107: reaper.StateStopped, 108: reaper.StateInvalid}
	for id, st := range want {
		if states[id] != st {
			t.Errorf("leases: vm %d is %q; want %q", id, states[id], st)
		}
	}
	if _, ok := states[104]; ok {
		t.Error("leases lists the untagged VM 104")
	}

	// Operator renewal through the CLI, then a heartbeat from the guest.
	var ren reaper.Renewal
	cli(t, reaperBin, cfg.Socket(), &ren, "renew", "105", "2h")
	m, err := api.Lease(ctx, 105)
	if err != nil || !m.ExpiresAt.Equal(ren.Lease.ExpiresAt) || m.ExpiresAt.Before(now.Add(2*time.Hour)) {
		t.Errorf("after renew: metadata expiry %v, %v; CLI said %v; want about now+2h", m.ExpiresAt, err, ren.Lease.ExpiresAt)
	}
	guest := listenAddr(t, p, "guest")
	req, _ := http.NewRequest(http.MethodPost, "http://"+guest+"/v1/heartbeat", nil)
	req.Header.Set("Authorization", "Bearer hb-105")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("heartbeat = %d %s; want 200", resp.StatusCode, body)
	}
	cfg105, _, _ := api.Config(ctx, 105)
	if tags, _ := cfg105["tags"].(string); !strings.Contains(tags, "agentlab-exp-") {
		t.Errorf("tags of 105 = %q; want an expiry tag", tags)
	}

	metricsAddr := listenAddr(t, p, "metrics")
	resp, err = http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, w := range []string{"agentlab_sandboxes_destroyed_total 2", "agentlab_sandboxes_stopped_total 1",
		`agentlab_sandboxes{state="invalid"} 2`, `agentlab_proxmox_requests_total{code="200",method="GET"}`} {
		if !strings.Contains(string(body), w) {
			t.Errorf("/metrics lacks %q", w)
		}
	}

	// SIGTERM: a clean exit.
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err, ok := p.Wait(30 * time.Second); !ok || err != nil {
		t.Errorf("after SIGTERM: exited %v, %v; want status 0", ok, err)
	}
	if !strings.Contains(p.Output(), `"msg":"stopped"`) {
		t.Errorf("no 'stopped' log line after SIGTERM:\n%s", p.Output())
	}
	if _, err := os.Stat(cfg.Socket()); !os.IsNotExist(err) {
		t.Errorf("socket left after exit (stat: %v)", err)
	}
}

func TestE2EKillDuringDestroy(t *testing.T) {
	reaperBin, simBin := buildBinaries(t)
	sim := reapertest.StartSimulator(t, simBin, "--listen", "127.0.0.1:0", "--plain-http", "--latency", "realistic")
	api := &reapertest.PVE{Endpoint: sim.Endpoint, Token: sim.Token, HTTP: &http.Client{}, PollEvery: 50 * time.Millisecond}
	ctx := context.Background()
	past := time.Now().Add(-2 * time.Hour)
	ids := []int{201, 202, 203, 204}
	var wg sync.WaitGroup
	errs := make(chan error, len(ids))
	for _, id := range ids {
		wg.Go(func() {
			if _, err := api.Create(ctx, reapertest.Sandbox{VMID: id, Created: past, TTL: time.Hour, Start: true}); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		t.Fatal(err)
	}

	cfg := reapertest.Config{Dir: t.TempDir(), Endpoint: sim.Endpoint, Token: sim.Token, Interval: 500 * time.Millisecond}
	conf := cfg.Write(t)
	p := reapertest.Start(t, reaperBin, "serve", "--config", conf, "--log-format", "json")
	// Kill -9 as soon as the first destroy is under way (stop 0.5 s and
	// destroy 1 s in this latency model: the kill lands mid-task).
	p.WaitFor(t, 0, time.Minute, "a destroy intent", func(l string) bool {
		return strings.Contains(l, `"msg":"sandbox destroy"`) && strings.Contains(l, `"decision":"intent"`)
	})
	p.Kill()
	killedAt := time.Now()
	killedOutput := p.Output()
	var intents []int
	for _, id := range ids {
		if strings.Contains(killedOutput, fmt.Sprintf(`"vmid":%d,`, id)) && logLine("sandbox destroy", id, "intent")(grepLine(killedOutput, id)) {
			intents = append(intents, id)
		}
	}
	if len(intents) == 0 {
		t.Fatal("no intent logged before the kill")
	}

	// Restart, and kill -9 again as soon as a DELETE task is under way.
	p2 := reapertest.Start(t, reaperBin, "serve", "--config", conf, "--log-format", "json", "--log-level", "debug")
	p2.WaitFor(t, 0, time.Minute, "a DELETE request", func(l string) bool {
		return strings.Contains(l, `"msg":"pve request"`) && strings.Contains(l, `"method":"DELETE"`)
	})
	p2.Kill()

	// Restart: the new process finishes every destroy.
	p3 := reapertest.Start(t, reaperBin, "serve", "--config", conf, "--log-format", "json")
	for _, id := range ids {
		p3.WaitFor(t, 0, 2*time.Minute, fmt.Sprintf("vm %d destroyed", id), logLine("sandbox destroy", id, "done"))
	}
	for _, id := range ids {
		if ok, err := api.Exists(ctx, id); err != nil || ok {
			t.Errorf("vm %d exists = %v, %v after the restart; want gone", id, ok, err)
		}
		var evs []reaper.Event
		cli(t, reaperBin, cfg.Socket(), &evs, "events", "--vmid", fmt.Sprint(id))
		s := summarize(evs)
		done, intent, failed := 0, 0, 0
		for _, e := range s {
			switch e {
			case "destroy/done":
				done++
			case "destroy/intent":
				intent++
			case "destroy/failed":
				failed++
			}
		}
		if done != 1 || intent < 1 || s[len(s)-1] != "destroy/done" {
			t.Errorf("events of %d = %v; want intents then exactly one destroy/done, last", id, s)
		}
		if failed > 0 {
			t.Logf("vm %d: %d failed attempts recorded (%v)", id, failed, s)
		}
	}
	// No half-destroyed VM: no volume of the sandboxes is left.
	var vols []struct {
		Volid string `json:"volid"`
	}
	if err := api.Do(ctx, "GET", "/nodes/pve/storage/local-lvm/content", nil, &vols); err != nil {
		t.Fatal(err)
	}
	for _, v := range vols {
		for _, id := range ids {
			if strings.Contains(v.Volid, fmt.Sprintf("vm-%d-", id)) {
				t.Errorf("volume %s of destroyed vm %d left behind", v.Volid, id)
			}
		}
	}
	// The events recorded before the kill are all still there.
	for _, id := range intents {
		var evs []reaper.Event
		cli(t, reaperBin, cfg.Socket(), &evs, "events", "--vmid", fmt.Sprint(id))
		// Expired at first sight, so the intent is the first event.
		if s := summarize(evs); len(s) < 2 || s[0] != "destroy/intent" || !evs[0].Time.Before(killedAt) {
			t.Errorf("events of %d = %v (first at %v); want the destroy/intent from before the kill (%v) first, ..., destroy/done",
				id, s, evs[0].Time, killedAt)
		}
	}
}

// grepLine returns the first line of out about vmid's destroy intent, or "".
func grepLine(out string, vmid int) string {
	for _, l := range strings.Split(out, "\n") {
		if logLine("sandbox destroy", vmid, "intent")(l) {
			return l
		}
	}
	return ""
}

// freePort returns a TCP port free on 127.0.0.1 right now.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func TestE2ESimulatorDownThenFaults(t *testing.T) {
	reaperBin, simBin := buildBinaries(t)
	ctx := context.Background()
	stateDir := t.TempDir()
	addr := freePort(t)
	const token = "root@pam!reaper=11111111-2222-3333-4444-555555555555"
	simArgs := []string{"--listen", addr, "--plain-http", "--token", token, "--state-dir", stateDir}

	// Make the sandboxes with a healthy simulator, then stop it.
	sim := reapertest.StartSimulator(t, simBin, simArgs...)
	api := &reapertest.PVE{Endpoint: sim.Endpoint, Token: token, HTTP: &http.Client{}}
	now := time.Now().UTC().Truncate(time.Second)
	past := now.Add(-2 * time.Hour)
	expired := []int{301, 302, 303, 304, 305}
	for _, id := range expired {
		if _, err := api.Create(ctx, reapertest.Sandbox{VMID: id, Created: past, TTL: time.Hour}); err != nil {
			t.Fatal(err)
		}
	}
	keep := []reapertest.Sandbox{
		{VMID: 311, Created: past, TTL: time.Hour, Tags: []string{"agentlab-keep"}},
		{VMID: 312, Created: now, TTL: 24 * time.Hour},
		{VMID: 313, Created: past, TTL: time.Hour},
	}
	for _, s := range keep {
		if _, err := api.Create(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	if err := api.SetConfig(ctx, 313, map[string]string{"description": "notes without metadata"}); err != nil {
		t.Fatal(err)
	}
	if err := api.Clone(ctx, 314, "plain"); err != nil {
		t.Fatal(err)
	}
	if err := sim.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if _, ok := sim.Wait(30 * time.Second); !ok {
		t.Fatal("simulator did not stop")
	}

	// The reaper starts with Proxmox down: it logs, retries, touches nothing.
	cfg := reapertest.Config{Dir: t.TempDir(), UserKeep: true, Endpoint: sim.Endpoint, Token: token, Interval: 300 * time.Millisecond}
	p := reapertest.Start(t, reaperBin, "serve", "--config", cfg.Write(t), "--log-format", "json", "--log-level", "debug")
	first := p.WaitFor(t, 0, 30*time.Second, "a failed tick", func(l string) bool { return strings.Contains(l, "reconcile tick failed") })
	p.WaitFor(t, first+1, 30*time.Second, "another failed tick", func(l string) bool { return strings.Contains(l, "reconcile tick failed") })

	// Proxmox comes back, answering 30% of the requests with a fault.
	sim = reapertest.StartSimulator(t, simBin, append(simArgs, "--faults", "0.3", "--seed", "7")...)
	for _, id := range expired {
		p.WaitFor(t, 0, 2*time.Minute, fmt.Sprintf("vm %d destroyed", id), logLine("sandbox destroy", id, "done"))
	}
	// Let five more successful ticks run through the faults.
	last := len(p.Lines())
	for range 5 {
		last = p.WaitFor(t, last, time.Minute, "a later tick", func(l string) bool { return strings.Contains(l, `"msg":"tick"`) }) + 1
	}
	sim.Kill()
	sim = reapertest.StartSimulator(t, simBin, simArgs...) // no faults, to check the outcome reliably
	api.Endpoint = sim.Endpoint
	for _, id := range expired {
		if ok, err := api.Exists(ctx, id); err != nil || ok {
			t.Errorf("expired vm %d exists = %v, %v; want destroyed", id, ok, err)
		}
	}
	for _, id := range []int{311, 312, 313, 314} {
		if ok, err := api.Exists(ctx, id); err != nil || !ok {
			t.Errorf("vm %d exists = %v, %v; want it untouched", id, ok, err)
		}
	}
	for _, id := range []int{311, 312, 313} {
		var evs []reaper.Event
		cli(t, reaperBin, cfg.Socket(), &evs, "events", "--vmid", fmt.Sprint(id))
		for _, e := range evs {
			if e.Kind == reaper.KindDestroy {
				t.Errorf("vm %d has a destroy event: %+v", id, e)
			}
		}
	}
	if !strings.Contains(p.Output(), "reconcile tick failed") {
		t.Error("no failed tick logged while Proxmox was down")
	}
}

func TestE2ESecondSignalForcesExit(t *testing.T) {
	reaperBin, simBin := buildBinaries(t)
	sim := reapertest.StartSimulator(t, simBin, "--listen", "127.0.0.1:0", "--plain-http", "--latency", "realistic")
	api := &reapertest.PVE{Endpoint: sim.Endpoint, Token: sim.Token, HTTP: &http.Client{}, PollEvery: 50 * time.Millisecond}
	ctx := context.Background()
	if _, err := api.Create(ctx, reapertest.Sandbox{VMID: 401, Created: time.Now().Add(-2 * time.Hour), TTL: time.Hour, Start: true}); err != nil {
		t.Fatal(err)
	}
	cfg := reapertest.Config{Dir: t.TempDir(), Endpoint: sim.Endpoint, Token: sim.Token, Interval: 500 * time.Millisecond}
	p := reapertest.Start(t, reaperBin, "serve", "--config", cfg.Write(t), "--log-format", "json")
	p.WaitFor(t, 0, time.Minute, "the destroy intent", logLine("sandbox destroy", 401, "intent"))
	// The first signal waits for the destroy under way (about 1.5 s here)...
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	p.WaitFor(t, 0, 10*time.Second, "the shutdown", func(l string) bool { return strings.Contains(l, `"msg":"shutting down`) })
	// ...the second one does not.
	if err := p.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	err, ok := p.Wait(10 * time.Second)
	if !ok {
		t.Fatal("no exit after the second signal")
	}
	if ee, isExit := err.(*exec.ExitError); !isExit || ee.ExitCode() != 1 {
		t.Errorf("exit after the second signal = %v; want status 1", err)
	}
	if !strings.Contains(p.Output(), "second signal") {
		t.Errorf("no 'second signal' log line:\n%s", p.Output())
	}
	if strings.Contains(p.Output(), `"msg":"stopped"`) {
		t.Error("the process waited for the destroy although a second signal came")
	}
}
