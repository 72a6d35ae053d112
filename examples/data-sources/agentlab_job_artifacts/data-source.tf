# Download a job's artifacts, verified against their sha256, into ./artifacts.
data "agentlab_job_artifacts" "tests" {
  job_id       = agentlab_job.tests.id
  download_dir = "${path.module}/artifacts"
}

output "artifacts" {
  value = { for a in data.agentlab_job_artifacts.tests.artifacts : a.name => a.sha256 }
}
