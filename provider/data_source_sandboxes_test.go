package provider

import (
	"regexp"
	"testing"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"

	"github.com/agentlab/terraform-provider-agentlab/internal/pvesim"
)

func TestAccSandboxesDataSource(t *testing.T) {
	e := newAccEnv(t, func(o *pvesim.Options) {
		o.Nodes = []string{"pve", "pve2"}
		o.Templates = []pvesim.Template{{VMID: 9000, Name: "debian-12-cloud"}, {VMID: 9001, Name: "debian-12-pve2", Node: "pve2"}}
	})
	sandboxes := `
resource "agentlab_sandbox" "a" {
  name          = "agent-a"
  template_vmid = 9000
  ttl           = "1h"
  tags          = ["blue"]
}
resource "agentlab_sandbox" "b" {
  name          = "agent-b"
  template_vmid = 9001
  ttl           = "2h"
  depends_on    = [agentlab_sandbox.a] # VMIDs, and so the list order, follow creation order
}
resource "agentlab_sandbox" "c" {
  name          = "other-c"
  template_vmid = 9000
  depends_on    = [agentlab_sandbox.b]
}
`
	entry := func(name, node, expires string, tags ...string) knownvalue.Check {
		tagChecks := []knownvalue.Check{}
		for _, tg := range tags {
			tagChecks = append(tagChecks, knownvalue.StringExact(tg))
		}
		return knownvalue.ObjectExact(map[string]knownvalue.Check{
			"vmid":             knownvalue.NotNull(),
			"node":             knownvalue.StringExact(node),
			"name":             knownvalue.StringExact(name),
			"status":           knownvalue.StringExact("running"),
			"lease_expires_at": knownvalue.StringExact(expires),
			"tags":             knownvalue.ListExact(tagChecks),
		})
	}
	resource.ParallelTest(t, resource.TestCase{
		ProtoV6ProviderFactories: e.factories(),
		CheckDestroy:             e.checkNothingLeft(t),
		Steps: []resource.TestStep{
			{
				Config:           e.config(sandboxes),
				ConfigPlanChecks: resource.ConfigPlanChecks{PostApplyPostRefresh: emptyPlanAfterApply()},
			},
			{
				Config: e.config(sandboxes + `
data "agentlab_sandboxes" "all" {}
data "agentlab_sandboxes" "agents" {
  name_regex = "^agent-"
}
data "agentlab_sandboxes" "pve2" {
  node = "pve2"
}
`),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
				},
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue("data.agentlab_sandboxes.all", tfjsonpath.New("sandboxes"), knownvalue.ListSizeExact(3)),
					statecheck.ExpectKnownValue("data.agentlab_sandboxes.agents", tfjsonpath.New("sandboxes"), knownvalue.ListExact([]knownvalue.Check{
						entry("agent-a", "pve", "2030-01-02T04:00:00Z", "blue"),
						entry("agent-b", "pve2", "2030-01-02T05:00:00Z"),
					})),
					statecheck.ExpectKnownValue("data.agentlab_sandboxes.pve2", tfjsonpath.New("sandboxes"), knownvalue.ListExact([]knownvalue.Check{
						entry("agent-b", "pve2", "2030-01-02T05:00:00Z"),
					})),
				},
			},
			{
				Config: e.config(sandboxes + `
data "agentlab_sandboxes" "bad" {
  name_regex = "agent-("
}
`),
				PlanOnly:    true,
				ExpectError: regexp.MustCompile(`Invalid regular expression`),
			},
			{
				Config:           e.config(sandboxes),
				ConfigPlanChecks: resource.ConfigPlanChecks{PostApplyPostRefresh: emptyPlanAfterApply()},
			},
		},
	})
}
