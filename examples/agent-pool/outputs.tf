output "names" {
  description = "The sandboxes' names, in pool order."
  value       = agentlab_sandbox.agent[*].name
}

output "vmids" {
  description = "The sandboxes' Proxmox VE VMIDs, in pool order."
  value       = agentlab_sandbox.agent[*].vmid
}

output "ip_addresses" {
  description = "The sandboxes' IPv4 addresses, in pool order."
  value       = agentlab_sandbox.agent[*].ip_address
}

output "ssh_commands" {
  description = "A command that opens a shell on each sandbox, in pool order."
  value       = agentlab_sandbox.agent[*].ssh_command
}

output "lease_expires_at" {
  description = "When each sandbox's lease ends (RFC 3339), in pool order."
  value       = agentlab_sandbox.agent[*].lease_expires_at
}

output "agents" {
  description = "Everything a pipeline step needs per sandbox, keyed by name: `terraform output -json agents | jq -r '.[].ip_address'`."
  value = {
    for s in agentlab_sandbox.agent : s.name => {
      vmid             = s.vmid
      ip_address       = s.ip_address
      ssh_command      = s.ssh_command
      lease_expires_at = s.lease_expires_at
    }
  }
}
