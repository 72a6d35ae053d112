# A sandbox with a one-minute lease. Nobody needs to run Terraform again: when the lease
# ends, agentlab-reaper (on the Proxmox host) destroys the VM, and the next refresh drops it
# from state. `make demo` applies this next to examples/quickstart and shows it reaped live.
#
# The provider is configured from the environment (PROXMOX_VE_ENDPOINT, PROXMOX_VE_API_TOKEN,
# PROXMOX_VE_INSECURE).
terraform {
  required_version = ">= 1.11"
  required_providers {
    agentlab = {
      source = "agentlab/agentlab"
    }
  }
}

provider "agentlab" {}

resource "agentlab_sandbox" "short" {
  name          = "short-lived"
  template_vmid = 9000
  ttl           = "1m"
  max_ttl       = "10m"
  on_expiry     = "destroy"
}

output "vmid" {
  description = "The sandbox's VMID."
  value       = agentlab_sandbox.short.vmid
}

output "lease_expires_at" {
  description = "When the reaper destroys it."
  value       = agentlab_sandbox.short.lease_expires_at
}
