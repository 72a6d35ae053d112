# agent-pool: N sandboxes for a CI pipeline's agents, all from one profile.
# The calling configuration configures the agentlab provider; this module
# only declares the sandboxes and hands the pipeline what it needs to reach
# them (see README.md).
terraform {
  required_version = ">= 1.11"
  required_providers {
    agentlab = {
      source = "agentlab/agentlab"
    }
  }
}

resource "agentlab_sandbox" "agent" {
  count = var.size

  name                = format("%s-%02d", var.name_prefix, count.index + 1)
  profile             = var.profile
  ttl                 = var.ttl
  ssh_authorized_keys = length(var.ssh_authorized_keys) > 0 ? var.ssh_authorized_keys : null
  tags                = length(var.tags) > 0 ? var.tags : null
  owner               = var.owner
  wait_for_ip         = true
}
