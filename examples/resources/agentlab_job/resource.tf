# Run the test suite of a repository in a fresh sandbox and keep its report.
resource "agentlab_workspace" "cache" {
  name = "build-cache"
  node = "pve"
  size = "10G"
}

resource "agentlab_job" "tests" {
  repo          = "https://git.example.com/team/service.git"
  ref           = "main"
  task          = "make test > out/test.log 2>&1"
  template_vmid = 9000
  cores         = 4
  memory        = 4096
  workspace_id  = agentlab_workspace.cache.id
  timeout       = "45m"
  artifacts     = ["out/**"]
  env = {
    GOFLAGS = "-count=1"
  }
}

output "test_status" {
  value = "${agentlab_job.tests.status} (exit ${coalesce(agentlab_job.tests.exit_code, -1)})"
}
