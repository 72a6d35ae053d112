package provider

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/providerserver"
	"github.com/hashicorp/terraform-plugin-go/tfprotov6"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"

	"github.com/agentlab/terraform-provider-agentlab/internal/clock"
	"github.com/agentlab/terraform-provider-agentlab/internal/pve"
	"github.com/agentlab/terraform-provider-agentlab/internal/pvesim"
	"github.com/agentlab/terraform-provider-agentlab/internal/pvesim/pvesimtest"
	"github.com/agentlab/terraform-provider-agentlab/internal/tfcli"
)

// TestMain points terraform-plugin-testing at a local terraform (or tofu)
// binary, so acceptance tests never download one.
func TestMain(m *testing.M) {
	if os.Getenv("TF_ACC") != "" {
		if err := setUpAccCLI(context.Background()); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	os.Exit(m.Run())
}

// setUpAccCLI chooses the CLI the acceptance tests drive:
// TF_ACC_TERRAFORM_PATH, else terraform, else tofu on PATH. It asks the
// binary which CLI it is and serves the provider under the address that CLI
// resolves "agentlab/agentlab" to (terraform-plugin-testing reads
// TF_ACC_PROVIDER_HOST and TF_ACC_PROVIDER_NAMESPACE), so every test
// configuration names the provider the way a user's does.
func setUpAccCLI(ctx context.Context) error {
	path, err := tfcli.Find(os.Getenv("TF_ACC_TERRAFORM_PATH"))
	if err != nil {
		return errors.New("acceptance tests need terraform (>= 1.11) or tofu on PATH, or TF_ACC_TERRAFORM_PATH")
	}
	info, err := tfcli.Detect(ctx, path)
	if err != nil {
		return fmt.Errorf("acceptance tests need terraform or tofu (set TF_ACC_TERRAFORM_PATH): %w", err)
	}
	os.Setenv("TF_ACC_TERRAFORM_PATH", path)
	os.Setenv("TF_ACC_PROVIDER_HOST", info.Kind.RegistryHost())
	os.Setenv("TF_ACC_PROVIDER_NAMESPACE", tfcli.Namespace)
	fmt.Fprintf(os.Stderr, "acceptance tests drive %s %s (%s), provider %s\n", info.Kind, info.Version, path, accProviderAddress())
	return nil
}

// accProviderAddress is the address the acceptance tests serve the provider
// under, chosen by setUpAccCLI for the CLI they drive.
func accProviderAddress() string {
	return os.Getenv("TF_ACC_PROVIDER_HOST") + "/" + tfcli.Source
}

// t0 is the fake clock's start for acceptance tests.
var t0 = time.Date(2030, 1, 2, 3, 0, 0, 0, time.UTC)

// accEnv is one acceptance test's world: a simulator, a fake clock for
// leases, a profiles directory and a client to look at the simulator from
// outside Terraform.
type accEnv struct {
	sim      *pvesimtest.Sim
	clock    *clock.Fake
	profiles string
	api      *pve.Client
}

// newAccEnv starts a zero-latency simulator for t.
func newAccEnv(t *testing.T, opts ...func(*pvesim.Options)) *accEnv {
	t.Helper()
	if os.Getenv("TF_ACC") == "" {
		t.Skip("acceptance test: set TF_ACC=1 to run it (make test does)")
	}
	sim := pvesimtest.Start(t, opts...)
	api, err := pve.New(context.Background(), pve.Config{Endpoint: sim.URL, APIToken: sim.Token, HTTPClient: sim.Client})
	if err != nil {
		t.Fatalf("pve client for the simulator: %v", err)
	}
	return &accEnv{sim: sim, clock: clock.NewFake(t0), profiles: t.TempDir(), api: api}
}

// factories serves the provider in-process with the env's fake clock.
func (e *accEnv) factories() map[string]func() (tfprotov6.ProviderServer, error) {
	return map[string]func() (tfprotov6.ProviderServer, error){
		"agentlab": providerserver.NewProtocol6WithError(NewTestProvider(e.clock)),
	}
}

// config returns the terraform block requiring the provider by the short
// source users write, the provider block, and body. The terraform block
// matters for import steps, whose configuration terraform-plugin-testing
// uses as written.
func (e *accEnv) config(body string) string {
	return fmt.Sprintf(`
terraform {
  required_providers {
    agentlab = { source = %q }
  }
}

provider "agentlab" {
  endpoint     = %q
  api_token    = %q
  insecure     = true
  profiles_dir = %q
}
`, tfcli.Source, e.sim.URL, e.sim.Token, e.profiles) + body
}

// writeProfile writes <profiles>/<name>.yaml.
func (e *accEnv) writeProfile(t *testing.T, name, yaml string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(e.profiles, name+".yaml"), []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
}

// sandboxes lists the simulator's VMs that are not templates.
func (e *accEnv) sandboxes(t *testing.T) []pve.VMEntry {
	t.Helper()
	vms, err := e.api.ListVMs(context.Background())
	if err != nil {
		t.Fatalf("list simulator VMs: %v", err)
	}
	return slices.DeleteFunc(vms, func(v pve.VMEntry) bool { return v.Template })
}

// isos lists the ISO volumes on the simulator's "local" storage of node pve.
func (e *accEnv) isos(t *testing.T) []string {
	t.Helper()
	vols, err := e.api.StorageContent(context.Background(), "pve", "local", "iso", 0)
	if err != nil {
		t.Fatalf("list simulator ISOs: %v", err)
	}
	var out []string
	for _, v := range vols {
		out = append(out, v.VolID)
	}
	return out
}

// checkNothingLeft is a CheckDestroy: no sandbox VM and no ISO remain.
func (e *accEnv) checkNothingLeft(t *testing.T) func(*terraform.State) error {
	return func(*terraform.State) error {
		if vms := e.sandboxes(t); len(vms) > 0 {
			return fmt.Errorf("%d VMs left in the simulator after destroy: %v", len(vms), vms)
		}
		if isos := e.isos(t); len(isos) > 0 {
			return fmt.Errorf("ISOs left in the simulator after destroy: %v", isos)
		}
		return nil
	}
}

// vmConfig reads a VM's config from the simulator.
func (e *accEnv) vmConfig(t *testing.T, vmid int) pve.VMConfig {
	t.Helper()
	cfg, err := e.api.Config(context.Background(), pve.VMRef{Node: "pve", VMID: vmid})
	if err != nil {
		t.Fatalf("config of VM %d: %v", vmid, err)
	}
	return cfg
}

// stateVMID returns the vmid of resource name in s.
func stateVMID(s *terraform.State, name string) (int, error) {
	rs, ok := s.RootModule().Resources[name]
	if !ok {
		return 0, fmt.Errorf("%s not in state", name)
	}
	return strconv.Atoi(rs.Primary.Attributes["vmid"])
}

// emptyPlanAfterApply is the plan check every step makes: after apply and
// refresh, there is nothing left to do.
func emptyPlanAfterApply() []plancheck.PlanCheck {
	return []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()}
}

// advanceClock is a plan check that moves the fake clock between plan and
// apply, to test what the apply does when time has passed since the plan.
type advanceClock struct {
	clock *clock.Fake
	by    time.Duration
}

// CheckPlan advances the clock.
func (a advanceClock) CheckPlan(context.Context, plancheck.CheckPlanRequest, *plancheck.CheckPlanResponse) {
	a.clock.Advance(a.by)
}

// hasTag reports whether tags holds tag.
func hasTag(tags []string, tag string) bool { return slices.Contains(tags, tag) }

// expiryTag returns the agentlab-exp-* tag among tags.
func expiryTag(tags []string) string {
	for _, tg := range tags {
		if strings.HasPrefix(tg, "agentlab-exp-") {
			return tg
		}
	}
	return ""
}
