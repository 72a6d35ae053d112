package cloudinit

import (
	"fmt"
	"net/url"

	"github.com/agentlab/terraform-provider-agentlab/internal/job"
	"github.com/agentlab/terraform-provider-agentlab/internal/jobrunner"
)

// Job makes the sandbox run one job: cloud-init writes the reaper's guest
// listener address and the job's one-time bootstrap token to
// jobrunner.EnvPath (root only, 0600), installs the runner at
// jobrunner.Path and starts it, detached, from runcmd (as root; its own
// messages go to jobrunner.LogPath). The token is spent when the runner
// fetches its spec, so the seed holds nothing that still opens a door
// once the job started.
type Job struct {
	// URL is the reaper's guest listener as the sandbox reaches it, e.g.
	// "http://10.77.0.1:8846".
	URL string
	// BootstrapToken is the job's one-time token from the reaper.
	BootstrapToken string
}

func (j *Job) validate() error {
	if j == nil {
		return nil
	}
	u, err := url.Parse(j.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("job url %q: want the reaper's guest listener as http(s)://HOST:PORT", j.URL)
	}
	if !heartbeatToken.MatchString(j.BootstrapToken) {
		return fmt.Errorf("job bootstrap token: want 16 to 128 letters, digits, '_' or '-' (as the reaper issues it)")
	}
	return nil
}

// jobFiles are the write_files entries that deliver the job.
func (c Config) jobFiles() []writeFile {
	if c.Job == nil {
		return nil
	}
	return []writeFile{
		{
			Path:        jobrunner.EnvPath,
			Owner:       "root:root",
			Permissions: "0600",
			Content: "AGENTLAB_GUEST_URL=" + job.ShellQuote(c.Job.URL) + "\n" +
				"AGENTLAB_BOOTSTRAP_TOKEN=" + job.ShellQuote(c.Job.BootstrapToken) + "\n",
		},
		{
			Path:        jobrunner.Path,
			Owner:       "root:root",
			Permissions: "0755",
			Content:     jobrunner.Script,
		},
	}
}

// jobCommands start the runner in the background, so cloud-init finishes
// booting while the job runs.
func (c Config) jobCommands() [][]string {
	if c.Job == nil {
		return nil
	}
	return [][]string{{"sh", "-c", "nohup " + jobrunner.Path + " >" + jobrunner.LogPath + " 2>&1 &"}}
}
