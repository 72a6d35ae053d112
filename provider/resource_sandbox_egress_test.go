package provider

import (
	"fmt"
	"regexp"
	"slices"
	"testing"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"

	"github.com/agentlab/terraform-provider-agentlab/internal/egressrule"
	"github.com/agentlab/terraform-provider-agentlab/internal/lease"
)

// TestAccSandbox_egress: the egress policy (attribute, else the profile's
// network.egress) and the allow list reach the VM's metadata, where the
// reaper's egress filter reads them; a change makes a new sandbox, and a bad
// entry is a plan-time error.
func TestAccSandbox_egress(t *testing.T) {
	e := newAccEnv(t)
	e.writeProfile(t, "locked", "template_vmid: 9000\nnetwork:\n  egress: allowlist\n")
	const addr = "agentlab_sandbox.e"
	metadata := func(policy egressrule.Policy, allow ...string) resource.TestCheckFunc {
		return e.checkEgressMetadata(t, addr, policy, allow...)
	}
	resource.ParallelTest(t, resource.TestCase{
		ProtoV6ProviderFactories: e.factories(),
		CheckDestroy:             e.checkNothingLeft(t),
		Steps: []resource.TestStep{
			{
				Config: e.config(`
resource "agentlab_sandbox" "e" {
  profile      = "locked"
  egress_allow = ["192.168.5.0/24:443/tcp"]
}
`),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply: []plancheck.PlanCheck{
						plancheck.ExpectKnownValue(addr, tfjsonpath.New("egress"), knownvalue.StringExact("allowlist")),
					},
					PostApplyPostRefresh: emptyPlanAfterApply(),
				},
				Check: metadata(egressrule.Allowlist, "192.168.5.0/24:443/tcp"),
			},
			{
				Config: e.config(`
resource "agentlab_sandbox" "e" {
  profile      = "locked"
  egress       = "none"
}
`),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply:             []plancheck.PlanCheck{plancheck.ExpectResourceAction(addr, plancheck.ResourceActionReplace)},
					PostApplyPostRefresh: emptyPlanAfterApply(),
				},
				Check: metadata(egressrule.None),
			},
			{
				Config: e.config(`
resource "agentlab_sandbox" "e" {
  template_vmid = 9000
  egress_allow  = ["10.1.2.3/16"]
}
`),
				PlanOnly:    true,
				ExpectError: regexp.MustCompile(`(?s)Invalid egress_allow entry.*write 10\.1\.0\.0/16`),
			},
			{
				Config: e.config(`
resource "agentlab_sandbox" "e" {
  template_vmid = 9000
  egress        = "closed"
}
`),
				PlanOnly:    true,
				ExpectError: regexp.MustCompile(`(?s)egress.*value must be one of`),
			},
			{
				Config: e.config(`
resource "agentlab_sandbox" "e" {
  template_vmid = 9000
}
`),
				Check: metadata(egressrule.Open),
			},
		},
	})
}

// checkEgressMetadata checks that the VM of the resource at addr carries
// policy and allow in its metadata block, where the reaper's egress filter
// reads them.
func (e *accEnv) checkEgressMetadata(t *testing.T, addr string, policy egressrule.Policy, allow ...string) resource.TestCheckFunc {
	return func(s *terraform.State) error {
		vmid, err := stateVMID(s, addr)
		if err != nil {
			return err
		}
		md, err := lease.Decode(e.vmConfig(t, vmid).Description())
		if err != nil || md.Egress != policy || !slices.Equal(md.EgressAllow, allow) {
			return fmt.Errorf("metadata egress = %q %q, %v; want %q %q", md.Egress, md.EgressAllow, err, policy, allow)
		}
		return nil
	}
}
