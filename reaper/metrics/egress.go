package metrics

import (
	"maps"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// egressDropped exports the egress filter's nftables counters, which the
// kernel keeps: the metrics mirror the values last read, per sandbox.
type egressDropped struct {
	packetsDesc, bytesDesc *prometheus.Desc

	mu      sync.Mutex
	packets map[string]uint64
	bytes   map[string]uint64
}

func newEgressDropped() *egressDropped {
	return &egressDropped{
		packetsDesc: prometheus.NewDesc("agentlab_egress_dropped_packets_total",
			"Packets from a sandbox dropped by the egress filter (vmid \"unknown\": MACs of no known sandbox), as the nftables counters last read them.",
			[]string{"vmid"}, nil),
		bytesDesc: prometheus.NewDesc("agentlab_egress_dropped_bytes_total",
			"Bytes from a sandbox dropped by the egress filter, as the nftables counters last read them.",
			[]string{"vmid"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (e *egressDropped) Describe(ch chan<- *prometheus.Desc) {
	ch <- e.packetsDesc
	ch <- e.bytesDesc
}

// Collect implements prometheus.Collector.
func (e *egressDropped) Collect(ch chan<- prometheus.Metric) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for id, n := range e.packets {
		ch <- prometheus.MustNewConstMetric(e.packetsDesc, prometheus.CounterValue, float64(n), id)
	}
	for id, n := range e.bytes {
		ch <- prometheus.MustNewConstMetric(e.bytesDesc, prometheus.CounterValue, float64(n), id)
	}
}

// EgressApply counts an application of the egress table by result.
func (m *Metrics) EgressApply(result string) {
	if m != nil {
		m.egressApplies.WithLabelValues(result).Inc()
	}
}

// SetEgressDropped replaces the dropped-packet and -byte counters, by
// sandbox, with the values just read from nftables; sandboxes left out are
// gone from the table and from the metrics.
func (m *Metrics) SetEgressDropped(packets, bytes map[string]uint64) {
	if m == nil {
		return
	}
	m.egressDropped.mu.Lock()
	defer m.egressDropped.mu.Unlock()
	m.egressDropped.packets, m.egressDropped.bytes = maps.Clone(packets), maps.Clone(bytes)
}
