# A workspace is imported by "<node>/<volume>"; the volume's owner must be a workspace holder VM.
terraform import agentlab_workspace.repo_cache pve/local-lvm:vm-104-disk-0
