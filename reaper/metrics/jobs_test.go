package metrics

import (
	"testing"
	"time"

	"github.com/agentlab/terraform-provider-agentlab/internal/job"
)

func TestJobs(t *testing.T) {
	m := New("test")
	j := NewJobs(m)
	j.SetJobs(map[job.Status]int{job.StatusRunning: 2, job.StatusSucceeded: 1})
	j.JobEnded(job.StatusSucceeded, 42*time.Second)
	j.ArtifactBytes(1000)
	j.ArtifactBytes(24)
	j.WatchWorkspaces(m, func() int { return 3 })
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range fams {
		for _, mt := range f.GetMetric() {
			key := f.GetName()
			for _, l := range mt.GetLabel() {
				key += "{" + l.GetValue() + "}"
			}
			switch {
			case mt.Gauge != nil:
				got[key] = mt.GetGauge().GetValue()
			case mt.Counter != nil:
				got[key] = mt.GetCounter().GetValue()
			case mt.Histogram != nil:
				got[key] = float64(mt.GetHistogram().GetSampleCount())
			}
		}
	}
	for key, want := range map[string]float64{
		"agentlab_jobs{running}":                   2,
		"agentlab_jobs{succeeded}":                 1,
		"agentlab_jobs{lost}":                      0,
		"agentlab_artifact_bytes_total":            1024,
		"agentlab_artifacts_total":                 2,
		"agentlab_job_duration_seconds{succeeded}": 1,
		"agentlab_job_duration_seconds{timed_out}": 0,
	} {
		if v, ok := got[key]; !ok || v != want {
			t.Errorf("%s = %v (present %v); want %v", key, v, ok, want)
		}
	}
}
