package main

import (
	"bytes"
	"context"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/agentlab/terraform-provider-agentlab/internal/tfcli"
	"github.com/agentlab/terraform-provider-agentlab/reaper/reapertest"
)

// TestCampaign runs a few seeded rounds of the crash campaign with the real
// binaries (built here) and the real terraform: nothing may be left but the
// template, and every round must converge. make chaos runs 100 rounds.
func TestCampaign(t *testing.T) {
	if os.Getenv("TF_ACC") == "" {
		t.Skip("crash campaign: set TF_ACC=1 (make test does) to run the real terraform")
	}
	if runtime.GOOS != "linux" {
		t.Skip("crash campaign: finds the provider plugin's process in /proc (Linux only)")
	}
	tf, err := tfcli.Find(os.Getenv("TF_ACC_TERRAFORM_PATH"))
	if err != nil {
		t.Fatal("crash campaign: no terraform: set TF_ACC_TERRAFORM_PATH or put terraform or tofu on PATH")
	}
	bin := t.TempDir()
	for _, pkg := range []string{"", "/cmd/agentlab-pvesim", "/cmd/agentlab-reaper"} {
		reapertest.GoBuild(t, bin, reapertest.Module+pkg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var progress bytes.Buffer
	o := Options{BinDir: bin, Terraform: tf, WorkDir: t.TempDir(), Seed: 20261130, FirstRound: 1,
		Sandboxes: 4, LatencyScale: 1, Progress: &progress}
	rep, err := Run(ctx, o, 3)
	var out bytes.Buffer
	rep.Print(&out)
	t.Logf("progress:\n%s\nreport:\n%s", progress.String(), out.String())
	if err != nil {
		t.Fatal(err)
	}
	if rep.VMs == 0 {
		t.Error("no VM was created: the campaign proved nothing")
	}
	if len(rep.Kills) == 0 {
		t.Error("no kill landed: the campaign proved nothing")
	}
	for reason, n := range rep.Left {
		t.Errorf("%d VMs %s", n, reason)
	}
	for reason, n := range rep.ISOsLeft {
		t.Errorf("%d %s", n, reason)
	}
	for _, f := range rep.Failures {
		t.Errorf("%s", f)
	}
}
