package main

import (
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/agentlab/terraform-provider-agentlab/reaper/reapertest"
)

// TestE2EOwnSecrets audits the reaper's own secrets, the Proxmox VE API
// token and the control API's bearer token: they come from 0600 files only
// (a file others can read is refused), and they appear neither on the
// daemon's command line or environment nor in its debug log, its events, its
// metrics or its database, while it reconciles and answers good and bad
// control requests.
func TestE2EOwnSecrets(t *testing.T) {
	reaperBin, simBin := buildBinaries(t)
	sim := reapertest.StartSimulator(t, simBin, "--listen", "127.0.0.1:0", "--plain-http")
	_, pveSecret, _ := strings.Cut(sim.Token, "=")
	const controlToken = "control-token-3b1f9c0e7d2a4e55"
	control := freePort(t)
	cfg := reapertest.Config{Dir: t.TempDir(), Endpoint: sim.Endpoint, Token: sim.Token, Interval: 200 * time.Millisecond,
		GuestListen: "127.0.0.1:0", MetricsListen: "127.0.0.1:0", ControlListen: control, ControlToken: controlToken}
	cfgFile := cfg.Write(t)

	// A token file others can read is refused, naming the fix.
	tokenFile := filepath.Join(cfg.Dir, "pve-token")
	if err := os.Chmod(tokenFile, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(reaperBin, "serve", "--config", cfgFile).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "chmod 600") {
		t.Errorf("serve with a 0644 token file: %v\n%s; want a refusal saying chmod 600", err, out)
	}
	if err := os.Chmod(tokenFile, 0o600); err != nil {
		t.Fatal(err)
	}

	t.Logf("refused serve said: %s", out)
	p := reapertest.Start(t, reaperBin, "serve", "--config", cfgFile, "--log-format", "json", "--log-level", "debug")
	metrics := listenAddr(t, p, "metrics")
	p.WaitFor(t, 0, 30*time.Second, "the control listener", func(l string) bool {
		return strings.Contains(l, `"msg":"listening"`) && strings.Contains(l, `"listener":"control"`)
	})
	for _, tok := range []string{controlToken, "wrong-" + controlToken} {
		req, _ := http.NewRequest(http.MethodGet, "http://"+control+"/v1/leases", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if want := tok == controlToken; (resp.StatusCode == http.StatusOK) != want {
			t.Errorf("control request with the %s token: %d", map[bool]string{true: "right", false: "wrong"}[want], resp.StatusCode)
		}
	}
	// Let a few reconcile passes log at debug level, after the control
	// requests: wait for three more ticks in the log.
	next := len(p.Lines())
	for range 3 {
		next = 1 + p.WaitFor(t, next, 30*time.Second, "a reconcile tick", func(l string) bool {
			return strings.Contains(l, `"msg":"tick"`)
		})
	}
	resp, err := http.Get("http://" + metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metricsBody, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	events, err := exec.Command(reaperBin, "events", "--socket", cfg.Socket(), "--json").Output()
	if err != nil {
		t.Fatal(err)
	}
	pid := strconv.Itoa(p.Cmd.Process.Pid)
	cmdline, _ := os.ReadFile("/proc/" + pid + "/cmdline")
	environ, _ := os.ReadFile("/proc/" + pid + "/environ")
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	p.Wait(30 * time.Second)
	db, _ := os.ReadFile(cfg.Database())
	wal, _ := os.ReadFile(cfg.Database() + "-wal")
	if len(db) == 0 {
		t.Fatalf("no database at %s", cfg.Database())
	}
	for where, text := range map[string]string{"command line": string(cmdline), "environment": string(environ),
		"debug log": p.Output(), "metrics": string(metricsBody), "events": string(events), "database": string(db) + string(wal)} {
		for name, secret := range map[string]string{"Proxmox VE token": pveSecret, "control token": controlToken} {
			if strings.Contains(text, secret) {
				t.Errorf("the reaper's %s holds the %s", where, name)
			}
		}
	}
}
