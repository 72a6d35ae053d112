variable "name_prefix" {
  description = "Prefix of the sandboxes' names: <name_prefix>-01, <name_prefix>-02, ... Use the pipeline's ID so that parallel pipelines do not collide."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,50}$", var.name_prefix))
    error_message = "name_prefix must be a DNS label of at most 51 characters (lower-case letters, digits, dashes; a letter first), e.g. \"ci-1234\"."
  }
}

variable "size" {
  description = "How many sandboxes the pool holds."
  type        = number
  default     = 2

  validation {
    condition     = var.size >= 1 && var.size <= 99 && floor(var.size) == var.size
    error_message = "size must be a whole number from 1 to 99."
  }
}

variable "profile" {
  description = "The profile every sandbox is made from (a file <profiles_dir>/<profile>.yaml)."
  type        = string
}

variable "ttl" {
  description = "Lease of each sandbox, e.g. \"2h\"; null keeps the profile's. The reaper destroys a sandbox whose lease ended, so a failed pipeline leaves nothing behind."
  type        = string
  default     = null
}

variable "ssh_authorized_keys" {
  description = "OpenSSH public keys the pipeline logs in with; empty keeps the profile's."
  type        = list(string)
  default     = []
}

variable "tags" {
  description = "Extra Proxmox VE tags, e.g. the pipeline's name; empty keeps the profile's."
  type        = list(string)
  default     = []
}

variable "owner" {
  description = "Who the sandboxes belong to (the reaper's events name them), e.g. the CI job's URL; null leaves it unset."
  type        = string
  default     = null
}
