package provider

import (
	"fmt"
	"regexp"
	"testing"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
)

// TestAccSandbox_leaseCeiling: the provider's max_ttl (default 168h) is every
// sandbox's max_ttl unless it sets one, and a longer ttl or max_ttl is
// refused at plan time, before anything is created; so is free text with
// control characters.
func TestAccSandbox_leaseCeiling(t *testing.T) {
	e := newAccEnv(t)
	resource.ParallelTest(t, resource.TestCase{
		ProtoV6ProviderFactories: e.factories(),
		CheckDestroy:             e.checkNothingLeft(t),
		Steps: []resource.TestStep{
			{
				Config: e.config(`
resource "agentlab_sandbox" "c" {
  template_vmid = 9000
  ttl           = "2562047h"
}
`),
				PlanOnly:    true,
				ExpectError: regexp.MustCompile(`(?s)ttl beyond the provider's max_ttl.*Lower ttl to at most\s+168h`),
			},
			{
				Config: e.config(`
resource "agentlab_sandbox" "c" {
  template_vmid = 9000
  max_ttl       = "400h"
}
`),
				PlanOnly:    true,
				ExpectError: regexp.MustCompile(`(?s)max_ttl beyond the provider's max_ttl`),
			},
			{
				// A terminal escape in free text is refused before anything happens.
				Config: e.config(`
resource "agentlab_sandbox" "c" {
  template_vmid = 9000
  owner         = "alice\u001b[2J\nroot"
}
`),
				PlanOnly:    true,
				ExpectError: regexp.MustCompile(`(?s)Control character in owner.*U\+001B`),
			},
			{
				Config: e.config(`
resource "agentlab_sandbox" "c" {
  template_vmid = 9000
}
`),
				Check: resource.ComposeTestCheckFunc(
					resource.TestCheckResourceAttr("agentlab_sandbox.c", "max_ttl", "168h"),
					func(*terraform.State) error {
						if len(e.sandboxes(t)) != 1 {
							return fmt.Errorf("want exactly the one sandbox; the refused plans must create nothing")
						}
						return nil
					},
				),
				ConfigPlanChecks: resource.ConfigPlanChecks{PostApplyPostRefresh: emptyPlanAfterApply()},
			},
		},
	})
}
