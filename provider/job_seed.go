package provider

import "github.com/agentlab/terraform-provider-agentlab/internal/cloudinit"

// jobSeed adds a job's bootstrap (the reaper's guest URL and the one-time
// bootstrap token) to its sandbox's cloud-init config.
//
// TODO(jobsprov): set c.Job once helper jobsreaper lands cloudinit.Config.Job;
// until then the job's sandbox boots without the runner.
func jobSeed(c *cloudinit.Config, guestURL, token string) {
	_, _, _ = c, guestURL, token
}
