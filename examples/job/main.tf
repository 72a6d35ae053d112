# make demo applies this: one job on a small git repository, its artifacts downloaded and checked.
terraform {
  required_providers {
    agentlab = {
      source = "agentlab/agentlab"
    }
  }
}

# endpoint, api_token, reaper_url and reaper_guest_url come from the environment.
provider "agentlab" {}

variable "repo" {
  description = "The git repository the job checks out."
  type        = string
}

resource "agentlab_job" "demo" {
  repo          = var.repo
  ref           = "main"
  task          = "./build.sh"
  template_vmid = 9000
  timeout       = "5m"
  artifacts     = ["out/**"]
  env = {
    GREETING = "hello from agentlab"
  }
}

data "agentlab_job_artifacts" "demo" {
  job_id       = agentlab_job.demo.id
  download_dir = "${path.module}/artifacts"
}

output "job" {
  value = {
    id        = agentlab_job.demo.id
    status    = agentlab_job.demo.status
    exit_code = agentlab_job.demo.exit_code
  }
}

output "artifacts" {
  value = { for a in data.agentlab_job_artifacts.demo.artifacts : a.name => "${a.size} bytes, sha256 ${a.sha256}" }
}

output "log_tail" {
  value = agentlab_job.demo.log_tail
}
