package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/agentlab/terraform-provider-agentlab/internal/job"
	"github.com/agentlab/terraform-provider-agentlab/internal/pvesim/pvesimtest"
	"github.com/agentlab/terraform-provider-agentlab/reaper/api"
	"github.com/agentlab/terraform-provider-agentlab/reaper/reapertest"
)

// TestJobsInProcess runs the daemon in-process against the simulator and
// drives a job through its control API and guest listener, as the provider
// and the runner do; then the operator commands show it, and the job's VM
// is destroyed once the job ended. The control API listens on a
// non-loopback address, so it serves TLS with a generated certificate.
func TestJobsInProcess(t *testing.T) {
	ctx := context.Background()
	sim := pvesimtest.Start(t)
	pveAPI := &reapertest.PVE{Endpoint: sim.URL, Token: sim.Token, HTTP: sim.Client}
	cfg := reapertest.Config{Dir: t.TempDir(), Endpoint: sim.URL, Token: sim.Token, Insecure: true, Interval: time.Hour,
		GuestListen: "127.0.0.1:0", ControlListen: "0.0.0.0:0", ControlToken: "ctl-secret", MetricsListen: "127.0.0.1:0"}
	m, logs := startMain(ctx, t, cfg)

	// The provider's side, over TCP with TLS pinned to the printed fingerprint.
	fp := between(logs.String(), "fingerprint: ", "\n")
	if len(fp) != 64 {
		t.Fatalf("no fingerprint printed:\n%s", logs.String())
	}
	port := m.Addr("control").String()
	port = port[strings.LastIndex(port, ":"):]
	ctl, err := api.NewClient(api.ClientOptions{URL: "https://127.0.0.1" + port, Token: "ctl-secret", Fingerprint: fp})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := api.NewClient(api.ClientOptions{URL: "http://" + strings.Replace(m.Addr("control").String(), "[::]", "192.0.2.1", 1), Token: "x"}); err == nil {
		t.Error("a client agreed to send its token over plain HTTP to a non-loopback address")
	}
	reg, err := ctl.RegisterJob(ctx, job.RegisterRequest{Repo: "https://git.example/r.git", Ref: "main", Task: "make", Artifacts: []string{"out/*"}})
	if err != nil {
		t.Fatal(err)
	}
	id := reg.Job.ID
	if _, err := pveAPI.Create(ctx, reapertest.Sandbox{VMID: 120, Created: time.Now(), TTL: time.Hour, JobID: id, Start: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := ctl.SetJobSandbox(ctx, id, job.SandboxRequest{Node: "pve", VMID: 120}); err != nil {
		t.Fatal(err)
	}
	if err := m.loop.Tick(ctx); err != nil { // the reaper learns the VM's node
		t.Fatal(err)
	}

	// The runner's side, over the guest listener.
	guestURL := "http://" + m.Addr("guest").String()
	guestDo := func(method, path, token, body string) []byte {
		t.Helper()
		req, _ := http.NewRequest(method, guestURL+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		if resp.StatusCode >= 300 {
			t.Fatalf("%s %s = %d %s", method, path, resp.StatusCode, b.String())
		}
		return b.Bytes()
	}
	var spec job.Spec
	json.Unmarshal(guestDo("GET", "/v1/job/spec", reg.BootstrapToken, ""), &spec)
	guestDo("POST", "/v1/job/started", spec.Token, "")
	guestDo("POST", "/v1/job/log", spec.Token, "building\n")
	guestDo("POST", "/v1/job/log", spec.Token, "done\n")
	content := strings.Repeat("report line\n", 500)
	guestDo("PUT", "/v1/job/artifacts/out/report.txt", spec.Token, content)
	guestDo("PUT", "/v1/job/artifacts/out/sub/x.bin", spec.Token, "x")

	sock := cfg.Socket()
	code, out, errOut := runCmd(t, "logs", id, "--socket", sock)
	if code != 0 || out != "building\ndone\n" {
		t.Errorf("logs = %d %q %q", code, out, errOut)
	}
	// ssh's address: the guest agent's, through the control socket.
	if ip, err := api.NewUnixClient(sock).Address(ctx, 120); err != nil || !ip.Is4() {
		t.Errorf("address of 120 = %v, %v; want an IPv4 address", ip, err)
	}

	guestDo("POST", "/v1/job/finished", spec.Token, `{"exit_code":0,"timed_out":false}`)

	code, out, _ = runCmd(t, "jobs", "--socket", sock)
	if code != 0 || !regexpMatch(`(?m)^JOB\s+STATUS\s+EXIT`, out) || !regexpMatch(`(?m)^`+id+`\s+succeeded\s+0\s+120\s`, out) {
		t.Errorf("jobs = %d %q", code, out)
	}
	code, out, _ = runCmd(t, "job", id, "--socket", sock)
	if code != 0 || !regexpMatch(`(?m)^status:\s+succeeded$`, out) || !strings.Contains(out, "out/report.txt") || !strings.Contains(out, "done\n") {
		t.Errorf("job = %d %q", code, out)
	}
	code, out, _ = runCmd(t, "artifacts", id, "--socket", sock)
	sum := sha256.Sum256([]byte(content))
	if code != 0 || !regexpMatch(`(?m)^out/report.txt\s+6000\s+`+hex.EncodeToString(sum[:])+`$`, out) {
		t.Errorf("artifacts = %d %q", code, out)
	}
	dl := t.TempDir()
	code, out, errOut = runCmd(t, "artifacts", "download", id, dl, "--socket", sock)
	if code != 0 {
		t.Fatalf("download = %d %q %q", code, out, errOut)
	}
	if got, _ := os.ReadFile(filepath.Join(dl, "out", "report.txt")); string(got) != content {
		t.Errorf("downloaded report.txt has %d bytes; want %d", len(got), len(content))
	}
	if got, _ := os.ReadFile(filepath.Join(dl, "out", "sub", "x.bin")); string(got) != "x" {
		t.Errorf("downloaded x.bin = %q", got)
	}
	leftovers, _ := filepath.Glob(filepath.Join(dl, "out", ".download-*"))
	if len(leftovers) != 0 {
		t.Errorf("temporary files left: %v", leftovers)
	}
	code, out, _ = runCmd(t, "logs", id, "--follow", "--socket", sock)
	if code != 0 || out != "building\ndone\n" {
		t.Errorf("logs --follow of an ended job = %d %q; want the whole log, then exit", code, out)
	}

	// The job ended: the reaper destroys its VM without anyone asking.
	if err := m.jobs.Check(ctx); err != nil {
		t.Fatal(err)
	}
	if ok, _ := pveAPI.Exists(ctx, 120); ok {
		t.Error("the VM of the ended job still exists")
	}

	resp, err := http.Get("http://" + m.Addr("metrics").String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	var metricsText bytes.Buffer
	metricsText.ReadFrom(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`agentlab_jobs{status="succeeded"} 1`,
		`agentlab_jobs{status="running"} 0`,
		"agentlab_artifact_bytes_total 6001",
		`agentlab_job_duration_seconds_count{status="succeeded"} 1`,
		"agentlab_workspaces_attached 0",
	} {
		if !strings.Contains(metricsText.String(), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// TestSSHCommand checks the ssh command line: the guest agent's address,
// the sandbox's user, and extra ssh arguments.
func TestSSHCommand(t *testing.T) {
	srv := &api.Server{Addresses: fixedAddress{}}
	dir := t.TempDir()
	sock := filepath.Join(dir, "s.sock")
	ln, err := api.ListenUnix(sock)
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: srv.Handler()}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	var out, errb bytes.Buffer
	c := newOpCommand(&out, &errb)
	var got []string
	c.exec = func(bin string, argv, env []string) error {
		got = argv
		return nil
	}
	if err := c.ssh(context.Background(), []string{"130", "--socket", sock, "--user", "dev", "--", "-p", "2222"}); err != nil {
		t.Fatal(err)
	}
	if want := "ssh -l dev -p 2222 10.77.0.130"; strings.Join(got, " ") != want {
		t.Errorf("ssh argv = %q; want %q", strings.Join(got, " "), want)
	}
}

type fixedAddress struct{}

func (fixedAddress) Address(ctx context.Context, vmid int) (netip.Addr, error) {
	return netip.MustParseAddr("10.77.0." + strconv.Itoa(vmid)), nil
}

func between(s, start, end string) string {
	_, after, ok := strings.Cut(s, start)
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(after, end)
	return v
}
