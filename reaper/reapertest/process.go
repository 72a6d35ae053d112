package reapertest

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Module is the import path of this repository's module.
const Module = "github.com/agentlab/terraform-provider-agentlab"

// GoBuild builds the main package pkg (an import path) into dir and returns
// the binary's path.
func GoBuild(tb testing.TB, dir, pkg string) string {
	tb.Helper()
	out := filepath.Join(dir, filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
	return out
}

// Process is a running binary whose stderr is kept (and scanned line by
// line for WaitFor).
type Process struct {
	Cmd *exec.Cmd

	mu     sync.Mutex
	lines  []string
	notify chan struct{} // closed and replaced on every new line
	done   chan struct{} // closed when the process has exited
	err    error         // exit error, once done
}

// Start starts bin with args; it is killed when the test ends.
func Start(tb testing.TB, bin string, args ...string) *Process {
	tb.Helper()
	p := &Process{Cmd: exec.Command(bin, args...), notify: make(chan struct{}), done: make(chan struct{})}
	stderr, err := p.Cmd.StderrPipe()
	if err != nil {
		tb.Fatal(err)
	}
	p.Cmd.Stdout = io.Discard
	if err := p.start(stderr); err != nil {
		tb.Fatalf("start %s: %v", bin, err)
	}
	tb.Cleanup(func() { p.Kill() })
	return p
}

func (p *Process) start(stderr io.Reader) error {
	if err := p.Cmd.Start(); err != nil {
		return err
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			p.mu.Lock()
			p.lines = append(p.lines, sc.Text())
			close(p.notify)
			p.notify = make(chan struct{})
			p.mu.Unlock()
		}
		err := p.Cmd.Wait()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(p.done)
	}()
	return nil
}

// Lines returns the stderr lines so far.
func (p *Process) Lines() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.lines...)
}

// Output returns stderr so far as one string.
func (p *Process) Output() string { return strings.Join(p.Lines(), "\n") }

// WaitFor waits until a stderr line from index from on satisfies match, and
// returns its index. It fails when the process exits or timeout passes.
func (p *Process) WaitFor(tb testing.TB, from int, timeout time.Duration, what string, match func(string) bool) int {
	tb.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		p.mu.Lock()
		for i := from; i < len(p.lines); i++ {
			if match(p.lines[i]) {
				p.mu.Unlock()
				return i
			}
		}
		from = len(p.lines)
		notify := p.notify
		p.mu.Unlock()
		select {
		case <-notify:
		case <-p.done:
			// The scanner may have delivered the last lines just before.
			p.mu.Lock()
			n := len(p.lines)
			p.mu.Unlock()
			if n > from {
				continue
			}
			tb.Fatalf("process exited (%v) while waiting for %s; stderr:\n%s", p.ExitErr(), what, p.Output())
		case <-deadline.C:
			tb.Fatalf("timed out after %s waiting for %s; stderr:\n%s", timeout, what, p.Output())
		}
	}
}

// Signal sends sig to the process.
func (p *Process) Signal(sig os.Signal) error { return p.Cmd.Process.Signal(sig) }

// Kill kills the process (SIGKILL) and waits for it.
func (p *Process) Kill() {
	_ = p.Cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// Wait waits for the process to exit, at most timeout, and returns its exit
// error (nil for status 0).
func (p *Process) Wait(timeout time.Duration) (error, bool) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.done:
		return p.ExitErr(), true
	case <-t.C:
		return nil, false
	}
}

// ExitErr is the process's exit error once it has exited.
func (p *Process) ExitErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// Simulator is a running agentlab-pvesim.
type Simulator struct {
	*Process
	// Endpoint and Token are what the simulator printed on its first line.
	Endpoint, Token string
}

// StartSimulator starts the agentlab-pvesim binary bin with args (add
// --listen and --plain-http as needed) and reads its first stdout line,
// "agentlab-pvesim: endpoint=URL token=TOKEN".
func StartSimulator(tb testing.TB, bin string, args ...string) *Simulator {
	tb.Helper()
	p := &Process{Cmd: exec.Command(bin, args...), notify: make(chan struct{}), done: make(chan struct{})}
	stdout, err := p.Cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	stderr, err := p.Cmd.StderrPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := p.start(stderr); err != nil {
		tb.Fatalf("start %s: %v", bin, err)
	}
	tb.Cleanup(func() { p.Kill() })
	first := make(chan string, 1)
	go func() {
		r := bufio.NewReader(stdout)
		line, _ := r.ReadString('\n')
		first <- line
		_, _ = io.Copy(io.Discard, r)
	}()
	var line string
	select {
	case line = <-first:
	case <-time.After(30 * time.Second):
		tb.Fatalf("agentlab-pvesim printed nothing in 30s; stderr:\n%s", p.Output())
	}
	s := &Simulator{Process: p}
	for _, f := range strings.Fields(line) {
		if v, ok := strings.CutPrefix(f, "endpoint="); ok {
			s.Endpoint = v
		}
		if v, ok := strings.CutPrefix(f, "token="); ok {
			s.Token = v
		}
	}
	if !strings.HasPrefix(line, "agentlab-pvesim: ") || s.Endpoint == "" || s.Token == "" {
		tb.Fatalf("agentlab-pvesim first line = %q; want \"agentlab-pvesim: endpoint=URL token=TOKEN\"; stderr:\n%s", line, p.Output())
	}
	return s
}
