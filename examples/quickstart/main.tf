# AgentLab quickstart: three throw-away sandboxes for AI agents, sized and
# leased by the "yolo-ephemeral" profile (profiles/yolo-ephemeral.yaml).
#
# The provider is configured from the environment:
#   PROXMOX_VE_ENDPOINT    https://pve.example.com:8006 (or the simulator's URL)
#   PROXMOX_VE_API_TOKEN   user@realm!tokenid=secret
#   PROXMOX_VE_INSECURE    true for a self-signed certificate
#   AGENTLAB_PROFILES_DIR  optional; defaults to ./profiles
#
# Try it without a Proxmox VE cluster: `make demo` runs it against agentlab-pvesim.
terraform {
  required_version = ">= 1.11"
  required_providers {
    agentlab = {
      source = "agentlab/agentlab"
    }
  }
}

provider "agentlab" {}

resource "agentlab_sandbox" "agent" {
  for_each = toset(["alpha", "beta", "gamma"])

  name        = "agent-${each.key}"
  profile     = "yolo-ephemeral"
  wait_for_ip = true
}

output "alpha_ip" {
  description = "IPv4 address of agent-alpha."
  value       = agentlab_sandbox.agent["alpha"].ip_address
}

output "beta_ip" {
  description = "IPv4 address of agent-beta."
  value       = agentlab_sandbox.agent["beta"].ip_address
}

output "gamma_ip" {
  description = "IPv4 address of agent-gamma."
  value       = agentlab_sandbox.agent["gamma"].ip_address
}

output "lease_expires_at" {
  description = "When each sandbox's lease ends; the reaper destroys it then."
  value       = { for k, s in agentlab_sandbox.agent : s.name => s.lease_expires_at }
}
