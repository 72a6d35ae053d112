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
	"syscall"
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
	if err := jsonUnmarshal(b, &out); err != nil {
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

func TestGuestExecHeartbeatAndLifecycle(t *testing.T) {
	sim, p, state := guestSim(t)
	srv, events := guestEvents(t)
	c := testSeedConfig(101)
	const token = "hb-token-0123456789abcdef"
	c.Heartbeat = &cloudinit.Heartbeat{URL: srv.URL, Token: token}
	// The real heartbeat script, run from runcmd; then the hostname the
	// guest sees, and a background process that must die with the VM.
	img := seedISO(t, c, fmt.Sprintf(`runcmd:
  - [%s]
  - curl -fsS --data-binary "$(hostname)" %s/hostname
  - curl -fsS --data-binary "$(git --version)" %s/git
  - curl -fsS --data-binary "$(grep CapBnd /proc/self/status)" %s/caps
  - [sh, -c, "nohup sleep 600 >/dev/null 2>&1 &"]
  - curl -fsS -d up %s/done
`, cloudinit.HeartbeatCommand, srv.URL, srv.URL, srv.URL, srv.URL))
	started := time.Now()
	mustOK(t, "start", bootSandbox(t, p, 101, img, nil))

	if got, want := waitEvent(t, events, "POST /v1/heartbeat", 60*time.Second), "POST /v1/heartbeat Bearer "+token; got != want {
		t.Errorf("heartbeat request = %q; want %q", got, want)
	}
	t.Logf("first heartbeat %v after the start request (clone, upload, config and start included)", time.Since(started).Round(time.Millisecond))
	if got := waitEvent(t, events, "POST /hostname", 30*time.Second); got != "POST /hostname  sbx-101" {
		t.Errorf("hostname request = %q; want the hostname sbx-101 from the seed", got)
	}
	if got := waitEvent(t, events, "POST /git", 30*time.Second); !strings.HasPrefix(got, "POST /git  git version ") {
		t.Errorf("git in the guest: %q; want its version", got)
	}
	caps := strings.Fields(waitEvent(t, events, "POST /caps", 30*time.Second))
	bnd, err := strconv.ParseUint(caps[len(caps)-1], 16, 64)
	if err != nil || bnd&(1<<21) != 0 || bnd&(1<<18) != 0 || bnd&(1<<0) == 0 {
		t.Errorf("guest bounding set %v (%v): want CAP_SYS_ADMIN and CAP_SYS_CHROOT dropped, CAP_CHOWN kept", caps, err)
	}
	waitEvent(t, events, "POST /done", 30*time.Second)
	console := filepath.Join(state, "guest-exec", "guests", "101", "console.log")
	waitConsole(t, console, "cloud-init finished", 1)

	root := filepath.Join(state, "guest-exec", "guests", "101", "root")
	if n := guestProcesses(t, root); n < 2 {
		t.Fatalf("%d processes in the guest; want its init and the background sleep", n)
	}
	t.Logf("guest init: %s", initRSS(t, root))
	env, err := os.ReadFile(filepath.Join(root, cloudinit.HeartbeatEnvFile))
	if err != nil || !strings.Contains(string(env), token) {
		t.Errorf("guest %s = %q, %v; want the token", cloudinit.HeartbeatEnvFile, env, err)
	}
	if fi, err := os.Stat(filepath.Join(root, cloudinit.HeartbeatEnvFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("guest %s mode: %v, %v; want 0600", cloudinit.HeartbeatEnvFile, fi, err)
	}

	// Stop ends every process of the guest, background ones included.
	mustOK(t, "stop", pveTask(t, p, http.MethodPost, "/nodes/pve/qemu/101/status/stop", url.Values{}))
	if n := guestProcesses(t, root); n != 0 {
		t.Errorf("%d guest processes left after stop; want 0", n)
	}

	// A new start boots the same disk; the seed's instance was set up, so
	// runcmd does not run again (cloud-init's once-per-instance).
	mustOK(t, "start again", pveTask(t, p, http.MethodPost, "/nodes/pve/qemu/101/status/start", url.Values{}))
	waitConsole(t, console, "was set up on an earlier boot", 1)
	select {
	case e := <-events:
		if strings.HasPrefix(e, "POST /done") {
			t.Errorf("runcmd ran again on the second boot of the same instance")
		}
	default:
	}
	if n := guestProcesses(t, root); n != 1 {
		t.Errorf("%d processes in the rebooted guest; want its init only", n)
	}
	if _, err := os.Stat(filepath.Join(root, cloudinit.HeartbeatEnvFile)); err != nil {
		t.Errorf("the first boot's files on the second boot: %v; want them kept, like a disk", err)
	}

	// The simulator's exit ends the guests too.
	if err := sim.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err, ok := sim.Wait(30 * time.Second); !ok || err != nil {
		t.Fatalf("simulator exit: %v (exited: %v)\n%s", err, ok, sim.Output())
	}
	if n := guestProcesses(t, root); n != 0 {
		t.Errorf("%d guest processes left after the simulator exited; want 0", n)
	}

	// Restarted on its state, the simulator boots the running VM's guest
	// again; killed, it takes the guest with it (parent-death signal).
	sim = reapertest.StartSimulator(t, simBinary, "--listen", "127.0.0.1:0", "--plain-http", "--auth-delay", "0",
		"--guest-exec", "--state-dir", state)
	waitConsole(t, console, "was set up on an earlier boot", 2)
	if n := guestProcesses(t, root); n != 1 {
		t.Fatalf("%d processes in the guest after a restart; want its init", n)
	}
	pids := guestPIDs(t, root)
	sim.Kill()
	waitExited(t, pids, 10*time.Second) // the kernel ends the namespace asynchronously
	if n := guestProcesses(t, root); n != 0 {
		t.Errorf("%d guest processes left after the simulator was killed; want 0", n)
	}
}

func TestGuestExecWorkspaceKeepsData(t *testing.T) {
	_, p, state := guestSim(t)
	srv, events := guestEvents(t)
	ctx := context.Background()
	var volid string
	if err := p.Do(ctx, http.MethodPost, "/nodes/pve/storage/local-lvm/content",
		url.Values{"vmid": {"990001"}, "filename": {"vm-990001-disk-0"}, "size": {"1G"}}, &volid); err != nil {
		t.Fatalf("allocate the workspace: %v", err)
	}
	disk := map[string]string{"scsi1": volid + ",size=1G"}

	writer := testSeedConfig(101)
	writer.Workspace = &cloudinit.Workspace{Disk: "scsi1"}
	img := seedISO(t, writer, fmt.Sprintf(`runcmd:
  - echo written-by-101 > %s/note
  - curl -fsS -d written %s/done
`, cloudinit.WorkspaceMountPoint, srv.URL))
	mustOK(t, "start 101", bootSandbox(t, p, 101, img, disk))
	waitEvent(t, events, "POST /done", 60*time.Second)
	mustOK(t, "stop 101", pveTask(t, p, http.MethodPost, "/nodes/pve/qemu/101/status/stop", url.Values{}))
	mustOK(t, "destroy 101", pveTask(t, p, http.MethodDelete, "/nodes/pve/qemu/101", nil))
	if _, err := os.Stat(filepath.Join(state, "guest-exec", "guests", "101")); !os.IsNotExist(err) {
		t.Errorf("guest directory of destroyed VM 101: %v; want it gone", err)
	}

	reader := testSeedConfig(102)
	reader.Workspace = &cloudinit.Workspace{Disk: "scsi1"}
	img = seedISO(t, reader, fmt.Sprintf(`runcmd:
  - curl -fsS --data-binary @%s/note %s/read
`, cloudinit.WorkspaceMountPoint, srv.URL))
	mustOK(t, "start 102", bootSandbox(t, p, 102, img, disk))
	if got := waitEvent(t, events, "POST /read", 60*time.Second); got != "POST /read  written-by-101" {
		t.Errorf("102 read %q from the workspace; want what 101 wrote", got)
	}
	mustOK(t, "stop 102", pveTask(t, p, http.MethodPost, "/nodes/pve/qemu/102/status/stop", url.Values{}))
	if err := p.SetConfig(ctx, 102, map[string]string{"delete": "scsi1"}); err != nil {
		t.Fatalf("detach: %v", err)
	}

	volDir := filepath.Join(state, "guest-exec", "volumes", "pve", url.PathEscape(volid))
	if _, err := os.Stat(filepath.Join(volDir, "note")); err != nil {
		t.Fatalf("workspace directory: %v", err)
	}
	mustOK(t, "delete the workspace", pveTask(t, p, http.MethodDelete, "/nodes/pve/storage/local-lvm/content/"+url.PathEscape(volid), nil))
	for _, p := range []string{volDir, volDir + ".fs"} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s after the volume was deleted: %v; want it gone", p, err)
		}
	}
}

// TestGuestExecGitClone clones a repository served on loopback over git's
// HTTP protocol inside the guest, as the job runner does.
func TestGuestExecGitClone(t *testing.T) {
	_, p, _ := guestSim(t)
	gitBin, err := exec.LookPath("git")
	if err != nil {
		t.Skip("git is not installed (apt-get install -y git)")
	}
	work, repos := t.TempDir(), t.TempDir()
	run := func(dir string, args ...string) {
		t.Helper()
		cmd := exec.Command(gitBin, args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com",
			"GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com", "GIT_CONFIG_GLOBAL=/dev/null")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	run(work, "init", "-q", "-b", "main", ".")
	if err := os.WriteFile(filepath.Join(work, "hello.txt"), []byte("hello from git\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	run(work, "add", "hello.txt")
	run(work, "commit", "-q", "-m", "first")
	run(repos, "clone", "-q", "--bare", work, "repo.git")
	run(filepath.Join(repos, "repo.git"), "update-server-info") // git's "dumb" HTTP protocol
	srv, events := guestEvents(t)
	files := httptest.NewServer(http.FileServer(http.Dir(repos)))
	t.Cleanup(files.Close)

	img := seedISO(t, testSeedConfig(101), fmt.Sprintf(`runcmd:
  - git clone -q --branch main %s/repo.git /var/lib/agentlab/job/src
  - curl -fsS --data-binary @/var/lib/agentlab/job/src/hello.txt %s/cloned
`, files.URL, srv.URL))
	mustOK(t, "start", bootSandbox(t, p, 101, img, nil))
	if got := waitEvent(t, events, "POST /cloned", 60*time.Second); got != "POST /cloned  hello from git" {
		t.Errorf("guest sent %q; want the cloned file", got)
	}
}

func TestGuestExecRefusesUnknownKeys(t *testing.T) {
	_, p, _ := guestSim(t)
	img := seedISO(t, testSeedConfig(101), "bootcmd:\n  - echo early\n")
	status := bootSandbox(t, p, 101, img, nil)
	if !strings.Contains(status, `user-data key "bootcmd" is not supported by agentlab-pvesim --guest-exec`) {
		t.Errorf("start task status = %q; want it to refuse bootcmd", status)
	}
	var st struct {
		Status string `json:"status"`
	}
	if err := p.Do(context.Background(), http.MethodGet, "/nodes/pve/qemu/101/status/current", nil, &st); err != nil || st.Status != "stopped" {
		t.Errorf("VM status after a refused seed = %q, %v; want stopped", st.Status, err)
	}
}

func TestGuestExecNeedsRoot(t *testing.T) {
	guestSim(t) // builds the binary; skips unless root
	cmd := exec.Command(simBinary, "--listen", "127.0.0.1:0", "--guest-exec")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "--guest-exec needs root") {
		t.Errorf("as nobody: %v\n%s\nwant a failure saying --guest-exec needs root", err, out)
	}
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
