# A workspace keeps an agent's files between sandboxes.
resource "agentlab_workspace" "repo_cache" {
  name    = "repo-cache"
  node    = "pve"
  storage = "local-lvm"
  size    = "20G" # grows in place; cannot shrink
}

# The sandbox sees it as its second disk, mounted at /workspace.
resource "agentlab_sandbox" "agent" {
  template_vmid = 9000
  node          = "pve"
  workspace_id  = agentlab_workspace.repo_cache.id
}
