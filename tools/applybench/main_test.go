package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentlab/terraform-provider-agentlab/internal/pvesim"
	"github.com/agentlab/terraform-provider-agentlab/internal/tfcli"
	"github.com/agentlab/terraform-provider-agentlab/tools/internal/routes"
)

// testedRequests is the most API requests a sandbox may cost in
// TestRequestBudget: what it measures (30.0 when it was set, 30.9 in the
// 50-sandbox benchmark) and a margin of about a tenth, well inside the
// issue's budget of requestBudget.
const testedRequests = 33

// TestRequestBudget applies and destroys thirty sandboxes (wait_for_ip, ten at a time) with
// the real terraform and the provider built from this tree, against the
// simulator's realistic model sped up, and fails when a sandbox costs more
// than testedRequests API requests. Speeding the model up never lowers the
// count: the pollers' floors do not shrink with it.
func TestRequestBudget(t *testing.T) {
	if os.Getenv("TF_ACC") == "" {
		t.Skip("builds the provider and runs terraform: set TF_ACC=1 (make test does)")
	}
	tf, err := tfcli.Find(os.Getenv("TF_ACC_TERRAFORM_PATH"))
	if err != nil {
		t.Skip(err)
	}
	dir := t.TempDir()
	build := exec.Command("go", "build", "-o", filepath.Join(dir, "terraform-provider-agentlab"), "../..")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build the provider: %v\n%s", err, out)
	}
	const n = 30
	o := options{providerDir: dir, terraform: tf, n: n, parallelism: 10}
	res, err := applyOnce(o, n, pvesim.RealisticLatency().Scaled(0.5))
	if err != nil {
		t.Fatal(err)
	}
	stats := res.stats
	per := float64(total(stats)) / n
	var sb strings.Builder
	routes.Write(&sb, stats, n)
	t.Logf("%.1f requests per sandbox:\n%s", per, sb.String())
	if per > testedRequests {
		t.Errorf("got %.1f API requests per sandbox (create with wait_for_ip, destroy); want at most %d", per, testedRequests)
	}
}
