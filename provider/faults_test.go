package provider

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"github.com/hashicorp/terraform-exec/tfexec"
	"github.com/hashicorp/terraform-plugin-framework/providerserver"
	"github.com/hashicorp/terraform-plugin-go/tfprotov6"
	"github.com/hashicorp/terraform-plugin-go/tfprotov6/tf6server"

	"github.com/agentlab/terraform-provider-agentlab/internal/pvesim"
	"github.com/agentlab/terraform-provider-agentlab/internal/volume"
)

// TestAccSandbox_faultsLeaveNoOrphans creates sandboxes against a simulator
// that fails 10% of its requests (fixed seed). Whether an apply succeeds
// depends on which requests draw a fault, and with parallel creates their
// order varies, so this test drives terraform itself (terraform-plugin-testing
// steps must know in advance whether they fail) and checks the invariants
// that must hold either way: after a failed apply every VM in the simulator
// is in Terraform's state (created or tainted), and after destroy nothing is
// left.
func TestAccSandbox_faultsLeaveNoOrphans(t *testing.T) {
	e := newAccEnv(t, func(o *pvesim.Options) {
		o.FaultRate = faultRate(t)
		o.Seed = faultSeed(t)
	})
	tf := e.terraform(t)
	ctx := context.Background()

	sandboxes := `
resource "agentlab_sandbox" "s" {
  count         = 8
  name          = "faulty-${count.index}"
  template_vmid = 9000
  disk_size     = "10G"
  wait_for_ip   = true
}
`
	// The doomed sandbox makes the apply fail whatever the faults do.
	doomed := `
resource "agentlab_sandbox" "doomed" {
  template_vmid = 4242
}
`
	e.writeConfig(t, tf, sandboxes+doomed)
	if err := tf.Apply(ctx); err == nil {
		t.Fatal("apply with a missing template succeeded; want it to fail")
	} else if !strings.Contains(err.Error(), "Template not found") && !strings.Contains(err.Error(), "4242") {
		t.Logf("apply failed (also) for another reason: %v", err)
	}
	e.checkNoOrphans(t, tf, "after the failed apply")

	// Apply again without the doomed sandbox: tainted and missing ones are
	// (re)created. Faults may still fail it; the invariant must hold.
	e.writeConfig(t, tf, sandboxes)
	for attempt := 1; attempt <= 3; attempt++ {
		err := tf.Apply(ctx)
		e.checkNoOrphans(t, tf, fmt.Sprintf("after apply attempt %d", attempt))
		if err == nil {
			break
		}
		t.Logf("apply attempt %d failed under faults: %v", attempt, firstLine(err))
	}

	var destroyErr error
	for attempt := 1; attempt <= 5; attempt++ {
		if destroyErr = tf.Destroy(ctx); destroyErr == nil {
			break
		}
		t.Logf("destroy attempt %d failed under faults: %v", attempt, firstLine(destroyErr))
	}
	if destroyErr != nil {
		t.Fatalf("destroy failed 5 times: %v", destroyErr)
	}
	if ids := e.simSandboxIDs(); len(ids) != 0 {
		t.Errorf("VMs left in the simulator after destroy: %v", ids)
	}
	if isos := e.simISOs(); len(isos) != 0 {
		t.Errorf("ISOs left in the simulator after destroy: %v", isos)
	}
	st := e.sim.Server.Stats()
	if st.FaultsInjected == 0 {
		t.Errorf("the simulator injected no faults; the test proved nothing")
	}
	t.Logf("faults injected: %v", st.Faults)
}

// terraform returns a terraform-exec handle on a fresh working directory,
// with the provider served in-process (as terraform-plugin-testing does) for
// the rest of the test.
func (e *accEnv) terraform(t *testing.T) *accTerraform {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	reattachCh := make(chan *plugin.ReattachConfig, 1)
	closeCh := make(chan struct{})
	factory := providerserver.NewProtocol6(NewTestProvider(e.clock))
	go func() {
		err := tf6server.Serve(accProviderAddress(),
			func() tfprotov6.ProviderServer { return factory() },
			tf6server.WithDebug(ctx, reattachCh, closeCh),
			tf6server.WithLoggingSink(t),
			tf6server.WithGoPluginLogger(hclog.NewNullLogger()))
		if err != nil {
			t.Errorf("serve provider: %v", err)
		}
	}()
	var rc *plugin.ReattachConfig
	select {
	case rc = <-reattachCh:
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatal("provider server did not start")
	}
	t.Cleanup(func() {
		cancel()
		<-closeCh
	})

	dir := t.TempDir()
	tf, err := tfexec.NewTerraform(dir, os.Getenv("TF_ACC_TERRAFORM_PATH"))
	if err != nil {
		t.Fatal(err)
	}
	info := tfexec.ReattachInfo{accProviderAddress(): tfexec.ReattachConfig{
		Protocol: string(rc.Protocol), ProtocolVersion: rc.ProtocolVersion, Pid: rc.Pid, Test: rc.Test,
		Addr: tfexec.ReattachConfigAddr{Network: rc.Addr.Network(), String: rc.Addr.String()},
	}}
	return &accTerraform{Terraform: tf, reattach: info}
}

// accTerraform runs terraform commands against the in-process provider.
type accTerraform struct {
	*tfexec.Terraform
	reattach tfexec.ReattachInfo
}

// Apply runs terraform apply.
func (a *accTerraform) Apply(ctx context.Context) error {
	return a.Terraform.Apply(ctx, tfexec.Reattach(a.reattach))
}

// Destroy runs terraform destroy.
func (a *accTerraform) Destroy(ctx context.Context) error {
	return a.Terraform.Destroy(ctx, tfexec.Reattach(a.reattach))
}

// writeConfig writes main.tf (terraform and provider blocks plus body) and
// runs init.
func (e *accEnv) writeConfig(t *testing.T, tf *accTerraform, body string) {
	t.Helper()
	cfg := e.config(body)
	if err := os.WriteFile(filepath.Join(tf.WorkingDir(), "main.tf"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := tf.Init(context.Background(), tfexec.Reattach(tf.reattach)); err != nil {
		t.Fatalf("terraform init: %v", err)
	}
}

// checkNoOrphans fails t if a VM in the simulator is not in Terraform's state.
func (e *accEnv) checkNoOrphans(t *testing.T, tf *accTerraform, when string) {
	t.Helper()
	st, err := tf.Show(context.Background(), tfexec.Reattach(tf.reattach))
	if err != nil {
		t.Fatalf("terraform show %s: %v", when, err)
	}
	inState := map[int]bool{}
	if st.Values != nil && st.Values.RootModule != nil {
		for _, r := range st.Values.RootModule.Resources {
			switch v := r.AttributeValues["vmid"].(type) {
			case float64:
				inState[int(v)] = true
			case json.Number:
				n, err := v.Int64()
				if err == nil {
					inState[int(n)] = true
				}
			}
		}
	}
	t.Logf("%s: %d sandboxes in state, %d VMs in the simulator", when, len(inState), len(e.simSandboxIDs()))
	for _, id := range e.simSandboxIDs() {
		if !inState[id] {
			t.Errorf("%s: VM %d exists in the simulator but not in Terraform's state (an orphan)", when, id)
		}
	}
	// Every ISO belongs to a VM that is in state.
	for _, iso := range e.simISOs() {
		owned := false
		for id := range inState {
			if iso == volume.SeedISOVolid("local", id) {
				owned = true
			}
		}
		if !owned {
			t.Errorf("%s: ISO %s belongs to no sandbox in state", when, iso)
		}
	}
}

// simSandboxIDs lists the simulator's non-template VMs, read from its state
// directly (no faults).
func (e *accEnv) simSandboxIDs() []int {
	var out []int
	for _, id := range e.sim.Server.VMIDs() {
		if vm, ok := e.sim.Server.VM(id); ok && vm.Config["template"] != "1" {
			out = append(out, id)
		}
	}
	return out
}

// simISOs lists the ISO volumes in the simulator, read from its state directly.
func (e *accEnv) simISOs() []string {
	var out []string
	for _, v := range e.sim.Server.Volumes("pve") {
		if v.Content == "iso" {
			out = append(out, v.Volid)
		}
	}
	return out
}

// firstLine returns the first line of err's message.
func firstLine(err error) string {
	msg := err.Error()
	if i := strings.IndexByte(msg, '\n'); i >= 0 {
		msg = msg[:i]
	}
	return strconv.Quote(msg)
}

// faultSeed is the fault injection's seed: fixed, so a failure can be
// replayed, and overridable with AGENTLAB_FAULT_SEED to explore others.
func faultSeed(t *testing.T) int64 {
	if s := os.Getenv("AGENTLAB_FAULT_SEED"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatalf("AGENTLAB_FAULT_SEED=%q: %v", s, err)
		}
		return n
	}
	return 20260101
}

// faultRate is the share of requests that fail: 10%, or
// AGENTLAB_FAULT_RATE to stress the error paths harder.
func faultRate(t *testing.T) float64 {
	if s := os.Getenv("AGENTLAB_FAULT_RATE"); s != "" {
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || f < 0 || f > 1 {
			t.Fatalf("AGENTLAB_FAULT_RATE=%q: want a number from 0 to 1", s)
		}
		return f
	}
	return 0.10
}
