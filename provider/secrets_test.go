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
)

// testRecipient is a valid age X25519 recipient (its identity is unused).
const testRecipient = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"

// TestAccSecrets_planChecks: secrets without a usable recipient, or with a
// key no environment can hold, fail at plan time on both resources; a
// profile's secrets.recipient is planned as secrets_recipient, and secrets
// themselves are never planned.
func TestAccSecrets_planChecks(t *testing.T) {
	e := newAccEnv(t)
	e.writeProfile(t, "agents", "template_vmid: 9000\nsecrets:\n  recipient: "+testRecipient+"\n")
	resource.ParallelTest(t, resource.TestCase{
		ProtoV6ProviderFactories: e.factories(),
		CheckDestroy:             e.checkNothingLeft(t),
		Steps: []resource.TestStep{
			{
				Config: e.config(`
resource "agentlab_sandbox" "s" {
  template_vmid = 9000
  secrets       = { API_KEY = "v" }
}
`),
				PlanOnly:    true,
				ExpectError: regexp.MustCompile(`(?s)No usable secrets recipient.*none configured; set\s+secrets_recipient`),
			},
			{
				Config: e.config(`
resource "agentlab_sandbox" "s" {
  template_vmid     = 9000
  secrets_recipient = "age1nope"
  secrets           = { API_KEY = "v" }
}
`),
				PlanOnly:    true,
				ExpectError: regexp.MustCompile(`(?s)No usable secrets recipient.*want an age X25519 public key`),
			},
			{
				Config: e.config(`
resource "agentlab_sandbox" "s" {
  profile = "agents"
  secrets = { "not-a-name" = "v" }
}
`),
				PlanOnly:    true,
				ExpectError: regexp.MustCompile(`(?s)Invalid secrets.*secret key "not-a-name": want an environment\s+variable name`),
			},
			{
				Config: e.config(`
resource "agentlab_job" "j" {
  repo          = "https://example.com/r.git"
  ref           = "main"
  task          = "true"
  template_vmid = 9000
  secrets       = { API_KEY = "v" }
}
`),
				PlanOnly:    true,
				ExpectError: regexp.MustCompile(`(?s)No usable secrets recipient`),
			},
			{
				Config: e.config(`
resource "agentlab_sandbox" "s" {
  profile = "agents"
  secrets = { API_KEY = "v" }
}
`),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectKnownValue("agentlab_sandbox.s", tfjsonpath.New("secrets_recipient"), knownvalue.StringExact(testRecipient)),
					plancheck.ExpectKnownValue("agentlab_sandbox.s", tfjsonpath.New("secrets"), knownvalue.Null()),
				}},
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue("agentlab_sandbox.s", tfjsonpath.New("secrets"), knownvalue.Null()),
				},
				// The sandbox waited for its guest and retired its seed.
				Check: func(s *terraform.State) error {
					vmid, err := stateVMID(s, "agentlab_sandbox.s")
					if err != nil {
						return err
					}
					if d, ok := e.vmConfig(t, vmid).Drive(isoDrive); !ok || d.Volume != "none" {
						return fmt.Errorf("%s = %+v; want an empty CD-ROM", isoDrive, d)
					}
					if isos := e.isos(t); len(isos) != 0 {
						return fmt.Errorf("ISOs = %v; want none after first boot", isos)
					}
					return nil
				},
			},
		},
	})
}
