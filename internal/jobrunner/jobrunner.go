// Package jobrunner holds the job runner, the POSIX sh script that runs an
// AgentLab job inside its sandbox (cloud-init installs it as
// /usr/local/bin/agentlab-job-runner). It needs only sh, curl, git and the
// usual base utilities, and runs the same in a real VM and under the
// simulator's --guest-exec.
package jobrunner

import _ "embed"

// Script is the runner.
//
//go:embed agentlab-job-runner.sh
var Script string

// Path is where cloud-init installs the runner in the guest.
const Path = "/usr/local/bin/agentlab-job-runner"

// EnvPath is the file the runner reads AGENTLAB_GUEST_URL and
// AGENTLAB_BOOTSTRAP_TOKEN from.
const EnvPath = "/etc/agentlab/job.env"

// LogPath is where the runner's own messages go.
const LogPath = "/var/log/agentlab-job.log"
