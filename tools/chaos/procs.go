package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// simProcess is one agentlab-pvesim binary serving a state directory. It can
// be killed with SIGKILL and started again on the same port with the same
// token, as a Proxmox node that lost power and came back.
type simProcess struct {
	bin      string
	stateDir string
	token    string
	scale    float64
	seed     uint64
	log      io.Writer // the simulator's stderr, across restarts

	addr     string // host:port, fixed after the first start
	endpoint string
	cmd      *exec.Cmd
	done     chan struct{}
}

// start starts the simulator and waits for its first line.
func (s *simProcess) start(ctx context.Context) error {
	listen := s.addr
	if listen == "" {
		listen = "127.0.0.1:0"
	}
	cmd := exec.Command(s.bin, "--listen", listen, "--state-dir", s.stateDir, "--latency", "realistic",
		"--latency-scale", strconv.FormatFloat(s.scale, 'f', -1, 64), "--token", s.token,
		"--template", "9000:debian-12-cloud", "--seed", strconv.FormatUint(s.seed, 10))
	cmd.Stderr = s.log
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start agentlab-pvesim: %w", err)
	}
	done := make(chan struct{})
	first := make(chan string, 1)
	go func() {
		r := bufio.NewReader(stdout)
		line, _ := r.ReadString('\n')
		first <- line
		_, _ = io.Copy(io.Discard, r)
		_ = cmd.Wait()
		close(done)
	}()
	s.cmd, s.done = cmd, done
	var line string
	select {
	case line = <-first:
	case <-time.After(30 * time.Second):
		s.kill()
		return errors.New("agentlab-pvesim printed nothing in 30s")
	case <-ctx.Done():
		s.kill()
		return ctx.Err()
	}
	for _, f := range strings.Fields(line) {
		if v, ok := strings.CutPrefix(f, "endpoint="); ok {
			s.endpoint = v
		}
	}
	u, err := url.Parse(s.endpoint)
	if err != nil || s.endpoint == "" {
		s.kill()
		return fmt.Errorf("agentlab-pvesim first line %q: no endpoint", line)
	}
	if _, _, err := net.SplitHostPort(u.Host); err != nil {
		s.kill()
		return fmt.Errorf("agentlab-pvesim endpoint %q: %w", s.endpoint, err)
	}
	s.addr = u.Host
	return nil
}

// kill sends SIGKILL and waits for the process to be gone.
func (s *simProcess) kill() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.done
	s.cmd = nil
}

// stop stops the simulator gracefully (SIGTERM), so that it writes its state.
func (s *simProcess) stop() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(15 * time.Second):
		s.kill()
	}
	s.cmd = nil
}

// running reports whether the process is up.
func (s *simProcess) running() bool { return s.cmd != nil }

// tfRun is one terraform command running in its own process group, so that
// killing "terraform" takes its provider plugin with it, as a lost CI runner
// or a kill -9 of the shell's job would.
type tfRun struct {
	cmd  *exec.Cmd
	log  string // where the output is saved once the command ends
	out  *syncBuffer
	done chan struct{}
	err  error
}

// syncBuffer is a bytes.Buffer safe for the writer goroutines of exec.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// startTerraform starts terraform with args in dir; its output is saved to
// log when it ends.
func startTerraform(bin, dir, log string, env []string, args ...string) (*tfRun, error) {
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	r := &tfRun{cmd: cmd, log: log, out: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = r.out, r.out
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", filepath.Base(bin), err)
	}
	go func() {
		r.err = cmd.Wait()
		_ = os.WriteFile(r.log, []byte(r.out.String()), 0o600)
		close(r.done)
	}()
	return r, nil
}

// exited reports whether the command has finished.
func (r *tfRun) exited() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

// wait waits for the command, at most timeout; a command still running then
// is killed with its process group.
func (r *tfRun) wait(timeout time.Duration) error {
	select {
	case <-r.done:
		return r.err
	case <-time.After(timeout):
		r.killGroup()
		return fmt.Errorf("still running after %s: killed", timeout)
	}
}

// killGroup kills terraform and every process it started (the provider).
func (r *tfRun) killGroup() {
	_ = syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL)
	<-r.done
}

// providerPID returns the pid of the provider plugin terraform started from
// providerBin, or 0 when it is not running (yet, or any more). Linux only: it
// reads /proc.
func (r *tfRun) providerPID(providerBin string) int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	parent := r.cmd.Process.Pid
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so cut at the last ')'.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(stat[i+1:]))
		if len(f) < 2 || f[1] != strconv.Itoa(parent) {
			continue
		}
		if exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe")); err == nil && exe == providerBin {
			return pid
		}
	}
	return 0
}

// killPID sends SIGKILL to one process.
func killPID(pid int) error { return syscall.Kill(pid, syscall.SIGKILL) }
