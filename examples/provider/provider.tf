# Every setting can come from the environment instead:
#   PROXMOX_VE_ENDPOINT, PROXMOX_VE_API_TOKEN, PROXMOX_VE_INSECURE,
#   AGENTLAB_PROFILES_DIR, AGENTLAB_REAPER_URL, AGENTLAB_REAPER_TOKEN, AGENTLAB_MAX_TTL,
#   AGENTLAB_REAPER_CA_CERT, AGENTLAB_REAPER_FINGERPRINT, AGENTLAB_REAPER_GUEST_URL.
terraform {
  required_version = ">= 1.11"
  required_providers {
    agentlab = {
      source = "agentlab/agentlab"
    }
  }
}

variable "proxmox_api_token" {
  type      = string
  sensitive = true
}

provider "agentlab" {
  endpoint     = "https://pve.example.com:8006"
  api_token    = var.proxmox_api_token # "terraform@pve!agentlab=<secret>"
  insecure     = false                 # true for Proxmox VE's self-signed certificate
  node         = "pve"                 # default node for sandboxes that set none
  profiles_dir = "${path.module}/profiles"
  max_ttl      = "24h" # no sandbox lease may exceed this (default 168h)
}
