package provider

import "github.com/agentlab/terraform-provider-agentlab/internal/cloudinit"

// jobSeed adds a job's bootstrap to its sandbox's cloud-init config: the
// reaper's guest URL and the one-time bootstrap token, with which the job
// runner the seed installs fetches its spec.
func jobSeed(c *cloudinit.Config, guestURL, token string) {
	c.Job = &cloudinit.Job{URL: guestURL, BootstrapToken: token}
}
