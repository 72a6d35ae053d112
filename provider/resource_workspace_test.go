package provider

import (
	"fmt"
	"regexp"
	"testing"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"

	"github.com/agentlab/terraform-provider-agentlab/internal/lease"
	"github.com/agentlab/terraform-provider-agentlab/internal/workspace"
)

// wsVolume is the volume of the first workspace in a fresh simulator: its
// holder gets the first free VMID.
const (
	wsVolume = "local-lvm:vm-100-disk-0"
	wsID     = "pve/" + wsVolume
)

func workspaceConfig(size string, sandboxes string) string {
	return fmt.Sprintf(`
resource "agentlab_workspace" "data" {
  name = "data"
  node = "pve"
  size = %q
}
`, size) + sandboxes
}

// TestAccWorkspace_attachRebindGrowImport covers the workspace's life: a
// sandbox holds it, a second sandbox is refused while the first does, it
// moves to the second, grows in place, cannot shrink, imports by
// node/volume, and cannot be destroyed while attached.
func TestAccWorkspace_attachRebindGrowImport(t *testing.T) {
	e := newAccEnv(t)
	a := `
resource "agentlab_sandbox" "a" {
  name          = "sbx-a"
  template_vmid = 9000
  wait_for_ip   = true
  workspace_id  = agentlab_workspace.data.id
}
`
	bTaken := `
resource "agentlab_sandbox" "b" {
  name          = "sbx-b"
  template_vmid = 9000
  workspace_id  = agentlab_workspace.data.id
  depends_on    = [agentlab_sandbox.a]
}
`
	aFree := `
resource "agentlab_sandbox" "a" {
  name          = "sbx-a"
  template_vmid = 9000
  wait_for_ip   = true
}
`
	bHolds := `
resource "agentlab_sandbox" "b" {
  name          = "sbx-b"
  template_vmid = 9000
  workspace_id  = agentlab_workspace.data.id
  depends_on    = [agentlab_sandbox.a]
}
`
	var aVMID, bVMID int
	resource.ParallelTest(t, resource.TestCase{
		ProtoV6ProviderFactories: e.factories(),
		CheckDestroy:             e.checkNothingLeft(t),
		Steps: []resource.TestStep{
			{
				Config:           e.config(workspaceConfig("1G", a)),
				ConfigPlanChecks: resource.ConfigPlanChecks{PostApplyPostRefresh: emptyPlanAfterApply()},
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue("agentlab_workspace.data", tfjsonpath.New("id"), knownvalue.StringExact(wsID)),
					statecheck.ExpectKnownValue("agentlab_workspace.data", tfjsonpath.New("volume"), knownvalue.StringExact(wsVolume)),
					statecheck.ExpectKnownValue("agentlab_workspace.data", tfjsonpath.New("storage"), knownvalue.StringExact(defaultWorkspaceStorage)),
					statecheck.ExpectKnownValue("agentlab_sandbox.a", tfjsonpath.New("workspace_id"), knownvalue.StringExact(wsID)),
					statecheck.ExpectKnownValue("agentlab_sandbox.a", tfjsonpath.New("ssh_user"), knownvalue.StringExact("agent")),
					statecheck.ExpectKnownValue("agentlab_sandbox.a", tfjsonpath.New("ssh_command"), knownvalue.StringRegexp(regexp.MustCompile(`^ssh agent@\d+\.\d+\.\d+\.\d+$`))),
				},
				Check: func(s *terraform.State) error {
					var err error
					if aVMID, err = stateVMID(s, "agentlab_sandbox.a"); err != nil {
						return err
					}
					holder := e.vmConfig(t, 100)
					if !hasTag(holder.Tags(), workspace.HolderTag) || hasTag(holder.Tags(), "agentlab") {
						return fmt.Errorf("holder tags = %v; want %s and not agentlab", holder.Tags(), workspace.HolderTag)
					}
					cfg := e.vmConfig(t, aVMID)
					if d, ok := cfg.Drive(workspace.Drive); !ok || d.Volume != wsVolume {
						return fmt.Errorf("sandbox a's %s = %+v; want %s", workspace.Drive, d, wsVolume)
					}
					if m, err := lease.Decode(cfg.Description()); err != nil || m.Workspace != wsVolume {
						return fmt.Errorf("sandbox a's metadata workspace = %q (%v); want %s", m.Workspace, err, wsVolume)
					}
					return nil
				},
			},
			{
				// A second sandbox cannot take it while a holds it.
				Config:      e.config(workspaceConfig("1G", a+bTaken)),
				ExpectError: regexp.MustCompile(`attached to sandbox pve/\d+\s+\("sbx-a"\)`),
			},
			{
				// Rebinding: a lets go, b takes it.
				Config:           e.config(workspaceConfig("1G", aFree+bHolds)),
				ConfigPlanChecks: resource.ConfigPlanChecks{PostApplyPostRefresh: emptyPlanAfterApply()},
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue("agentlab_sandbox.a", tfjsonpath.New("workspace_id"), knownvalue.Null()),
					statecheck.ExpectKnownValue("agentlab_sandbox.b", tfjsonpath.New("workspace_id"), knownvalue.StringExact(wsID)),
					statecheck.ExpectKnownValue("agentlab_sandbox.b", tfjsonpath.New("ssh_command"), knownvalue.Null()),
				},
				Check: func(s *terraform.State) error {
					var err error
					if bVMID, err = stateVMID(s, "agentlab_sandbox.b"); err != nil {
						return err
					}
					cfg := e.vmConfig(t, aVMID)
					if _, ok := cfg.Get(workspace.Drive); ok {
						return fmt.Errorf("sandbox a still has %s", workspace.Drive)
					}
					if m, err := lease.Decode(cfg.Description()); err != nil || m.Workspace != "" {
						return fmt.Errorf("sandbox a's metadata workspace = %q (%v); want none", m.Workspace, err)
					}
					if d, ok := e.vmConfig(t, bVMID).Drive(workspace.Drive); !ok || d.Volume != wsVolume {
						return fmt.Errorf("sandbox b's %s = %+v; want %s", workspace.Drive, d, wsVolume)
					}
					return nil
				},
			},
			{
				// Growing is in place.
				Config: e.config(workspaceConfig("2G", aFree+bHolds)),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply:             []plancheck.PlanCheck{plancheck.ExpectResourceAction("agentlab_workspace.data", plancheck.ResourceActionUpdate)},
					PostApplyPostRefresh: emptyPlanAfterApply(),
				},
				Check: func(*terraform.State) error {
					if d, _ := e.vmConfig(t, bVMID).Drive(workspace.Drive); d.SizeBytes != 2<<30 {
						return fmt.Errorf("workspace drive is %d bytes; want %d", d.SizeBytes, 2<<30)
					}
					return nil
				},
			},
			{
				Config:      e.config(workspaceConfig("1G", aFree+bHolds)),
				ExpectError: regexp.MustCompile(`Workspace cannot shrink`),
			},
			{
				ResourceName:      "agentlab_workspace.data",
				ImportState:       true,
				ImportStateId:     wsID,
				ImportStateVerify: true,
			},
			{
				// Destroying the workspace while b holds it is refused,
				// naming b.
				Config: e.config(aFree + `
resource "agentlab_sandbox" "b" {
  name          = "sbx-b"
  template_vmid = 9000
  workspace_id  = "` + wsID + `"
}
`),
				ExpectError: regexp.MustCompile(`attached to sandbox pve/\d+\s+\("sbx-b"\)`),
			},
			{
				Config: e.config(workspaceConfig("2G", aFree+bHolds)),
			},
		},
	})
}
