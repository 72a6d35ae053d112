package main

import (
	"context"
	"fmt"
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

	"github.com/agentlab/terraform-provider-agentlab/internal/cloudinit"
	"github.com/agentlab/terraform-provider-agentlab/reaper/reapertest"
)

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
