# A sandbox is imported by "<node>/<vmid>". Only VMs tagged "agentlab" can be imported.
terraform import agentlab_sandbox.agent pve/123
