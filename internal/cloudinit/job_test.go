package cloudinit

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/agentlab/terraform-provider-agentlab/internal/jobrunner"
)

func TestRenderJob(t *testing.T) {
	c := testConfig()
	c.Job = &Job{URL: "http://10.77.0.1:8846", BootstrapToken: "0123456789abcdef0123456789abcdef"}
	seed, err := c.Render()
	if err != nil {
		t.Fatalf("Render: %v", err)
	}
	var doc struct {
		WriteFiles []writeFile `yaml:"write_files"`
		Runcmd     [][]string  `yaml:"runcmd"`
	}
	if err := yaml.Unmarshal(seed.UserData, &doc); err != nil {
		t.Fatalf("user-data is not YAML: %v", err)
	}
	if len(doc.WriteFiles) != 2 || len(doc.Runcmd) != 1 {
		t.Fatalf("write_files %d, runcmd %d; want 2 and 1:\n%s", len(doc.WriteFiles), len(doc.Runcmd), seed.UserData)
	}
	env, runner := doc.WriteFiles[0], doc.WriteFiles[1]
	if env.Path != jobrunner.EnvPath || env.Permissions != "0600" || env.Owner != "root:root" {
		t.Errorf("env file = %+v; want %s, root only", env, jobrunner.EnvPath)
	}
	if runner.Path != jobrunner.Path || runner.Permissions != "0755" || runner.Content != jobrunner.Script {
		t.Errorf("runner = %s %s; want the embedded runner at %s, 0755", runner.Path, runner.Permissions, jobrunner.Path)
	}
	if cmd := strings.Join(doc.Runcmd[0], " "); !strings.Contains(cmd, "nohup "+jobrunner.Path) || !strings.HasSuffix(cmd, "&") {
		t.Errorf("runcmd = %q; want the runner started in the background", cmd)
	}
	// The env file is what the runner sources: sh must read back both values.
	path := filepath.Join(t.TempDir(), "job.env")
	if err := os.WriteFile(path, []byte(env.Content), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("sh", "-c", `. "$1"; printf '%s|%s' "$AGENTLAB_GUEST_URL" "$AGENTLAB_BOOTSTRAP_TOKEN"`, "sh", path).Output()
	if err != nil || string(out) != c.Job.URL+"|"+c.Job.BootstrapToken {
		t.Errorf("sourced env = %q, %v", out, err)
	}
}

func TestJobValidate(t *testing.T) {
	for _, j := range []Job{
		{URL: "10.77.0.1:8846", BootstrapToken: "0123456789abcdef"},
		{URL: "ftp://x", BootstrapToken: "0123456789abcdef"},
		{URL: "http://x:1", BootstrapToken: "short"},
		{URL: "http://x:1", BootstrapToken: "has space 0123456789"},
	} {
		c := testConfig()
		c.Job = &j
		if _, err := c.Render(); err == nil || !strings.Contains(err.Error(), "job") {
			t.Errorf("Render with job %+v = %v; want an error naming the job", j, err)
		}
	}
}
