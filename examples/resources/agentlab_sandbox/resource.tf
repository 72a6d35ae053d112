variable "ssh_public_key" {
  description = "An OpenSSH public key line, e.g. the contents of ~/.ssh/id_ed25519.pub."
  type        = string
}

# A sandbox cloned from template 9000, leased for 4 hours (never more than a day).
resource "agentlab_sandbox" "agent" {
  name          = "agent-1"
  template_vmid = 9000
  cores         = 4
  memory        = 4096
  disk_size     = "32G"
  bridge        = "vmbr1"

  ssh_authorized_keys = [var.ssh_public_key]

  ttl       = "4h"
  max_ttl   = "24h"
  on_expiry = "destroy"

  wait_for_ip = true
  tags        = ["team-ml"]

  timeouts {
    create = "15m"
  }
}

# The same from a profile (<profiles_dir>/yolo-ephemeral.yaml); attributes set
# here override the profile's values.
resource "agentlab_sandbox" "from_profile" {
  profile = "yolo-ephemeral"
  cores   = 8
}

output "agent_ip" {
  value = agentlab_sandbox.agent.ip_address
}
