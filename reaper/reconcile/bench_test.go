package reconcile

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/agentlab/terraform-provider-agentlab/internal/clock"
	"github.com/agentlab/terraform-provider-agentlab/internal/pve"
	"github.com/agentlab/terraform-provider-agentlab/reaper"
	"github.com/agentlab/terraform-provider-agentlab/reaper/reapertest"
	"github.com/agentlab/terraform-provider-agentlab/reaper/sqlite"
)

// The benchmarks run the simulator as its own process (the agentlab-pvesim
// binary, built into a temporary directory), so that the CPU time and the
// memory they measure are the reaper's alone:
//
//	go test -run '^$' -bench . -benchtime 20x ./reaper/reconcile
//
// BenchmarkTick reports, for one tick over 10,000 sandboxes when nothing
// changed: cpu-ms/tick (user+system, getrusage), pve-calls/tick and the
// process's peak RSS (VmHWM). BenchmarkExpiryToDestroy reports the delay
// between a lease's expiry and the end of its sandbox's destruction, with
// the realistic latency model and a 1 s interval.

// countingTransport counts the requests sent to Proxmox VE.
type countingTransport struct {
	next http.RoundTripper
	n    atomic.Int64
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.next.RoundTrip(r)
}

func startSimProcess(b *testing.B, args ...string) *reapertest.Simulator {
	b.Helper()
	bin := reapertest.GoBuild(b, b.TempDir(), reapertest.Module+"/cmd/agentlab-pvesim")
	return reapertest.StartSimulator(b, bin, append([]string{"--listen", "127.0.0.1:0", "--plain-http"}, args...)...)
}

// createSandboxes creates n sandboxes from VMID first on, 16 at a time.
func createSandboxes(b *testing.B, api *reapertest.PVE, first, n int, s reapertest.Sandbox) {
	b.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 16)
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			sb := s
			sb.VMID = first + i
			if _, err := api.Create(context.Background(), sb); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatalf("create sandboxes: %v", err)
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// peakRSS returns VmHWM from /proc/self/status, in bytes.
func peakRSS() int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func newBenchLoop(b *testing.B, sim *reapertest.Simulator, clk clock.Clock, interval time.Duration, logger *slog.Logger) (*Loop, *countingTransport, *sqlite.DB) {
	b.Helper()
	ct := &countingTransport{next: http.DefaultTransport.(*http.Transport).Clone()}
	client, err := pve.New(context.Background(), pve.Config{Endpoint: sim.Endpoint, APIToken: sim.Token,
		HTTPClient: &http.Client{Transport: ct}})
	if err != nil {
		b.Fatal(err)
	}
	db := sqlite.New(filepath.Join(b.TempDir(), "reaper.db"))
	db.Now = clk.Now
	if err := db.Open(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	return New(client, db, Options{Clock: clk, Interval: interval, WarnBefore: 5 * time.Minute, Logger: logger}), ct, db
}

func BenchmarkTick(b *testing.B) {
	const n = 10000
	sim := startSimProcess(b)
	api := &reapertest.PVE{Endpoint: sim.Endpoint, Token: sim.Token, HTTP: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}}
	now := time.Now().UTC().Truncate(time.Second)
	start := time.Now()
	createSandboxes(b, api, 10000, n, reapertest.Sandbox{Created: now, TTL: 24 * time.Hour, Token: "t"})
	b.Logf("created %d sandboxes in %s", n, time.Since(start).Round(time.Millisecond))

	clk := clock.NewFake(now)
	loop, ct, _ := newBenchLoop(b, sim, clk, 30*time.Second, nil)
	ctx := context.Background()

	// The first tick reads every sandbox's config once.
	cpu0, calls0, t1 := cpuTime(), ct.n.Load(), time.Now()
	if err := loop.Tick(ctx); err != nil {
		b.Fatal(err)
	}
	b.Logf("first tick: %s wall, %s CPU, %d Proxmox calls", time.Since(t1).Round(time.Millisecond),
		(cpuTime() - cpu0).Round(time.Millisecond), ct.n.Load()-calls0)
	if got := loop.countStates()[reaper.StateActive]; got != n {
		b.Fatalf("active sandboxes after the first tick = %d; want %d", got, n)
	}

	b.Run("steady", func(b *testing.B) {
		cpu0, calls0 := cpuTime(), ct.n.Load()
		b.ResetTimer()
		for range b.N {
			clk.Advance(30 * time.Second)
			if err := loop.Tick(ctx); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N)/1e6, "cpu-ms/tick")
		b.ReportMetric(float64(ct.n.Load()-calls0)/float64(b.N), "pve-calls/tick")
		b.ReportMetric(float64(peakRSS())/(1<<20), "bench-process-peak-RSS-MiB")
	})

	// The daemon itself, as a process of its own over the same 10,000
	// sandboxes: its CPU time per tick and peak RSS, read from /proc.
	b.Run("daemon", func(b *testing.B) {
		bin := reapertest.GoBuild(b, b.TempDir(), reapertest.Module+"/cmd/agentlab-reaper")
		cfg := reapertest.Config{Dir: b.TempDir(), Endpoint: sim.Endpoint, Token: sim.Token, Interval: 500 * time.Millisecond,
			WarnBefore: 5 * time.Minute}
		p := reapertest.Start(b, bin, "serve", "--config", cfg.Write(b), "--log-format", "json", "--log-level", "debug")
		isTick := func(l string) bool { return strings.Contains(l, `"msg":"tick"`) }
		line := p.WaitFor(b, 0, 2*time.Minute, "the first tick", isTick)
		if !strings.Contains(p.Lines()[line], `"config_reads":10000`) {
			b.Fatalf("first tick = %s; want 10000 config reads", p.Lines()[line])
		}
		pid := p.Cmd.Process.Pid
		cpu0 := procCPU(b, pid)
		b.ResetTimer()
		for range b.N {
			line = p.WaitFor(b, line+1, time.Minute, "a tick", isTick)
			if l := p.Lines()[line]; !strings.Contains(l, `"config_reads":0`) {
				b.Fatalf("steady tick = %s; want no config reads", l)
			}
		}
		b.StopTimer()
		b.ReportMetric(float64(procCPU(b, pid)-cpu0)/float64(b.N)/1e6, "cpu-ms/tick")
		b.ReportMetric(float64(procStatus(b, pid, "VmHWM:"))/(1<<20), "peak-RSS-MiB")
		b.ReportMetric(float64(procStatus(b, pid, "VmRSS:"))/(1<<20), "RSS-MiB")
	})
}

// procCPU returns the user+system CPU time of process pid.
func procCPU(b *testing.B, pid int) time.Duration {
	b.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// Fields after the command (which is in parentheses): state is field 3,
	// utime field 14, stime field 15, in clock ticks of 1/100 s.
	rest := string(data[strings.LastIndexByte(string(data), ')')+2:])
	f := strings.Fields(rest)
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// procStatus returns a "kB" field of /proc/pid/status, in bytes.
func procStatus(b *testing.B, pid int, field string) int64 {
	b.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, field); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// listOnly is a Proxmox whose resource list is prebuilt: it isolates the
// loop's own cost per tick from the client's HTTP and JSON decoding.
type listOnly struct {
	*fakePVE
	vms []pve.VMEntry
}

func (l *listOnly) ListVMs(ctx context.Context) ([]pve.VMEntry, error) {
	out := make([]pve.VMEntry, len(l.vms))
	copy(out, l.vms)
	return out, nil
}

// BenchmarkTickLoopOnly is one unchanged tick over 10,000 sandboxes without
// the Proxmox client: the reconcile loop's and the store's own share.
func BenchmarkTickLoopOnly(b *testing.B) {
	const n = 10000
	now := time.Now().UTC().Truncate(time.Second)
	f := newFakePVE()
	for i := range n {
		addSandbox(b, f, sandbox{vmid: 10000 + i, created: now, ttl: 24 * time.Hour, token: "t"})
	}
	vms, _ := f.ListVMs(context.Background())
	p := &listOnly{fakePVE: f, vms: vms}
	clk := clock.NewFake(now)
	db := sqlite.New(filepath.Join(b.TempDir(), "reaper.db"))
	db.Now = clk.Now
	if err := db.Open(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	loop := New(p, db, Options{Clock: clk, WarnBefore: 5 * time.Minute})
	ctx := context.Background()
	if err := loop.Tick(ctx); err != nil {
		b.Fatal(err)
	}
	reads := f.count("config")
	cpu0 := cpuTime()
	b.ResetTimer()
	for range b.N {
		clk.Advance(30 * time.Second)
		if err := loop.Tick(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N)/1e6, "cpu-ms/tick")
	if got := f.count("config"); got != reads {
		b.Fatalf("config reads in steady ticks = %d; want 0", got-reads)
	}
}

// doneHandler is a slog handler that sends the VMID of every "destroy done"
// decision the loop logs.
type doneHandler struct{ done chan int }

func (h doneHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h doneHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h doneHandler) WithGroup(string) slog.Handler            { return h }
func (h doneHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Message != "sandbox "+string(reaper.KindDestroy) {
		return nil
	}
	vmid, done := 0, false
	r.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "vmid":
			vmid = int(a.Value.Int64())
		case "decision":
			done = a.Value.String() == string(reaper.DecisionDone)
		}
		return true
	})
	if done {
		h.done <- vmid
	}
	return nil
}

func BenchmarkExpiryToDestroy(b *testing.B) {
	sim := startSimProcess(b, "--latency", "realistic")
	api := &reapertest.PVE{Endpoint: sim.Endpoint, Token: sim.Token, HTTP: &http.Client{}, PollEvery: 50 * time.Millisecond}
	const interval = time.Second
	destroyed := make(chan int, 16)
	loop, _, db := newBenchLoop(b, sim, clock.Real{}, interval, slog.New(doneHandler{destroyed}))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = loop.Run(ctx)
	}()
	b.Cleanup(func() { cancel(); <-done })

	var total time.Duration
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		vmid := 5000 + i
		// The lease outlives the clone and the start (about 3 s with this
		// latency model), then expires.
		m, err := api.Create(context.Background(), reapertest.Sandbox{VMID: vmid, Created: time.Now(), TTL: 5 * time.Second, Start: true})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if got := <-destroyed; got != vmid {
			b.Fatalf("destroyed vm %d; want %d", got, vmid)
		}
		evs, err := db.Events(context.Background(), reaper.EventFilter{VMID: vmid})
		if err != nil || len(evs) == 0 {
			b.Fatalf("events of %d: %v, %v", vmid, evs, err)
		}
		last := evs[len(evs)-1]
		if last.Kind != reaper.KindDestroy || last.Decision != reaper.DecisionDone {
			b.Fatalf("last event of %d = %+v; want destroy done", vmid, last)
		}
		total += last.Time.Sub(m.ExpiresAt)
		if ok, _ := api.Exists(context.Background(), vmid); ok {
			b.Fatalf("vm %d still exists after its destroy event", vmid)
		}
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "expiry-to-destroyed-ms")
	b.ReportMetric(interval.Seconds()*1000, "interval-ms")
}
