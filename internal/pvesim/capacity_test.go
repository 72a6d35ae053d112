package pvesim_test

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/agentlab/terraform-provider-agentlab/internal/pvesim"
	"github.com/agentlab/terraform-provider-agentlab/internal/pvesim/pvesimtest"
)

// parallel sends n copies of the same request at once and returns their
// answers (status 0: the connection was closed without an answer) and the
// wall time until the last one finished.
func parallel(t *testing.T, sim *pvesimtest.Sim, n int, method, path string) ([]int, time.Duration) {
	t.Helper()
	codes := make([]int, n)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequestWithContext(context.Background(), method, sim.URL+path, nil)
			req.Header.Set("Authorization", sim.AuthHeader())
			resp, err := sim.Client.Do(req)
			if err != nil {
				return // codes[i] stays 0
			}
			resp.Body.Close()
			codes[i] = resp.StatusCode
		}()
	}
	wg.Wait()
	return codes, time.Since(start)
}

// TestCapacityQueues checks the worker pools: N calls of service time S on
// N workers take one S, N+1 take two, and the waiting call is the peak
// queue depth. Calls of the other pool do not queue behind them.
func TestCapacityQueues(t *testing.T) {
	const S = 400 * time.Millisecond
	const N = 3
	for _, tc := range []struct {
		name, method, path string
	}{
		{"pveproxy (plain read)", "GET", "/version"},
		{"pvedaemon (protected read)", "GET", "/nodes/pve/qemu/9000/status/current"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sim := pvesimtest.Start(t, func(o *pvesim.Options) {
				o.Latency.Workers = pvesim.Workers{Proxy: N, Daemon: N}
				o.Latency.Service = pvesim.Service{Read: S, ConfigRead: S}
			})
			codes, took := parallel(t, sim, N, tc.method, tc.path)
			if took >= 2*S-S/4 {
				t.Errorf("%d calls on %d workers took %v; want about one service time (%v)", N, N, took, S)
			}
			if got := sim.Server.PeakQueueDepth(); got != 0 {
				t.Errorf("peak queue after %d calls = %d; want 0", N, got)
			}
			codes, took = parallel(t, sim, N+1, tc.method, tc.path)
			if took < 2*S {
				t.Errorf("%d calls on %d workers took %v; want at least two service times (%v)", N+1, N, took, 2*S)
			}
			for i, c := range codes {
				if c != 200 {
					t.Errorf("call %d = %d; want 200", i, c)
				}
			}
			st := sim.Server.Stats()
			if st.PeakQueueDepth != 1 || sim.Server.PeakQueueDepth() != 1 {
				t.Errorf("peak queue = %d (stats %d); want 1", sim.Server.PeakQueueDepth(), st.PeakQueueDepth)
			}
			pool := pvesim.PoolProxy
			if tc.method == "GET" && tc.path != "/version" {
				pool = pvesim.PoolDaemon
			}
			if st.PeakQueueByPool[pool] != 1 {
				t.Errorf("peak queue by pool = %v; want 1 on %s", st.PeakQueueByPool, pool)
			}
		})
	}
}

func TestCapacityPoolsAreSeparate(t *testing.T) {
	const S = 400 * time.Millisecond
	sim := pvesimtest.Start(t, func(o *pvesim.Options) {
		o.Latency.Workers = pvesim.Workers{Proxy: 1, Daemon: 1}
		o.Latency.Service = pvesim.Service{Read: S, ConfigRead: S}
	})
	var wg sync.WaitGroup
	start := time.Now()
	for _, p := range []string{"/version", "/nodes/pve/qemu/9000/status/current"} {
		wg.Add(1)
		go func() { defer wg.Done(); do(t, sim, "GET", p, "", "") }()
	}
	wg.Wait()
	if took := time.Since(start); took >= 2*S-S/4 {
		t.Errorf("a pveproxy and a pvedaemon call took %v together; want one service time (%v): separate pools", took, S)
	}
	if got := sim.Server.PeakQueueDepth(); got != 0 {
		t.Errorf("peak queue = %d; want 0", got)
	}
}

// TestCapacitySaturation checks the errors of a saturated node: a call that
// waits longer than the queue timeout gets 596, one past the queue limit has
// its connection closed.
func TestCapacitySaturation(t *testing.T) {
	t.Run("queue timeout", func(t *testing.T) {
		sim := pvesimtest.Start(t, func(o *pvesim.Options) {
			o.Latency.Workers = pvesim.Workers{Proxy: 1, Daemon: 1}
			o.Latency.Service = pvesim.Service{ConfigRead: time.Second}
			o.Latency.QueueTimeout = 50 * time.Millisecond
		})
		codes, _ := parallel(t, sim, 2, "GET", "/nodes/pve/qemu/9000/status/current")
		if !(codes[0] == 200 && codes[1] == 596 || codes[0] == 596 && codes[1] == 200) {
			t.Errorf("answers = %v; want one 200 and one 596", codes)
		}
		if got := sim.Server.Stats().Faults[pvesim.FaultQueueTimeout]; got != 1 {
			t.Errorf("queue timeouts = %d; want 1", got)
		}
	})
	t.Run("queue limit", func(t *testing.T) {
		sim := pvesimtest.Start(t, func(o *pvesim.Options) {
			o.Latency.Workers = pvesim.Workers{Proxy: 1, Daemon: 1}
			o.Latency.Service = pvesim.Service{Read: time.Second}
			o.Latency.QueueLimit = 1
		})
		codes, _ := parallel(t, sim, 3, "GET", "/version")
		ok, dropped := 0, 0
		for _, c := range codes {
			switch c {
			case 200:
				ok++
			case 0:
				dropped++
			}
		}
		if ok != 2 || dropped != 1 {
			t.Errorf("answers = %v; want two 200 and one connection closed without an answer", codes)
		}
		if got := sim.Server.Stats().Faults[pvesim.FaultQueueFull]; got != 1 {
			t.Errorf("queue-full refusals = %d; want 1", got)
		}
	})
}

// TestCapacityZeroModelUnbounded: the zero model never queues.
func TestCapacityZeroModelUnbounded(t *testing.T) {
	sim := pvesimtest.Start(t)
	codes, _ := parallel(t, sim, 50, "GET", "/version")
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
