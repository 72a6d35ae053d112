package main

import (
	"bufio"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// crashSim is the real agentlab-pvesim binary, run as a child process so
// that it can be killed with SIGKILL.
type crashSim struct {
	cmd             *exec.Cmd
	endpoint, token string
}

// buildBinary builds this command once per test into dir.
func buildBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("runs the real binary: skipped with -short")
	}
	bin := filepath.Join(t.TempDir(), "agentlab-pvesim")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func startBinary(t *testing.T, bin string, args ...string) *crashSim {
	t.Helper()
	args = append([]string{"--listen", "127.0.0.1:0", "--plain-http", "--auth-delay", "0s", "--token", "root@pam!ci=s3cret"}, args...)
	cmd := exec.Command(bin, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("first line: %v", err)
	}
	m := firstLineRE.FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("first line %q does not match %s", line, firstLineRE)
	}
	return &crashSim{cmd: cmd, endpoint: m[1], token: m[2]}
}

// kill9 kills the simulator with SIGKILL: no shutdown, no final write.
func (c *crashSim) kill9(t *testing.T) {
	t.Helper()
	if err := c.cmd.Process.Kill(); err != nil {
		t.Fatalf("kill -9: %v", err)
	}
	_ = c.cmd.Wait()
}

func (c *crashSim) call(t *testing.T, method, path string, form url.Values) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, c.endpoint+path, strings.NewReader(form.Encode()))
	req.Header.Set("Authorization", "PVEAPIToken="+c.token)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := (&http.Client{Timeout: 20 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Status + " " + string(b)
}

// TestStateSurvivesKill9 kills the simulator right after an answer: every
// change answered is there after a restart with the same state dir.
func TestStateSurvivesKill9(t *testing.T) {
	bin := buildBinary(t)
	dir := t.TempDir()
	sim := startBinary(t, bin, "--state-dir", dir)
	if code, body := sim.call(t, "POST", "/nodes/pve/qemu/9000/clone", url.Values{"newid": {"101"}, "name": {"kept"}}); code != 200 {
		t.Fatalf("clone = %s", body)
	}
	if code, body := sim.call(t, "PUT", "/nodes/pve/qemu/101/config", url.Values{"cores": {"3"}, "tags": {"answered"}}); code != 200 {
		t.Fatalf("config = %s", body)
	}
	sim.kill9(t) // between the answer and the next call

	sim = startBinary(t, bin, "--state-dir", dir)
	code, body := sim.call(t, "GET", "/nodes/pve/qemu/101/config", nil)
	if code != 200 || !strings.Contains(body, `"cores":3`) || !strings.Contains(body, `"tags":"answered"`) || !strings.Contains(body, `"name":"kept"`) {
		t.Fatalf("config after kill -9 = %s; want name kept, cores 3, tags answered", body)
	}
}

// TestInterruptedCloneStaysLocked kills the simulator while a clone copies
// its disks: the target stays locked after the restart, as PVE keeps the
// lock in /etc/pve, and a token can neither change, destroy nor unlock it.
func TestInterruptedCloneStaysLocked(t *testing.T) {
	bin := buildBinary(t)
	dir := t.TempDir()
	// realistic, scaled so a linked clone takes 15 s: ample time to kill it.
	sim := startBinary(t, bin, "--state-dir", dir, "--latency", "realistic", "--latency-scale", "10")
	code, body := sim.call(t, "POST", "/nodes/pve/qemu/9000/clone", url.Values{"newid": {"101"}, "name": {"half"}})
	if code != 200 {
		t.Fatalf("clone = %s", body)
	}
	// Wait for the placeholder (written by the clone's worker after the answer).
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, body = sim.call(t, "GET", "/nodes/pve/qemu/101/config", nil)
		if code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no placeholder: %s", body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	sim.kill9(t)

	sim = startBinary(t, bin, "--state-dir", dir)
	code, body = sim.call(t, "GET", "/nodes/pve/qemu/101/config", nil)
	if code != 200 || !strings.Contains(body, `"lock":"clone"`) {
		t.Fatalf("config after restart = %s; want the placeholder with lock: clone", body)
	}
	for _, tc := range []struct {
		method, path string
		form         url.Values
		want         string
	}{
		{"PUT", "/nodes/pve/qemu/101/config", url.Values{"cores": {"2"}}, "VM is locked (clone)"},
		{"PUT", "/nodes/pve/qemu/101/config", url.Values{"delete": {"lock"}}, "VM is locked (clone)"},
		{"DELETE", "/nodes/pve/qemu/101", nil, "VM is locked (clone)"},
		{"POST", "/nodes/pve/qemu/101/status/start", nil, "VM is locked (clone)"},
		{"PUT", "/nodes/pve/qemu/101/config", url.Values{"cores": {"2"}, "skiplock": {"1"}}, "Only root may use this option."},
	} {
		code, body := sim.call(t, tc.method, tc.path, tc.form)
		if code == 200 && strings.Contains(body, "UPID:") {
			// a task call answers a UPID; its task must fail
			upid := body[strings.Index(body, "UPID:"):]
			upid = upid[:strings.Index(upid, `"`)]
			_, body = sim.call(t, "GET", "/nodes/pve/tasks/"+url.PathEscape(upid)+"/status", nil)
			code = 500
		}
		if code == 200 || !strings.Contains(body, tc.want) {
			t.Errorf("%s %s %v = %s; want refused: %s", tc.method, tc.path, tc.form, body, tc.want)
		}
	}
}
