package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/agentlab/terraform-provider-agentlab/internal/job"
)

// Jobs holds the job registry's metrics; *Jobs is a jobs.Metrics. Its
// methods are safe for concurrent use.
type Jobs struct {
	jobs          *prometheus.GaugeVec
	duration      *prometheus.HistogramVec
	artifactBytes prometheus.Counter
	artifacts     prometheus.Counter
}

// NewJobs registers the job metrics in m's registry. Call it once per m.
func NewJobs(m *Metrics) *Jobs {
	j := &Jobs{
		jobs: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "agentlab_jobs",
			Help: "Jobs the reaper keeps, by status.",
		}, []string{"status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "agentlab_job_duration_seconds",
			Help:    "Time from a job's registration to its end, by end status.",
			Buckets: []float64{5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 43200, 86400},
		}, []string{"status"}),
		artifactBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "agentlab_artifact_bytes_total",
			Help: "Bytes of artifacts uploaded and kept.",
		}),
		artifacts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "agentlab_artifacts_total",
			Help: "Artifacts uploaded and kept.",
		}),
	}
	for _, s := range job.Statuses() {
		j.jobs.WithLabelValues(string(s))
		if s.Ended() {
			j.duration.WithLabelValues(string(s))
		}
	}
	m.registry.MustRegister(j.jobs, j.duration, j.artifactBytes, j.artifacts)
	return j
}

// SetJobs sets the job gauge from counts by status; missing statuses are 0.
func (j *Jobs) SetJobs(counts map[job.Status]int) {
	for _, s := range job.Statuses() {
		j.jobs.WithLabelValues(string(s)).Set(float64(counts[s]))
	}
}

// JobEnded observes the duration of a job that ended with status s.
func (j *Jobs) JobEnded(s job.Status, d time.Duration) {
	j.duration.WithLabelValues(string(s)).Observe(d.Seconds())
}

// ArtifactBytes counts an artifact of n bytes.
func (j *Jobs) ArtifactBytes(n int64) {
	j.artifactBytes.Add(float64(n))
	j.artifacts.Inc()
}

// WatchWorkspaces registers agentlab_workspaces_attached, read at each
// scrape from count (the sandboxes with a workspace volume attached, as the
// reaper last saw them). Call it once.
func (j *Jobs) WatchWorkspaces(m *Metrics, count func() int) {
	m.registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "agentlab_workspaces_attached",
		Help: "Sandboxes with a workspace volume attached, as of the last reconcile tick.",
	}, func() float64 { return float64(count()) }))
}
