package pve

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestAgentPollDelay(t *testing.T) {
	tests := []struct {
		name                string
		elapsed, prev, boot time.Duration
		up                  bool
		want                time.Duration
	}{
		{"no boot seen: first", 0, 0, 0, false, agentPollMin},
		{"no boot seen: backs off", time.Second, time.Second, 0, false, 1500 * time.Millisecond},
		{"no boot seen: capped", time.Minute, 4 * time.Second, 0, false, agentPollMax},
		{"no boot seen, agent up: paced to the time waited", 20 * time.Second, 5 * time.Second, 0, true, time.Second},
		{"no boot seen, agent up: at least the minimum", time.Second, 5 * time.Second, 0, true, agentPollMin},
		{"boot seen: up to the lead", time.Second, 0, 25 * time.Second, false, 24 * time.Second},
		{"boot seen: past the lead", 25 * time.Second, 0, 25 * time.Second, false, 1250 * time.Millisecond},
		{"boot seen: at least the minimum", 3 * time.Second, 0, time.Second, false, agentPollMin},
		{"boot seen: at most the maximum", 10 * time.Minute, 0, time.Second, true, agentPollMax},
	}
	for _, tt := range tests {
		if got := agentPollDelay(tt.elapsed, tt.prev, tt.boot, tt.up); got != tt.want {
			t.Errorf("%s: got %v; want %v", tt.name, got, tt.want)
		}
	}
}

// TestWaitForIPLimitsColdProbes waits for the addresses of several guests at
// once whose agents do not run yet: at most agentColdProbes of their polls
// are in flight at a time, and each wait still ends with its address.
func TestWaitForIPLimitsColdProbes(t *testing.T) {
	const guests = 6
	var inflight, peak atomic.Int32
	var answered [guests]atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var id int
		if _, err := fmt.Sscanf(r.URL.Path, "/api2/json/nodes/pve/qemu/%d/agent/network-get-interfaces", &id); err != nil {
			t.Errorf("unexpected request %s", r.URL.Path)
			return
		}
		g := &answered[id-100]
		if g.Add(1) <= 3 { // its agent is not up for three polls
			n := inflight.Add(1)
			for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
			}
			time.Sleep(5 * time.Millisecond) // the guest-ping timeout, shortened
			inflight.Add(-1)
			writeRaw(t, w, 500, "QEMU guest agent is not running", `{"data":null}`)
			return
		}
		writeData(w, fmt.Sprintf(`{"result":[{"name":"eth0","ip-addresses":[{"ip-address":"10.77.0.%d","ip-address-type":"ipv4","prefix":16}]}]}`, id-99))
	}))
	t.Cleanup(srv.Close)
	c, _ := newTestClient(t, srv)
	errs := make(chan error, guests)
	for i := range guests {
		go func() {
			_, err := c.WaitForIP(context.Background(), VMRef{Node: "pve", VMID: 100 + i})
			errs <- err
		}()
	}
	for range guests {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if p := peak.Load(); p > agentColdProbes {
		t.Errorf("got %d polls to guests without agent in flight at once; want at most %d", p, agentColdProbes)
	}
}

// TestWaitForIPPacedToBoot starts guests of a set boot time one after the
// other on one client and waits for their address: once one boot was seen,
// a wait costs a few polls and sees the address at most agentPollFraction
// late. A guest the client did not start is polled at once.
func TestWaitForIPPacedToBoot(t *testing.T) {
	clk := newVirtualClock()
	var bootedAt atomic.Int64 // unix nanoseconds on clk
	var polls atomic.Int32
	const upid = "UPID:pve:00000001:00000001:65000001:qmstart:101:root@pam!test:"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch p := r.URL.Path; {
		case p == "/api2/json/nodes/pve/qemu/101/config":
			writeData(w, `{"net0":"virtio=BC:24:11:00:00:01,bridge=vmbr0","digest":"d"}`)
		case p == "/api2/json/nodes/pve/qemu/101/status/start":
			writeData(w, strconv.Quote(upid))
		case p == "/api2/json/nodes/pve/tasks":
			writeData(w, `[]`)
		case strings.HasPrefix(p, "/api2/json/nodes/pve/tasks/"):
			writeData(w, `{"status":"stopped","exitstatus":"OK"}`)
		case clk.Now().UnixNano() < bootedAt.Load():
			polls.Add(1)
			writeRaw(t, w, 500, "QEMU guest agent is not running", `{"data":null}`)
		default:
			polls.Add(1)
			writeData(w, `{"result":[{"name":"eth0","hardware-address":"bc:24:11:00:00:01","ip-addresses":[{"ip-address":"10.77.0.5","ip-address-type":"ipv4","prefix":16}]}]}`)
		}
	}))
	t.Cleanup(srv.Close)
	c, _ := newTestClient(t, srv, func(cfg *Config) { cfg.Clock = clk })
	ref := VMRef{Node: "pve", VMID: 101}
	shortest := 24 * time.Second
	for i, boot := range []time.Duration{25 * time.Second, 25 * time.Second, 30 * time.Second, shortest, 60 * time.Second, 25 * time.Second} {
		t.Run(fmt.Sprintf("%d-%v", i, boot), func(t *testing.T) {
			start := clk.Now()
			bootedAt.Store(start.Add(boot).UnixNano())
			if err := c.Start(context.Background(), ref); err != nil {
				t.Fatal(err)
			}
			polls.Store(0)
			if _, err := c.WaitForIP(context.Background(), ref); err != nil {
				t.Fatal(err)
			}
			late := clk.Now().Sub(start) - boot
			n := int(polls.Load())
			t.Logf("boot %v: %d polls, %v late", boot, n, late)
			if i == 0 {
				if n > 12 || late > agentPollMax {
					t.Errorf("first boot: got %d polls, %v late; want at most 12 polls and %v late", n, late, agentPollMax)
				}
				return
			}
			if bound := time.Duration(float64(boot) * agentPollFraction * 1.05); late < 0 || late > bound {
				t.Errorf("got the address %v late; want within [0, %v]", late, bound)
			}
			// one poll at the lead (agentBootLead of the shortest boot seen), then
			// growing by agentPollFraction
			lead := float64(shortest) * agentBootLead
			if limit := 3 + int(math.Log(float64(boot)/lead)/math.Log1p(agentPollFraction)); n > limit {
				t.Errorf("got %d polls; want at most %d", n, limit)
			}
		})
	}
	// a guest this client did not start: polled at once
	bootedAt.Store(clk.Now().UnixNano())
	polls.Store(0)
	before := clk.Now()
	if _, err := c.WaitForIP(context.Background(), ref); err != nil {
		t.Fatal(err)
	}
	if n, waited := polls.Load(), clk.Now().Sub(before); n != 1 || waited != 0 {
		t.Errorf("running guest: got %d polls after %v; want 1 at once", n, waited)
	}
}
