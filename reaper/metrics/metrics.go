// Package metrics holds the reaper's Prometheus metrics, kept in a registry
// of their own (never the global one), and the HTTP handler serving them.
// Every name starts with agentlab_.
package metrics

import (
	"net/http"
	"runtime"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/agentlab/terraform-provider-agentlab/reaper"
)

// Metrics is the set of the reaper's metrics. Its methods are safe for
// concurrent use; a nil *Metrics records nothing.
type Metrics struct {
	registry *prometheus.Registry

	sandboxes       *prometheus.GaugeVec
	expired         prometheus.Counter
	destroyed       prometheus.Counter
	stopped         prometheus.Counter
	destroyFailures prometheus.Counter
	tickDuration    prometheus.Histogram
	tickFailures    prometheus.Counter
	lastTick        prometheus.Gauge
	proxmoxRequests *prometheus.CounterVec
	heartbeats      *prometheus.CounterVec
	renewals        *prometheus.CounterVec
	orphans         *prometheus.GaugeVec
	orphansPruned   *prometheus.CounterVec
	volumesDeleted  prometheus.Counter
	seedsRetired    prometheus.Counter
	databaseBytes   prometheus.Gauge
	egressApplies   *prometheus.CounterVec
	egressDropped   *egressDropped
}

// New returns the metrics registered in a new registry, with the Go runtime
// and process collectors and agentlab_build_info for version.
func New(version string) *Metrics {
	m := &Metrics{
		registry: prometheus.NewRegistry(),
		sandboxes: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "agentlab_sandboxes",
			Help: "Sandboxes (VMs with an agentlab tag) by state, as of the last reconcile tick.",
		}, []string{"state"}),
		expired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "agentlab_leases_expired_total",
			Help: "Leases found expired past their grace period.",
		}),
		destroyed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "agentlab_sandboxes_destroyed_total",
			Help: "Sandboxes destroyed because their lease expired.",
		}),
		stopped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "agentlab_sandboxes_stopped_total",
			Help: "Sandboxes stopped because their lease expired with on_expiry = stop.",
		}),
		destroyFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "agentlab_destroy_failures_total",
			Help: "Failed attempts to destroy or stop an expired sandbox (retried on later ticks).",
		}),
		tickDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "agentlab_reconcile_tick_duration_seconds",
			Help:    "Duration of reconcile ticks, actions included.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}),
		tickFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "agentlab_reconcile_tick_failures_total",
			Help: "Reconcile ticks that could not list the cluster's VMs.",
		}),
		lastTick: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "agentlab_last_successful_tick_timestamp_seconds",
			Help: "Unix time of the end of the last successful reconcile tick.",
		}),
		proxmoxRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentlab_proxmox_requests_total",
			Help: "HTTP requests to the Proxmox VE API by method and status code (code \"error\" when no answer came).",
		}, []string{"method", "code"}),
		heartbeats: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentlab_heartbeats_total",
			Help: "Heartbeats from sandboxes by result (ok, capped, unauthorized, rejected, error); requests refused for their rate (429) are not counted.",
		}, []string{"result"}),
		renewals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentlab_renewals_total",
			Help: "Lease renewals through the control API by result (ok, capped, rejected, error).",
		}, []string{"result"}),
		orphans: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "agentlab_orphans",
			Help: "Orphans found by kind: untagged (AgentLab metadata, no agentlab tag), placeholder (interrupted clone), iso (seed ISO without its VM).",
		}, []string{"kind"}),
		orphansPruned: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentlab_orphans_pruned_total",
			Help: "Orphans removed by prune, by kind.",
		}, []string{"kind"}),
		volumesDeleted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "agentlab_seed_isos_deleted_total",
			Help: "Seed ISOs of destroyed sandboxes deleted by the reaper.",
		}),
		seedsRetired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "agentlab_seed_isos_retired_total",
			Help: "Seed ISOs the reaper ejected and deleted once their guest had booted (boot report, first heartbeat or job runner call).",
		}),
		databaseBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "agentlab_database_bytes",
			Help: "Size of the reaper's SQLite database on disk (file and write-ahead log), measured hourly.",
		}),
		egressApplies: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentlab_egress_applies_total",
			Help: "Applications of the nftables egress table by result: ok, error, drift (the loaded table was not as rendered and was applied again).",
		}, []string{"result"}),
		egressDropped: newEgressDropped(),
	}
	buildInfo := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "agentlab_build_info",
		Help:        "Build information of agentlab-reaper; the value is always 1.",
		ConstLabels: prometheus.Labels{"version": version, "goversion": runtime.Version()},
	})
	buildInfo.Set(1)
	for _, s := range reaper.States() {
		m.sandboxes.WithLabelValues(string(s))
	}
	for _, k := range reaper.OrphanKinds() {
		m.orphans.WithLabelValues(string(k))
		m.orphansPruned.WithLabelValues(string(k))
	}
	m.registry.MustRegister(
		m.sandboxes, m.expired, m.destroyed, m.stopped, m.destroyFailures, m.tickDuration,
		m.tickFailures, m.lastTick, m.proxmoxRequests, m.heartbeats, m.renewals, buildInfo,
		m.orphans, m.orphansPruned, m.volumesDeleted, m.seedsRetired, m.databaseBytes, m.egressApplies, m.egressDropped,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// Registry returns the registry holding the metrics.
func (m *Metrics) Registry() *prometheus.Registry { return m.registry }

// Handler serves the metrics in the Prometheus exposition formats.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{Registry: m.registry})
}

// SetSandboxes sets the sandbox gauge from counts by state; states missing
// from counts are set to zero.
func (m *Metrics) SetSandboxes(counts map[reaper.State]int) {
	if m == nil {
		return
	}
	for _, s := range reaper.States() {
		m.sandboxes.WithLabelValues(string(s)).Set(float64(counts[s]))
	}
}

// Expired counts a lease found expired past its grace period.
func (m *Metrics) Expired() {
	if m != nil {
		m.expired.Inc()
	}
}

// Destroyed counts a sandbox destroyed.
func (m *Metrics) Destroyed() {
	if m != nil {
		m.destroyed.Inc()
	}
}

// Stopped counts a sandbox stopped on expiry.
func (m *Metrics) Stopped() {
	if m != nil {
		m.stopped.Inc()
	}
}

// DestroyFailed counts a failed destroy or stop.
func (m *Metrics) DestroyFailed() {
	if m != nil {
		m.destroyFailures.Inc()
	}
}

// Tick records a reconcile tick that took d; ok says whether it could list
// the VMs, end is when it finished.
func (m *Metrics) Tick(d time.Duration, ok bool, end time.Time) {
	if m == nil {
		return
	}
	m.tickDuration.Observe(d.Seconds())
	if ok {
		m.lastTick.Set(float64(end.UnixNano()) / 1e9)
	} else {
		m.tickFailures.Inc()
	}
}

// Heartbeat counts a heartbeat with its result.
func (m *Metrics) Heartbeat(result string) {
	if m != nil {
		m.heartbeats.WithLabelValues(result).Inc()
	}
}

// Renewal counts a control-API renewal with its result.
func (m *Metrics) Renewal(result string) {
	if m != nil {
		m.renewals.WithLabelValues(result).Inc()
	}
}

// RoundTripper wraps next so that every request to the Proxmox VE API is
// counted in agentlab_proxmox_requests_total by method and status code.
func (m *Metrics) RoundTripper(next http.RoundTripper) http.RoundTripper {
	if m == nil {
		return next
	}
	return roundTripper{next: next, requests: m.proxmoxRequests}
}

type roundTripper struct {
	next     http.RoundTripper
	requests *prometheus.CounterVec
}

func (rt roundTripper) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := rt.next.RoundTrip(r)
	code := "error"
	if err == nil {
		code = strconv.Itoa(resp.StatusCode)
	}
	rt.requests.WithLabelValues(r.Method, code).Inc()
	return resp, err
}

// SetOrphans sets the orphan gauge from counts by kind; kinds missing from
// counts are set to zero.
func (m *Metrics) SetOrphans(counts map[reaper.OrphanKind]int) {
	if m == nil {
		return
	}
	for _, k := range reaper.OrphanKinds() {
		m.orphans.WithLabelValues(string(k)).Set(float64(counts[k]))
	}
}

// OrphanPruned counts an orphan prune removed.
func (m *Metrics) OrphanPruned(kind reaper.OrphanKind) {
	if m != nil {
		m.orphansPruned.WithLabelValues(string(kind)).Inc()
	}
}

// VolumeDeleted counts a seed ISO deleted with its sandbox.
func (m *Metrics) VolumeDeleted() {
	if m != nil {
		m.volumesDeleted.Inc()
	}
}

// SeedRetired counts a seed ISO ejected and deleted after its guest booted.
func (m *Metrics) SeedRetired() {
	if m != nil {
		m.seedsRetired.Inc()
	}
}

// DatabaseSize sets the database size gauge.
func (m *Metrics) DatabaseSize(bytes int64) {
	if m != nil {
		m.databaseBytes.Set(float64(bytes))
	}
}
