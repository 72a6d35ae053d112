// Package e2e runs AgentLab's real binaries together: the simulator with
// --guest-exec (so a job's cloud-init really starts the job runner), the
// reaper and terraform with the freshly built provider.
package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/agentlab/terraform-provider-agentlab/internal/pve"
	"github.com/agentlab/terraform-provider-agentlab/internal/tfcli"
	"github.com/agentlab/terraform-provider-agentlab/internal/volume"
	"github.com/agentlab/terraform-provider-agentlab/reaper/reapertest"
)

// built holds the binaries, built once for all tests.
var built struct {
	once                  sync.Once
	dir                   string
	provider, reaper, sim string
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "agentlab-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	built.dir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// world is one end-to-end setup: binaries, a git server, the simulator, the
// reaper and a terraform working directory.
type world struct {
	t         *testing.T
	dir       string
	tf        string
	env       []string
	repoURL   string
	guestURL  string
	socket    string
	provider  string
	reaperBin string
	// endpoint and token reach the simulator.
	endpoint, token string
	// providerAddr is the address the CLI config overrides with the built
	// provider: the one the CLI of TF_ACC_TERRAFORM_PATH resolves
	// agentlab/agentlab to. A configuration another CLI runs names it.
	providerAddr string
	// sim and reaper are the running processes (their output is their log).
	sim    *reapertest.Simulator
	reaper *reapertest.Process
}

// newWorld builds the binaries and starts everything, the simulator with
// simArgs added; it skips where --guest-exec cannot run (not root) or
// terraform is missing.
func newWorld(t *testing.T, simArgs ...string) *world {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test: skipped with -short")
	}
	if os.Geteuid() != 0 {
		t.Skip("end-to-end job test: agentlab-pvesim --guest-exec needs root (mount and PID namespaces)")
	}
	tf := os.Getenv("TF_ACC_TERRAFORM_PATH")
	for _, name := range []string{"terraform", "tofu"} {
		if tf == "" {
			tf, _ = exec.LookPath(name)
		}
	}
	if tf == "" {
		t.Skip("end-to-end job test: neither terraform nor tofu is on PATH")
	}
	cli, err := tfcli.Detect(context.Background(), tf)
	if err != nil {
		t.Fatal(err)
	}
	for _, tool := range []string{"git", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("end-to-end job test: the guests need %s on the host", tool)
		}
	}
	w := &world{t: t, dir: t.TempDir(), tf: tf}
	built.once.Do(func() {
		built.provider = reapertest.GoBuild(t, built.dir, reapertest.Module)
		built.reaper = reapertest.GoBuild(t, built.dir, reapertest.Module+"/cmd/agentlab-reaper")
		built.sim = reapertest.GoBuild(t, built.dir, reapertest.Module+"/cmd/agentlab-pvesim")
	})
	if built.provider == "" || built.reaper == "" || built.sim == "" {
		t.Fatal("building the binaries failed in an earlier test")
	}
	bin := built.dir
	w.provider, w.reaperBin = built.provider, built.reaper
	simBin := built.sim

	w.repoURL = w.serveRepo()

	sim := reapertest.StartSimulator(t, simBin, append([]string{"--listen", "127.0.0.1:0", "--plain-http", "--guest-exec",
		"--state-dir", filepath.Join(w.dir, "pvesim"), "--template", "9000:debian-12-cloud"}, simArgs...)...)
	w.sim = sim

	guest := freeAddr(t)
	w.guestURL = "http://" + guest
	rdir := filepath.Join(w.dir, "reaper")
	if err := os.MkdirAll(rdir, 0o700); err != nil {
		t.Fatal(err)
	}
	cfg := reapertest.Config{Dir: rdir, Endpoint: sim.Endpoint, Token: sim.Token, GuestListen: guest}
	w.socket = cfg.Socket()
	w.endpoint, w.token = sim.Endpoint, sim.Token
	cfgFile := cfg.Write(t)
	// A runner silent for longer than its 30 s heartbeat period and a bit is
	// lost; the default grace (90 s) would make the lost-runner test slow.
	f, err := os.OpenFile(cfgFile, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("jobs:\n  heartbeat_grace: 40s\n"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	rp := reapertest.Start(t, w.reaperBin, "serve", "--config", cfgFile)
	w.reaper = rp
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(w.socket); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the reaper did not create its socket; its output:\n%s", rp.Output())
		}
		time.Sleep(50 * time.Millisecond) // polling for a file another process creates
	}

	rc := filepath.Join(w.dir, "cli.tfrc")
	// The override must name the address this CLI resolves agentlab/agentlab to.
	if err := os.WriteFile(rc, []byte(fmt.Sprintf(`provider_installation {
  dev_overrides {
    %q = %q
  }
  direct {}
}
`, cli.Kind.ProviderAddress(), bin)), 0o644); err != nil {
		t.Fatal(err)
	}
	w.providerAddr = cli.Kind.ProviderAddress()
	w.env = append(os.Environ(), "TF_CLI_CONFIG_FILE="+rc, "TF_IN_AUTOMATION=1",
		"PROXMOX_VE_ENDPOINT="+sim.Endpoint, "PROXMOX_VE_API_TOKEN="+sim.Token, "PROXMOX_VE_INSECURE=true",
		"AGENTLAB_REAPER_URL=unix://"+w.socket, "AGENTLAB_REAPER_GUEST_URL="+w.guestURL)
	return w
}

// serveRepo makes a git repository with a branch main and a tag v1, and
// serves it read-only over HTTP on loopback (git's dumb HTTP protocol).
func (w *world) serveRepo() string {
	t := w.t
	src := filepath.Join(w.dir, "src")
	files := map[string]string{
		"data.txt": "payload from the repository\n",
		"build.sh": "#!/bin/sh\nset -e\nmkdir -p out\ncp data.txt out/copy.txt\necho \"built $GREETING\" > out/greeting.txt\n",
	}
	for name, content := range files {
		if err := os.MkdirAll(src, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(src, name), []byte(content), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	git := func(dir string, args ...string) {
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=e2e", "GIT_AUTHOR_EMAIL=e2e@example.com",
			"GIT_COMMITTER_NAME=e2e", "GIT_COMMITTER_EMAIL=e2e@example.com")
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, b)
		}
	}
	git(src, "init", "-q", "-b", "main")
	git(src, "add", ".")
	git(src, "commit", "-q", "-m", "e2e")
	git(src, "tag", "v1")
	served := filepath.Join(w.dir, "git")
	git(w.dir, "clone", "-q", "--bare", src, filepath.Join(served, "repo.git"))
	git(filepath.Join(served, "repo.git"), "update-server-info")
	srv := httptest.NewServer(http.FileServer(http.Dir(served)))
	t.Cleanup(srv.Close)
	return srv.URL + "/repo.git"
}

// freeAddr returns a free loopback address.
func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// terraform runs terraform in dir and returns its stdout.
func (w *world) terraform(dir string, args ...string) (string, error) {
	cmd := exec.Command(w.tf, args...)
	cmd.Dir = dir
	cmd.Env = w.env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("terraform %s: %w\n%s\n%s", strings.Join(args, " "), err, out.String(), errb.String())
	}
	return out.String(), nil
}

// apply writes main.tf into a fresh directory and applies it.
func (w *world) apply(name, main string) string {
	w.t.Helper()
	dir := filepath.Join(w.dir, "tf-"+name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		w.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "main.tf"), []byte(main), 0o644); err != nil {
		w.t.Fatal(err)
	}
	if _, err := w.terraform(dir, "apply", "-auto-approve", "-input=false", "-no-color"); err != nil {
		w.t.Fatal(err)
	}
	w.t.Cleanup(func() {
		if _, err := w.terraform(dir, "destroy", "-auto-approve", "-input=false", "-no-color"); err != nil {
			w.t.Errorf("destroy: %v", err)
		}
	})
	return dir
}

// outputs reads terraform's outputs in dir.
func (w *world) outputs(dir string) map[string]any {
	w.t.Helper()
	out, err := w.terraform(dir, "output", "-json")
	if err != nil {
		w.t.Fatal(err)
	}
	var raw map[string]struct {
		Value any `json:"value"`
	}
	if err := json.Unmarshal([]byte(out), &raw); err != nil {
		w.t.Fatalf("terraform output: %v\n%s", err, out)
	}
	vals := map[string]any{}
	for k, v := range raw {
		vals[k] = v.Value
	}
	return vals
}

// emptyPlan fails the test unless a plan in dir has nothing to do.
func (w *world) emptyPlan(dir string) {
	w.t.Helper()
	if out, err := w.terraform(dir, "plan", "-detailed-exitcode", "-input=false", "-no-color"); err != nil {
		w.t.Fatalf("second plan is not empty: %v\n%s", err, out)
	}
}

func sha(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// TestE2EJobs runs jobs through the real runner: one that succeeds with
// artifacts (checked by sha256 after download), one that fails with its
// exit code, and one applied with wait = false whose outcome a refresh reads.
func TestE2EJobs(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	downloads := filepath.Join(w.dir, "downloads")
	dir := w.apply("jobs", fmt.Sprintf(`
terraform {
  required_providers {
    agentlab = { source = "agentlab/agentlab" }
  }
}

provider "agentlab" {}

resource "agentlab_job" "ok" {
  repo          = %[1]q
  ref           = "v1"
  task          = "./build.sh"
  template_vmid = 9000
  timeout       = "5m"
  artifacts     = ["out/**"]
  env           = { GREETING = "hello" }
}

resource "agentlab_job" "fails" {
  repo          = %[1]q
  ref           = "main"
  task          = "echo about to fail; exit 7"
  template_vmid = 9000
  timeout       = "5m"
}

resource "agentlab_job" "kept" {
  repo          = %[1]q
  ref           = "main"
  task          = "echo kept"
  template_vmid = 9000
  keep_sandbox  = true
}

resource "agentlab_job" "later" {
  repo          = %[1]q
  ref           = "main"
  task          = "sleep 2; echo done later"
  template_vmid = 9000
  wait          = false
}

data "agentlab_job_artifacts" "ok" {
  job_id       = agentlab_job.ok.id
  download_dir = %[2]q
}

output "ok_status"     { value = agentlab_job.ok.status }
output "ok_exit"       { value = agentlab_job.ok.exit_code }
output "ok_artifacts"  { value = { for a in data.agentlab_job_artifacts.ok.artifacts : a.name => a.sha256 } }
output "fails_status"  { value = agentlab_job.fails.status }
output "fails_exit"    { value = agentlab_job.fails.exit_code }
output "fails_log"     { value = agentlab_job.fails.log_tail }
output "later_status"  { value = agentlab_job.later.status }
output "kept_status"   { value = agentlab_job.kept.status }
output "kept_vmid"     { value = agentlab_job.kept.vmid }
`, w.repoURL, downloads))
	out := w.outputs(dir)
	if out["ok_status"] != "succeeded" || out["ok_exit"] != float64(0) {
		t.Fatalf("job ok: status %v exit %v; want succeeded 0 (outputs %v)", out["ok_status"], out["ok_exit"], out)
	}
	want := map[string]string{
		"out/copy.txt":     sha("payload from the repository\n"),
		"out/greeting.txt": sha("built hello\n"),
	}
	arts, _ := out["ok_artifacts"].(map[string]any)
	for name, sum := range want {
		if arts[name] != sum {
			t.Errorf("artifact %s: sha256 %v; want %s (artifacts %v)", name, arts[name], sum, arts)
		}
		b, err := os.ReadFile(filepath.Join(downloads, filepath.FromSlash(name)))
		if err != nil || sha(string(b)) != sum {
			t.Errorf("downloaded %s: %v, sha256 %s; want %s", name, err, sha(string(b)), sum)
		}
	}
	if out["fails_status"] != "failed" || out["fails_exit"] != float64(7) {
		t.Errorf("job fails: status %v exit %v; want failed 7", out["fails_status"], out["fails_exit"])
	}
	if log, _ := out["fails_log"].(string); !strings.Contains(log, "about to fail") {
		t.Errorf("job fails: log tail %q does not hold the task's output", log)
	}
	// The kept sandbox lives on without its seed: the reaper retired it
	// at the runner's first call (the provider leaves it to the reaper).
	if out["kept_status"] != "succeeded" {
		t.Errorf("job kept: status %v; want succeeded", out["kept_status"])
	} else {
		w.checkSeedRetired(int(out["kept_vmid"].(float64)))
	}
	if s := out["later_status"]; s == "succeeded" || s == "failed" {
		t.Logf("job later had already ended when the apply returned (%v)", s)
	}

	// The job that did not wait ends on its own; a refresh shows it.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if _, err := w.terraform(dir, "apply", "-refresh-only", "-auto-approve", "-input=false", "-no-color"); err != nil {
			t.Fatal(err)
		}
		if s := w.outputs(dir)["later_status"]; s == "succeeded" {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("job later is %v after 2 minutes; want succeeded", s)
		}
		time.Sleep(time.Second) // the job runs in another process; poll its status
	}
	w.emptyPlan(dir)
}

// checkSeedRetired checks that VM vmid lives with an empty CD-ROM and that
// its seed ISO is gone from storage.
func (w *world) checkSeedRetired(vmid int) {
	w.t.Helper()
	ctx := context.Background()
	c, err := pve.New(ctx, pve.Config{Endpoint: w.endpoint, APIToken: w.token})
	if err != nil {
		w.t.Fatal(err)
	}
	vm, err := c.FindVM(ctx, vmid)
	if err != nil {
		w.t.Fatalf("kept VM %d: %v", vmid, err)
	}
	ref := vm.Ref()
	cfg, err := c.Config(ctx, ref)
	if err != nil {
		w.t.Fatal(err)
	}
	if cd, _ := cfg.Raw["ide2"].(string); strings.Contains(cd, volume.SeedISOName(vmid)) {
		w.t.Errorf("kept VM %d still has its seed in its CD-ROM: ide2 = %q", vmid, cd)
	}
	isos, err := c.StorageContent(ctx, ref.Node, "local", "iso", 0)
	if err != nil {
		w.t.Fatal(err)
	}
	for _, iso := range isos {
		if strings.Contains(iso.VolID, volume.SeedISOName(vmid)) {
			w.t.Errorf("the seed ISO %s of kept VM %d is still on storage", iso.VolID, vmid)
		}
	}
}

// vmExists asks the simulator whether VM vmid exists.
func (w *world) vmExists(vmid int) bool {
	w.t.Helper()
	c, err := pve.New(context.Background(), pve.Config{Endpoint: w.endpoint, APIToken: w.token})
	if err != nil {
		w.t.Fatal(err)
	}
	_, err = c.FindVM(context.Background(), vmid)
	if pve.IsNotFound(err) {
		return false
	}
	if err != nil {
		w.t.Fatal(err)
	}
	return true
}

// killRunner kills the job runner processes of this world's guests: those
// whose root directory is inside the world's directory and whose command
// line names the runner. It returns how many it killed.
func (w *world) killRunner() int {
	w.t.Helper()
	procs, _ := filepath.Glob("/proc/[0-9]*")
	n := 0
	for _, p := range procs {
		root, err := os.Readlink(filepath.Join(p, "root"))
		if err != nil || !strings.HasPrefix(root, w.dir+"/") {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join(p, "cmdline"))
		if err != nil || !bytes.Contains(cmdline, []byte("agentlab-job-runner")) {
			continue
		}
		pid, err := strconv.Atoi(filepath.Base(p))
		if err != nil {
			continue
		}
		if syscall.Kill(pid, syscall.SIGKILL) == nil {
			n++
		}
	}
	return n
}

// refreshUntil refreshes dir until output name is want, for at most limit.
func (w *world) refreshUntil(dir, name, want string, limit time.Duration) {
	w.t.Helper()
	deadline := time.Now().Add(limit)
	for {
		if _, err := w.terraform(dir, "apply", "-refresh-only", "-auto-approve", "-input=false", "-no-color"); err != nil {
			w.t.Fatal(err)
		}
		got := w.outputs(dir)[name]
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("%s is %v after %s; want %s", name, got, limit, want)
		}
		time.Sleep(2 * time.Second) // the job runs in other processes; poll its status
	}
}

// TestE2EJobTimeoutAndLost: an endless task ends timed_out and its VM is
// destroyed; a job whose runner is killed ends lost once it misses its
// heartbeats.
func TestE2EJobTimeoutAndLost(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	dir := w.apply("timeout", fmt.Sprintf(`
terraform {
  required_providers {
    agentlab = { source = "agentlab/agentlab" }
  }
}

provider "agentlab" {}

resource "agentlab_job" "endless" {
  repo          = %[1]q
  ref           = "main"
  task          = "echo starting; sleep 600"
  template_vmid = 9000
  timeout       = "3s"
}

resource "agentlab_job" "killed" {
  repo          = %[1]q
  ref           = "main"
  task          = "sleep 600"
  template_vmid = 9000
  wait          = false
}

output "endless_status" { value = agentlab_job.endless.status }
output "endless_vmid"   { value = agentlab_job.endless.vmid }
output "killed_status"  { value = agentlab_job.killed.status }
`, w.repoURL))
	out := w.outputs(dir)
	if out["endless_status"] != "timed_out" {
		t.Fatalf("endless job: status %v; want timed_out", out["endless_status"])
	}
	vmid := int(out["endless_vmid"].(float64))
	deadline := time.Now().Add(time.Minute)
	for w.vmExists(vmid) {
		if time.Now().After(deadline) {
			t.Fatalf("the timed-out job's VM %d still exists a minute later", vmid)
		}
		time.Sleep(time.Second) // the reaper destroys it on its next tick
	}

	// Kill the runner once it runs the task; its job goes lost.
	deadline = time.Now().Add(time.Minute)
	for w.killRunner() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no job runner process found in a minute")
		}
		time.Sleep(time.Second) // waiting for the guest to start the runner
	}
	w.refreshUntil(dir, "killed_status", "lost", 3*time.Minute)
	w.emptyPlan(dir)
}

// TestE2EJobWorkspace: what one job writes to a workspace, a job in a new
// sandbox reads, and its artifact proves it.
func TestE2EJobWorkspace(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	dir := w.apply("workspace", fmt.Sprintf(`
terraform {
  required_providers {
    agentlab = { source = "agentlab/agentlab" }
  }
}

provider "agentlab" {}

resource "agentlab_workspace" "shared" {
  name = "shared"
  node = "pve"
  size = "1G"
}

resource "agentlab_job" "writer" {
  repo          = %[1]q
  ref           = "main"
  task          = "echo 'from the first job' > \"$AGENTLAB_WORKSPACE/note.txt\""
  template_vmid = 9000
  workspace_id  = agentlab_workspace.shared.id
}

resource "agentlab_job" "reader" {
  repo          = %[1]q
  ref           = "main"
  task          = "mkdir -p out && cp \"$AGENTLAB_WORKSPACE/note.txt\" out/note.txt"
  template_vmid = 9000
  workspace_id  = agentlab_workspace.shared.id
  artifacts     = ["out/**"]
  depends_on    = [agentlab_job.writer]
}

# Two more jobs on the same workspace, with no depends_on: Terraform starts
# them at once, and each waits for the workspace in turn.
resource "agentlab_job" "one" {
  repo          = %[1]q
  ref           = "main"
  task          = "echo one >> \"$AGENTLAB_WORKSPACE/turns.txt\"; mkdir -p out; cp \"$AGENTLAB_WORKSPACE/turns.txt\" out/turns.txt"
  template_vmid = 9000
  workspace_id  = agentlab_workspace.shared.id
  artifacts     = ["out/**"]
}

resource "agentlab_job" "two" {
  repo          = %[1]q
  ref           = "main"
  task          = "echo two >> \"$AGENTLAB_WORKSPACE/turns.txt\"; mkdir -p out; cp \"$AGENTLAB_WORKSPACE/turns.txt\" out/turns.txt"
  template_vmid = 9000
  workspace_id  = agentlab_workspace.shared.id
  artifacts     = ["out/**"]
}

output "turns" {
  value = [for j in [agentlab_job.one, agentlab_job.two] : [j.status, [for a in j.artifact_list : a.sha256 if a.name == "out/turns.txt"]]]
}
output "writer_status" { value = agentlab_job.writer.status }
output "reader_status" { value = agentlab_job.reader.status }
output "reader_note"   { value = [for a in agentlab_job.reader.artifact_list : a.sha256 if a.name == "out/note.txt"] }
`, w.repoURL))
	out := w.outputs(dir)
	if out["writer_status"] != "succeeded" || out["reader_status"] != "succeeded" {
		t.Fatalf("writer %v, reader %v; want both succeeded", out["writer_status"], out["reader_status"])
	}
	// The reader's sandbox is a new VM: the workspace is attached to one
	// sandbox at a time, so the writer's was destroyed first (its VMID may
	// well be reused).
	notes, _ := out["reader_note"].([]any)
	if len(notes) != 1 || notes[0] != sha("from the first job\n") {
		t.Fatalf("reader's out/note.txt sha256 = %v; want %s", notes, sha("from the first job\n"))
	}
	// one and two ran one after the other: the first saw its own line, the
	// second both.
	var got []string
	turns, _ := out["turns"].([]any)
	for _, tr := range turns {
		pair, _ := tr.([]any)
		if len(pair) != 2 || pair[0] != "succeeded" {
			t.Fatalf("jobs one and two: %v; want both succeeded (the second waits for the workspace)", turns)
		}
		sums, _ := pair[1].([]any)
		for _, s := range sums {
			got = append(got, s.(string))
		}
	}
	slices.Sort(got)
	ok := false
	for _, order := range [][]string{{sha("one\n"), sha("one\ntwo\n")}, {sha("two\n"), sha("two\none\n")}} {
		ok = ok || slices.Equal(got, slices.Sorted(slices.Values(order)))
	}
	if !ok {
		t.Errorf("turns.txt sha256s %v; want one job to see only its line and the other both, in that order", got)
	}
}
