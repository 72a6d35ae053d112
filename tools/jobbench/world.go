package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/agentlab/terraform-provider-agentlab/internal/pvesim"
	"github.com/agentlab/terraform-provider-agentlab/internal/tfcli"
	"github.com/agentlab/terraform-provider-agentlab/reaper/api"
)

// world is one run's setup: the simulator (in this process), a git server,
// the reaper and a terraform working directory.
type world struct {
	o           options
	dir         string
	sim         *pvesim.Server
	git         *http.Server
	reaper      *exec.Cmd
	reaperLog   string
	ctl         *api.Client // the reaper's control socket
	env         []string
	tfDir       string
	artifactSHA string
}

const simToken = "root@pam!bench=jobbench-secret"

// start sets everything up; close undoes it.
func start(o options, model pvesim.Latency, cli tfcli.Info, dir string) (*world, error) {
	w := &world{o: o, dir: dir}
	ok := false
	defer func() {
		if !ok {
			w.close()
		}
	}()
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find this program to run as the guests' init: %w", err)
	}
	w.sim, err = pvesim.New(pvesim.Options{
		Tokens:    []string{simToken},
		Latency:   model,
		StateDir:  filepath.Join(dir, "pvesim"),
		GuestExec: &pvesim.GuestExec{Init: []string{exe, pvesim.GuestInitArg}},
		Logger:    slog.New(slog.DiscardHandler),
	})
	if err != nil {
		return nil, err
	}
	simAddr, _, _, err := w.sim.ServeLoopback()
	if err != nil {
		return nil, err
	}
	repo, err := w.serveRepo()
	if err != nil {
		return nil, fmt.Errorf("git repository: %w", err)
	}
	guest, socket, err := w.startReaper("https://" + simAddr)
	if err != nil {
		return nil, err
	}

	w.tfDir = filepath.Join(dir, "tf")
	if err := os.MkdirAll(w.tfDir, 0o755); err != nil {
		return nil, err
	}
	rc := filepath.Join(dir, "cli.tfrc")
	if err := os.WriteFile(rc, []byte(fmt.Sprintf(`provider_installation {
  dev_overrides {
    %q = %q
  }
  direct {}
}
`, cli.Kind.ProviderAddress(), o.bin)), 0o644); err != nil {
		return nil, err
	}
	w.env = append(os.Environ(), "TF_CLI_CONFIG_FILE="+rc, "TF_IN_AUTOMATION=1",
		"PROXMOX_VE_ENDPOINT=https://"+simAddr, "PROXMOX_VE_API_TOKEN="+simToken, "PROXMOX_VE_INSECURE=true",
		"AGENTLAB_REAPER_URL=unix://"+socket, "AGENTLAB_REAPER_GUEST_URL=http://"+guest)
	main := fmt.Sprintf(`terraform {
  required_providers {
    agentlab = { source = "agentlab/agentlab" }
  }
}

provider "agentlab" {}

resource "agentlab_job" "bench" {
  count         = %d
  repo          = %q
  ref           = "main"
  task          = "./task.sh %d"
  template_vmid = %d
  timeout       = "10m"
  artifacts     = ["out/**"]
}

output "jobs" {
  value = [for j in agentlab_job.bench : { id = j.id, status = j.status, artifacts = j.artifact_list }]
}
`, o.n, repo, int(o.task.Seconds()), pvesim.DefaultTemplate().VMID)
	if err := os.WriteFile(filepath.Join(w.tfDir, "main.tf"), []byte(main), 0o644); err != nil {
		return nil, err
	}
	ok = true
	return w, nil
}

// close stops the reaper, the git server and the simulator (whose guests
// end with it).
func (w *world) close() {
	if w.reaper != nil && w.reaper.Process != nil {
		_ = w.reaper.Process.Signal(os.Interrupt)
		_ = w.reaper.Wait()
	}
	if w.git != nil {
		_ = w.git.Close()
	}
	if w.sim != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_ = w.sim.Shutdown(ctx)
		cancel()
		_ = w.sim.Close()
	}
}

// serveRepo makes a git repository whose task.sh sleeps for its argument's
// seconds, then copies data.bin (random, -artifact-size bytes) to
// out/result.bin, and serves it read-only on loopback (git's dumb HTTP
// protocol). It returns the clone URL.
func (w *world) serveRepo() (string, error) {
	src := filepath.Join(w.dir, "src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		return "", err
	}
	task := "#!/bin/sh\nset -e\nsleep \"$1\"\nmkdir -p out\ncp data.bin out/result.bin\n"
	if err := os.WriteFile(filepath.Join(src, "task.sh"), []byte(task), 0o755); err != nil {
		return "", err
	}
	var err error
	if w.artifactSHA, err = randomFile(filepath.Join(src, "data.bin"), w.o.artifact); err != nil {
		return "", err
	}
	served := filepath.Join(w.dir, "git")
	for _, c := range []struct {
		dir  string
		args []string
	}{
		{src, []string{"init", "-q", "-b", "main"}},
		{src, []string{"add", "."}},
		{src, []string{"commit", "-q", "-m", "jobbench"}},
		{w.dir, []string{"clone", "-q", "--bare", src, filepath.Join(served, "repo.git")}},
		{filepath.Join(served, "repo.git"), []string{"update-server-info"}},
	} {
		cmd := exec.Command("git", c.args...)
		cmd.Dir = c.dir
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=jobbench", "GIT_AUTHOR_EMAIL=jobbench@example.com",
			"GIT_COMMITTER_NAME=jobbench", "GIT_COMMITTER_EMAIL=jobbench@example.com")
		if b, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("git %s: %w\n%s", strings.Join(c.args, " "), err, b)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	w.git = &http.Server{Handler: http.FileServer(http.Dir(served)), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = w.git.Serve(ln) }()
	return "http://" + ln.Addr().String() + "/repo.git", nil
}

// startReaper starts agentlab-reaper serve against the simulator at
// endpoint and waits for its control socket. It returns the guest
// listener's address and the socket's path.
func (w *world) startReaper(endpoint string) (guest, socket string, err error) {
	dir := filepath.Join(w.dir, "reaper")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", "", err
	}
	guest = ln.Addr().String()
	ln.Close()
	token := filepath.Join(dir, "pve-token")
	if err := os.WriteFile(token, []byte(simToken+"\n"), 0o600); err != nil {
		return "", "", err
	}
	socket = filepath.Join(dir, "reaper.sock")
	conf := fmt.Sprintf(`proxmox:
  endpoint: %q
  api_token_file: %q
  insecure: true
database: %q
control:
  socket: %q
guest:
  listen: %q
metrics:
  listen: ""
artifacts:
  dir: %q
`, endpoint, token, filepath.Join(dir, "reaper.db"), socket, guest, filepath.Join(dir, "artifacts"))
	cfg := filepath.Join(dir, "reaper.yaml")
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		return "", "", err
	}
	w.reaperLog = filepath.Join(dir, "reaper.log")
	logf, err := os.Create(w.reaperLog)
	if err != nil {
		return "", "", err
	}
	defer logf.Close()
	w.reaper = exec.Command(filepath.Join(w.o.bin, "agentlab-reaper"), "serve", "--config", cfg)
	w.reaper.Stdout, w.reaper.Stderr = logf, logf
	if err := w.reaper.Start(); err != nil {
		return "", "", err
	}
	ctl := api.NewUnixClient(socket)
	w.ctl = ctl
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := ctl.Status(context.Background()); err == nil {
			return guest, socket, nil
		}
		if time.Now().After(deadline) {
			return "", "", fmt.Errorf("agentlab-reaper did not answer on %s within 30 s (its log: %s)", socket, w.reaperLog)
		}
		time.Sleep(50 * time.Millisecond) // another process creates the socket
	}
}

// terraform runs terraform in the working directory.
func (w *world) terraform(args ...string) error {
	_, err := w.terraformRun(args...)
	return err
}

func (w *world) terraformRun(args ...string) ([]byte, error) {
	cmd := exec.Command(w.o.terraform, args...)
	cmd.Dir = w.tfDir
	cmd.Env = w.env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s %s: %w\n%s%s", filepath.Base(w.o.terraform), strings.Join(args, " "), err,
			tail(out.String()), errb.String())
	}
	return out.Bytes(), nil
}

// terraformOutput returns output name's value as JSON.
func (w *world) terraformOutput(name string) ([]byte, error) {
	b, err := w.terraformRun("output", "-json", name)
	if err != nil {
		return nil, err
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, errors.New("terraform output " + name + ": empty")
	}
	return b, nil
}

// tail keeps the last 40 lines of s.
func tail(s string) string {
	lines := strings.Split(s, "\n")
	if len(lines) > 40 {
		lines = lines[len(lines)-40:]
	}
	return strings.Join(lines, "\n")
}
