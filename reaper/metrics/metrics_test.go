package metrics

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/agentlab/terraform-provider-agentlab/reaper"
)

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestRoundTripperCountsByCode(t *testing.T) {
	m := New("test")
	codes := []int{200, 200, 500, 596}
	i := 0
	rt := m.RoundTripper(roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if i == len(codes) {
			return nil, errors.New("connection refused")
		}
		c := codes[i]
		i++
		return &http.Response{StatusCode: c, Body: io.NopCloser(strings.NewReader(""))}, nil
	}))
	for range len(codes) + 1 {
		req := httptest.NewRequest(http.MethodGet, "http://pve/api2/json/cluster/resources", nil)
		if resp, err := rt.RoundTrip(req); err == nil {
			resp.Body.Close()
		}
	}
	tests := []struct {
		code string
		want float64
	}{{"200", 2}, {"500", 1}, {"596", 1}, {"error", 1}}
	for _, tt := range tests {
		if got := counterValue(t, m.proxmoxRequests.WithLabelValues("GET", tt.code)); got != tt.want {
			t.Errorf("proxmox requests GET %s = %v; want %v", tt.code, got, tt.want)
		}
	}
}

func TestHandlerExposesAgentlabMetrics(t *testing.T) {
	m := New("v1.2.3")
	m.SetSandboxes(map[reaper.State]int{reaper.StateActive: 3, reaper.StateProtected: 1})
	m.Expired()
	m.Destroyed()
	m.DestroyFailed()
	end := time.Unix(1772366400, 0)
	m.Tick(40*time.Millisecond, true, end)
	m.Heartbeat("ok")
	m.EgressApply("ok")
	m.SetEgressDropped(map[string]uint64{"101": 7, "unknown": 2}, map[string]uint64{"101": 420, "unknown": 120})
	m.SetEgressDropped(map[string]uint64{"101": 9}, map[string]uint64{"101": 540}) // unknown gone from the table

	srv := httptest.NewServer(m.Handler())
	t.Cleanup(srv.Close)
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, want := range []string{
		`agentlab_sandboxes{state="active"} 3`,
		`agentlab_sandboxes{state="protected"} 1`,
		`agentlab_sandboxes{state="invalid"} 0`,
		`agentlab_leases_expired_total 1`,
		`agentlab_sandboxes_destroyed_total 1`,
		`agentlab_destroy_failures_total 1`,
		`agentlab_reconcile_tick_duration_seconds_count 1`,
		`agentlab_last_successful_tick_timestamp_seconds 1.7723664e+09`,
		`agentlab_build_info{goversion="go`,
		`version="v1.2.3"} 1`,
		`agentlab_heartbeats_total{result="ok"} 1`,
		`agentlab_egress_applies_total{result="ok"} 1`,
		`agentlab_egress_dropped_packets_total{vmid="101"} 9`,
		`agentlab_egress_dropped_bytes_total{vmid="101"} 540`,
		`go_goroutines`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if strings.Contains(string(body), `vmid="unknown"`) {
		t.Errorf("/metrics still shows a counter no longer in the table")
	}
}

func TestNilMetricsRecordNothing(t *testing.T) {
	var m *Metrics
	m.SetSandboxes(nil)
	m.Expired()
	m.Destroyed()
	m.Stopped()
	m.DestroyFailed()
	m.Tick(time.Second, false, time.Time{})
	m.Heartbeat("ok")
	m.Renewal("ok")
	m.EgressApply("ok")
	m.SetEgressDropped(nil, nil)
	next := roundTripFunc(func(*http.Request) (*http.Response, error) { return nil, nil })
	if _, ok := m.RoundTripper(next).(roundTripFunc); !ok {
		t.Errorf("nil Metrics.RoundTripper did not return next unchanged")
	}
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var d dto.Metric
	if err := c.Write(&d); err != nil {
		t.Fatal(err)
	}
	return d.GetCounter().GetValue()
}
