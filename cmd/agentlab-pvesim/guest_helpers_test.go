package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agentlab/terraform-provider-agentlab/internal/cloudinit"
	"github.com/agentlab/terraform-provider-agentlab/reaper/reapertest"
)

// The --guest-exec tests run the real agentlab-pvesim binary as root: the
// guests run in their own mount and PID namespaces.

var simBinary string // built once by TestMain when a test needs it

func TestMain(m *testing.M) {
	code := m.Run()
	if simBinary != "" {
		os.RemoveAll(filepath.Dir(simBinary))
	}
	os.Exit(code)
}

// guestSim builds the binary (once) and starts it with --guest-exec and a
// state directory; it skips the test where guests cannot run.
func guestSim(t *testing.T) (*reapertest.Simulator, *reapertest.PVE, string) {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test: skipped with -short")
	}
	if os.Geteuid() != 0 {
		t.Skip("--guest-exec needs root (mount and PID namespaces); run the tests as root to cover it")
	}
	// The guests run the host's programs: the heartbeat script needs curl.
	if _, err := exec.LookPath("curl"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("curl is not installed but CI is set: CI must install it (apt-get install -y curl)")
		}
		t.Skip("curl is not installed (apt-get install -y curl); the guests' scripts need it")
	}
	if simBinary == "" {
		dir, err := os.MkdirTemp("", "agentlab-pvesim-e2e-")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		simBinary = reapertest.GoBuild(t, dir, reapertest.Module+"/cmd/agentlab-pvesim")
	}
	state := t.TempDir()
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		logs, _ := filepath.Glob(filepath.Join(state, "guest-exec", "guests", "*", "console.log"))
		for _, l := range logs {
			b, _ := os.ReadFile(l)
			t.Logf("%s:\n%s", l, b)
		}
	})
	sim := reapertest.StartSimulator(t, simBinary, "--listen", "127.0.0.1:0", "--plain-http", "--auth-delay", "0",
		"--guest-exec", "--state-dir", state)
	return sim, &reapertest.PVE{Endpoint: sim.Endpoint, Token: sim.Token, HTTP: &http.Client{Timeout: 30 * time.Second}}, state
}

// guestEvents is an HTTP server on loopback that the guests call; each
// request arrives on a channel as "METHOD PATH AUTH BODY".
func guestEvents(t *testing.T) (*httptest.Server, chan string) {
	t.Helper()
	ch := make(chan string, 64)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		ch <- strings.TrimSpace(fmt.Sprintf("%s %s %s %s", r.Method, r.URL.Path, r.Header.Get("Authorization"), body))
		fmt.Fprintln(w, `{"ok":true}`)
	}))
	t.Cleanup(srv.Close)
	return srv, ch
}

// waitEvent waits for a request whose text starts with prefix.
func waitEvent(t *testing.T, ch chan string, prefix string, timeout time.Duration) string {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case e := <-ch:
			if strings.HasPrefix(e, prefix) {
				return e
			}
		case <-deadline:
			t.Fatalf("no guest request %q within %v", prefix, timeout)
		}
	}
}

// pveTask sends a request answering a UPID and waits for the task's exit status.
func pveTask(t *testing.T, p *reapertest.PVE, method, path string, form url.Values) string {
	t.Helper()
	var upid string
	if err := p.Do(context.Background(), method, path, form, &upid); err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return waitUPID(t, p, upid)
}

func waitUPID(t *testing.T, p *reapertest.PVE, upid string) string {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		var st struct {
			Status     string `json:"status"`
			ExitStatus string `json:"exitstatus"`
		}
		if err := p.Do(context.Background(), http.MethodGet, "/nodes/pve/tasks/"+url.PathEscape(upid)+"/status", nil, &st); err != nil {
			t.Fatalf("task status: %v", err)
		}
		if st.Status == "stopped" {
			return st.ExitStatus
		}
		time.Sleep(20 * time.Millisecond) // polling the API, as every PVE client does
	}
	t.Fatalf("task %s did not end within 60s", upid)
	return ""
}

func mustOK(t *testing.T, what, status string) {
	t.Helper()
	if status != "OK" {
		t.Fatalf("%s: task exit status %q; want OK", what, status)
	}
}

// uploadISO uploads img as local:iso/NAME.
func uploadISO(t *testing.T, p *reapertest.PVE, name string, img []byte) {
	t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	_ = mw.WriteField("content", "iso")
	fw, _ := mw.CreateFormFile("filename", name)
	_, _ = fw.Write(img)
	_ = mw.Close()
	req, _ := http.NewRequest(http.MethodPost, p.Endpoint+"/nodes/pve/storage/local/upload", &body)
	req.Header.Set("Authorization", "PVEAPIToken="+p.Token)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	resp, err := p.HTTP.Do(req)
	if err != nil {
		t.Fatalf("upload: %v", err)
	}
	defer resp.Body.Close()
	var out struct {
		Data string `json:"data"`
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("upload: %s %s", resp.Status, b)
	}
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("upload answer %s: %v", b, err)
	}
	mustOK(t, "upload", waitUPID(t, p, out.Data))
}

// seedISO renders c with internal/cloudinit and appends extra cloud-config
// (runcmd for the test's commands, which the provider's Config has no field for).
func seedISO(t *testing.T, c cloudinit.Config, extra string) []byte {
	t.Helper()
	seed, err := c.Render()
	if err != nil {
		t.Fatalf("Render: %v", err)
	}
	seed.UserData = append(seed.UserData, extra...)
	img, err := seed.ISO()
	if err != nil {
		t.Fatalf("ISO: %v", err)
	}
	return img
}

// bootSandbox clones the template into vmid, attaches img as its seed
// CD-ROM and any extra disks, and starts it; it returns the start task's status.
func bootSandbox(t *testing.T, p *reapertest.PVE, vmid int, img []byte, disks map[string]string) string {
	t.Helper()
	ctx := context.Background()
	if err := p.Clone(ctx, vmid, fmt.Sprintf("sbx-%d", vmid)); err != nil {
		t.Fatalf("clone %d: %v", vmid, err)
	}
	iso := cloudinit.ISOFileName(vmid)
	uploadISO(t, p, iso, img)
	set := map[string]string{"ide2": "local:iso/" + iso + ",media=cdrom"}
	for k, v := range disks {
		set[k] = v
	}
	if err := p.SetConfig(ctx, vmid, set); err != nil {
		t.Fatalf("config %d: %v", vmid, err)
	}
	return pveTask(t, p, http.MethodPost, fmt.Sprintf("/nodes/pve/qemu/%d/status/start", vmid), url.Values{})
}

func testSeedConfig(vmid int) cloudinit.Config {
	return cloudinit.Config{
		InstanceID: fmt.Sprintf("agentlab-%d-e2e", vmid),
		Hostname:   fmt.Sprintf("sbx-%d", vmid),
		User:       cloudinit.User{Sudo: true},
		NIC:        cloudinit.NIC{MAC: "BC:24:11:00:00:01"},
	}
}

// guestPIDs lists the host's processes whose root directory is the guest's
// root: everything running inside the guest.
func guestPIDs(t *testing.T, root string) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if r, err := os.Readlink("/proc/" + e.Name() + "/root"); err == nil && r == root {
			pids = append(pids, pid)
		}
	}
	return pids
}

func guestProcesses(t *testing.T, root string) int { return len(guestPIDs(t, root)) }

// initRSS reports the resident memory of the guest's init: the guest
// process that is PID 1 of its namespace (last NSpid field 1).
func initRSS(t *testing.T, root string) string {
	t.Helper()
	for _, pid := range guestPIDs(t, root) {
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			continue
		}
		fields := map[string]string{}
		for _, l := range strings.Split(string(st), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok {
				fields[k] = strings.TrimSpace(v)
			}
		}
		if ns := strings.Fields(fields["NSpid"]); len(ns) > 1 && ns[len(ns)-1] == "1" {
			return fmt.Sprintf("host pid %d, VmRSS %s", pid, fields["VmRSS"])
		}
	}
	return "not found"
}

// waitConsole waits until a guest's console log holds want n times. The
// console is a file, so it is polled.
func waitConsole(t *testing.T, console, want string, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, _ := os.ReadFile(console)
		if strings.Count(string(b), want) >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s does not say %q %d times within 30s:\n%s", console, want, n, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitExited waits until every process in pids has exited, watching each
// through a pidfd (readable once the process is gone).
func waitExited(t *testing.T, pids []int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for _, pid := range pids {
		fd, err := unix.PidfdOpen(pid, 0)
		if err != nil {
			continue // already gone
		}
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, int(time.Until(deadline).Milliseconds()))
		unix.Close(fd)
		if err != nil || n == 0 {
			t.Fatalf("guest process %d still runs %v after its simulator was killed (%v)", pid, timeout, err)
		}
	}
}
