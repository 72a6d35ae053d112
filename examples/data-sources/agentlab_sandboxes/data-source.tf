# Every AgentLab sandbox on node pve whose name starts with "agent-".
data "agentlab_sandboxes" "agents" {
  node       = "pve"
  name_regex = "^agent-"
}

output "agent_leases" {
  value = { for s in data.agentlab_sandboxes.agents.sandboxes : s.name => s.lease_expires_at }
}
