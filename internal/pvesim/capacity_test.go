package pvesim_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/agentlab/terraform-provider-agentlab/internal/clock"
	"github.com/agentlab/terraform-provider-agentlab/internal/pvesim"
	"github.com/agentlab/terraform-provider-agentlab/internal/pvesim/pvesimtest"
)

// calls sends n copies of the same request at once; the channel receives
// each answer's status as it comes (0: the connection was closed without an
// answer).
func calls(t *testing.T, sim *pvesimtest.Sim, n int, method, path string) <-chan int {
	t.Helper()
	codes := make(chan int, n)
	for range n {
		go func() {
			req, _ := http.NewRequestWithContext(context.Background(), method, sim.URL+path, nil)
			req.Header.Set("Authorization", sim.AuthHeader())
			resp, err := sim.Client.Do(req)
			if err != nil {
				codes <- 0
				return
			}
			resp.Body.Close()
			codes <- resp.StatusCode
		}()
	}
	return codes
}

// answers receives n answers from calls. The calls wait on a fake clock, so
// a missing answer is a bug, not a slow machine: the time limit only turns
// a hang into a message.
func answers(t *testing.T, codes <-chan int, n int) []int {
	t.Helper()
	var got []int
	for range n {
		select {
		case c := <-codes:
			got = append(got, c)
		case <-time.After(time.Minute):
			t.Fatalf("got %d answers %v; want %d", len(got), got, n)
		}
	}
	return got
}

// noAnswer fails when one of the calls has answered already.
func noAnswer(t *testing.T, codes <-chan int, why string) {
	t.Helper()
	select {
	case c := <-codes:
		t.Fatalf("a call answered %d; want none yet: %s", c, why)
	default:
	}
}

// waitTimers waits until n of the simulator's waits are due within d on the
// fake clock (d < 0: n waits of any length), i.e. until the calls under
// test hold a worker or queue for one.
func waitTimers(t *testing.T, fake *clock.Fake, n int, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var err error
	if d < 0 {
		err = fake.BlockUntil(ctx, n)
	} else {
		err = fake.BlockUntilDue(ctx, n, d)
	}
	if err != nil {
		t.Fatalf("%d waits on the clock (due within %v); want %d: %v", fake.Pending(), d, n, err)
	}
}

// startFake starts a simulator whose capacity model waits on a fake clock.
func startFake(t *testing.T, mod func(*pvesim.Options)) (*pvesimtest.Sim, *clock.Fake) {
	fake := clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	sim := pvesimtest.Start(t, func(o *pvesim.Options) {
		o.Timers = fake
		mod(o)
	})
	return sim, fake
}

func allOK(t *testing.T, codes []int) {
	t.Helper()
	for i, c := range codes {
		if c != 200 {
			t.Errorf("answer %d = %d; want 200", i, c)
		}
	}
}

// TestCapacityQueues checks the worker pools on a fake clock: N calls of
// service time S on N workers all hold a worker at once and answer after
// one S; of N+1 calls, one waits in the queue (the peak queue depth) and
// answers one S after the others. Calls of the other pool do not queue
// behind them.
func TestCapacityQueues(t *testing.T) {
	const S = 400 * time.Millisecond
	const N = 3
	for _, tc := range []struct {
		name, method, path, pool string
	}{
		{"pveproxy (plain read)", "GET", "/version", pvesim.PoolProxy},
		{"pvedaemon (protected read)", "GET", "/nodes/pve/qemu/9000/status/current", pvesim.PoolDaemon},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sim, fake := startFake(t, func(o *pvesim.Options) {
				o.Latency.Workers = pvesim.Workers{Proxy: N, Daemon: N}
				o.Latency.Service = pvesim.Service{Read: S, ConfigRead: S}
			})
			codes := calls(t, sim, N, tc.method, tc.path)
			waitTimers(t, fake, N, S) // all N in service at once
			if got := sim.Server.PeakQueueDepth(); got != 0 {
				t.Errorf("peak queue with %d calls on %d workers = %d; want 0", N, N, got)
			}
			noAnswer(t, codes, "no service time has passed")
			fake.Advance(S)
			allOK(t, answers(t, codes, N))

			codes = calls(t, sim, N+1, tc.method, tc.path)
			// N service times and one queue timeout: one call waits.
			waitTimers(t, fake, N+1, -1)
			fake.Advance(S)
			allOK(t, answers(t, codes, N))
			// The waiting call took a freed worker and serves its own S.
			waitTimers(t, fake, 1, S)
			noAnswer(t, codes, "the queued call has served no time yet")
			fake.Advance(S)
			allOK(t, answers(t, codes, 1))

			st := sim.Server.Stats()
			if st.PeakQueueDepth != 1 || sim.Server.PeakQueueDepth() != 1 {
				t.Errorf("peak queue = %d (stats %d); want 1", sim.Server.PeakQueueDepth(), st.PeakQueueDepth)
			}
			if st.PeakQueueByPool[tc.pool] != 1 {
				t.Errorf("peak queue by pool = %v; want 1 on %s", st.PeakQueueByPool, tc.pool)
			}
			if got := fake.Pending(); got != 0 {
				t.Errorf("%d waits left on the clock; want 0 (the queue timeout stopped)", got)
			}
		})
	}
}

func TestCapacityPoolsAreSeparate(t *testing.T) {
	const S = 400 * time.Millisecond
	sim, fake := startFake(t, func(o *pvesim.Options) {
		o.Latency.Workers = pvesim.Workers{Proxy: 1, Daemon: 1}
		o.Latency.Service = pvesim.Service{Read: S, ConfigRead: S}
	})
	proxy := calls(t, sim, 1, "GET", "/version")
	daemon := calls(t, sim, 1, "GET", "/nodes/pve/qemu/9000/status/current")
	waitTimers(t, fake, 2, S) // both in service at once: separate pools
	if got := sim.Server.PeakQueueDepth(); got != 0 {
		t.Errorf("peak queue = %d; want 0", got)
	}
	fake.Advance(S)
	allOK(t, append(answers(t, proxy, 1), answers(t, daemon, 1)...))
}

// TestCapacitySaturation checks the errors of a saturated node: a call that
// waits longer than the queue timeout gets 596, one past the queue limit has
// its connection closed.
func TestCapacitySaturation(t *testing.T) {
	t.Run("queue timeout", func(t *testing.T) {
		sim, fake := startFake(t, func(o *pvesim.Options) {
			o.Latency.Workers = pvesim.Workers{Proxy: 1, Daemon: 1}
			o.Latency.Service = pvesim.Service{ConfigRead: time.Second}
			o.Latency.QueueTimeout = 50 * time.Millisecond
		})
		codes := calls(t, sim, 2, "GET", "/nodes/pve/qemu/9000/status/current")
		waitTimers(t, fake, 2, -1) // one in service, one queued
		fake.Advance(50 * time.Millisecond)
		if got := answers(t, codes, 1); got[0] != 596 {
			t.Errorf("first answer = %d; want 596 for the call that queued past the timeout", got[0])
		}
		fake.Advance(time.Second)
		allOK(t, answers(t, codes, 1))
		if got := sim.Server.Stats().Faults[pvesim.FaultQueueTimeout]; got != 1 {
			t.Errorf("queue timeouts = %d; want 1", got)
		}
	})
	t.Run("queue limit", func(t *testing.T) {
		sim, fake := startFake(t, func(o *pvesim.Options) {
			o.Latency.Workers = pvesim.Workers{Proxy: 1, Daemon: 1}
			o.Latency.Service = pvesim.Service{Read: time.Second}
			o.Latency.QueueLimit = 1
		})
		codes := calls(t, sim, 3, "GET", "/version")
		// One in service, one queued: the third is refused before any time passes.
		if got := answers(t, codes, 1); got[0] != 0 {
			t.Errorf("first answer = %d; want the connection closed without an answer", got[0])
		}
		waitTimers(t, fake, 2, -1)
		fake.Advance(time.Second)
		allOK(t, answers(t, codes, 1))
		waitTimers(t, fake, 1, time.Second)
		fake.Advance(time.Second)
		allOK(t, answers(t, codes, 1))
		if got := sim.Server.Stats().Faults[pvesim.FaultQueueFull]; got != 1 {
			t.Errorf("queue-full refusals = %d; want 1", got)
		}
	})
}

// TestCapacityZeroModelUnbounded: the zero model never queues.
func TestCapacityZeroModelUnbounded(t *testing.T) {
	sim := pvesimtest.Start(t)
	codes := answers(t, calls(t, sim, 50, "GET", "/version"), 50)
	for i, c := range codes {
		if c != 200 {
			t.Fatalf("call %d = %d; want 200", i, c)
		}
	}
	st := sim.Server.Stats()
	if st.PeakQueueDepth != 0 || st.Total != 50 || st.ByKind[pvesim.KindRead] != 50 {
		t.Errorf("stats = peak %d, total %d, by kind %v; want 0, 50, 50 reads", st.PeakQueueDepth, st.Total, st.ByKind)
	}
}

func TestParseWorkers(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want pvesim.Workers
		err  bool
	}{
		{"3", pvesim.Workers{Proxy: 3, Daemon: 3}, false},
		{"2,5", pvesim.Workers{Proxy: 2, Daemon: 5}, false},
		{"0", pvesim.Workers{}, true},
		{"3,", pvesim.Workers{}, true},
		{"x", pvesim.Workers{}, true},
	} {
		got, err := pvesim.ParseWorkers(tc.in)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("ParseWorkers(%q) = %v, %v; want %v, error %v", tc.in, got, err, tc.want, tc.err)
		}
	}
}

// TestTaskListArchiveCost: a task list that reads the archive (source
// archive or all) costs its plain read plus TaskArchiveEntry per archived
// task, as PVE parses the whole archive on every such call; the active list
// costs the plain read alone.
func TestTaskListArchiveCost(t *testing.T) {
	const S, E = 100 * time.Millisecond, 10 * time.Millisecond
	for _, tc := range []struct {
		source string
		extra  time.Duration
	}{
		{"active", 0},
		{"archive", 2 * E},
		{"all", 2 * E},
	} {
		t.Run(tc.source, func(t *testing.T) {
			sim, fake := startFake(t, func(o *pvesim.Options) {
				o.Latency.Workers = pvesim.Workers{Proxy: 1, Daemon: 1}
				o.Latency.Service = pvesim.Service{Read: S, TaskArchiveEntry: E}
			})
			// Two finished tasks (zero task durations run inline).
			for range 2 {
				allOK(t, answers(t, calls(t, sim, 1, "POST", "/nodes/pve/qemu/9000/status/start"), 1))
			}
			codes := calls(t, sim, 1, "GET", "/nodes/pve/tasks?source="+tc.source)
			waitTimers(t, fake, 1, S)
			noAnswer(t, codes, "no service time has passed")
			fake.Advance(S)
			if tc.extra > 0 {
				waitTimers(t, fake, 1, tc.extra)
				noAnswer(t, codes, "the archive has not been read yet")
				fake.Advance(tc.extra)
			}
			allOK(t, answers(t, codes, 1))
		})
	}
}
