package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentlab/terraform-provider-agentlab/internal/pvesim"
	"github.com/agentlab/terraform-provider-agentlab/internal/tfcli"
)

func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == pvesim.GuestInitArg {
		// The smoke test's simulator runs this test binary as its guests'
		// init, as jobbench runs itself.
		os.Exit(pvesim.GuestInit(os.Args[2:]))
	}
	os.Exit(m.Run())
}

// TestSmoke runs the bench small and fast (two jobs, the zero model, a 1 s
// task) with the real terraform, provider and reaper, so that the tool
// cannot rot: every job must succeed with its artifact's sha256.
func TestSmoke(t *testing.T) {
	if os.Getenv("TF_ACC") == "" {
		t.Skip("builds the provider and the reaper and runs terraform: set TF_ACC=1 (make test does)")
	}
	if err := checkMachine(); err != nil {
		t.Skip(err)
	}
	tf, err := tfcli.Find(os.Getenv("TF_ACC_TERRAFORM_PATH"))
	if err != nil {
		t.Skip(err)
	}
	bin := t.TempDir()
	for _, b := range []struct{ out, pkg string }{
		{"terraform-provider-agentlab", "../.."},
		{"agentlab-reaper", "../../cmd/agentlab-reaper"},
	} {
		build := exec.Command("go", "build", "-o", filepath.Join(bin, b.out), b.pkg)
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", b.pkg, err, out)
		}
	}
	var out strings.Builder
	err = run([]string{"-bin", bin, "-terraform", tf, "-n", "2", "-parallelism", "2", "-latency", "zero", "-task", "1s",
		"-artifact-size", "64KiB"}, &out)
	if err != nil {
		t.Fatalf("run: %v\noutput:\n%s", err, out.String())
	}
	t.Log(out.String())
	for _, want := range []string{"2 succeeded", "critical path: 1s", "ratio to critical path:", "requests per job", "peak queue depth", "where the time went"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the report lacks %q", want)
		}
	}
}

func TestParseOptions(t *testing.T) {
	tests := []struct {
		args []string
		want string // in the error; "" for none
	}{
		{nil, ""},
		{[]string{"-n", "0"}, "-n and -parallelism"},
		{[]string{"-task", "1500ms"}, "whole seconds"},
		{[]string{"-task", "0s"}, "whole seconds"},
		{[]string{"-artifact-size", "1MB"}, "-artifact-size"},
		{[]string{"-latency", "fast"}, "realistic or zero"},
	}
	for _, tt := range tests {
		o, err := parseOptions(tt.args)
		if tt.want == "" {
			if err != nil {
				t.Errorf("parseOptions(%q) = %v; want no error", tt.args, err)
			}
			if _, err := o.model(); err != nil {
				t.Errorf("parseOptions(%q).model() = %v", tt.args, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("parseOptions(%q) = %v; want an error about %q", tt.args, err, tt.want)
		}
	}
	o, _ := parseOptions([]string{"-boot", "never"})
	if _, err := o.model(); err == nil {
		t.Errorf("-boot never: model() = nil; want an error")
	}
}

func TestJobPath(t *testing.T) {
	s := time.Second
	m := pvesim.RealisticLatency() // clone 1.5 s, upload 0.2 s, start 1 s, volume delete 0.2 s
	tests := []struct {
		name       string
		boot, task time.Duration
		want       time.Duration
	}{
		// The runner starts once the guest booted: boot, then the task
		// (the seed's deletion runs alongside it).
		{"boot then task", 25 * s, 10 * s, 2700*time.Millisecond + 25*s + 10*s},
		{"task shorter than the seed's deletion", 25 * s, 100 * time.Millisecond, 2700*time.Millisecond + 25*s + 200*time.Millisecond},
		{"zero model", 0, 3 * s, 3 * s},
	}
	for _, tt := range tests {
		mm := m
		if tt.name == "zero model" {
			mm = pvesim.ZeroLatency()
		}
		if got := jobPath(mm, tt.boot, tt.task); got != tt.want {
			t.Errorf("%s: jobPath = %v; want %v", tt.name, got, tt.want)
		}
	}
}
