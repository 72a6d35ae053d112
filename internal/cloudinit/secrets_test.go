package cloudinit

import (
	"bytes"
	"strings"
	"testing"

	"filippo.io/age"
	"gopkg.in/yaml.v3"

	"github.com/agentlab/terraform-provider-agentlab/internal/jobrunner"
	"github.com/agentlab/terraform-provider-agentlab/internal/secrets"
)

func TestRenderSecrets(t *testing.T) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := secrets.Seal(map[string]string{"API_KEY": "plain-value-123"}, id.Recipient().String())
	if err != nil {
		t.Fatal(err)
	}
	c := testConfig()
	c.Secrets = &Secrets{Sealed: sealed}
	c.Job = &Job{URL: "http://10.77.0.1:8846", BootstrapToken: "0123456789abcdef0123456789abcdef"}
	seed, err := c.Render()
	if err != nil {
		t.Fatalf("Render: %v", err)
	}
	if bytes.Contains(seed.UserData, []byte("plain-value-123")) {
		t.Fatal("user-data holds the secret in plain text")
	}
	var doc struct {
		WriteFiles []writeFile `yaml:"write_files"`
		Runcmd     [][]string  `yaml:"runcmd"`
	}
	if err := yaml.Unmarshal(seed.UserData, &doc); err != nil {
		t.Fatalf("user-data is not YAML: %v", err)
	}
	f := doc.WriteFiles[0]
	if f.Path != secrets.CiphertextPath || f.Permissions != "0600" || f.Owner != "root:root" || f.Defer || f.Content != string(sealed) {
		t.Errorf("first write_files = %+v; want the sealed bundle at %s, root only", f, secrets.CiphertextPath)
	}
	if len(doc.Runcmd) != 2 {
		t.Fatalf("runcmd = %q; want the secrets opened, then the runner", doc.Runcmd)
	}
	if cmd := strings.Join(doc.Runcmd[0], " "); !strings.Contains(cmd, secrets.IdentityPath) || !strings.Contains(cmd, secrets.Dir) {
		t.Errorf("first runcmd = %q; want the bundle opened with %s into %s", cmd, secrets.IdentityPath, secrets.Dir)
	}
	if cmd := strings.Join(doc.Runcmd[1], " "); !strings.Contains(cmd, jobrunner.Path) {
		t.Errorf("second runcmd = %q; want the job runner, after the secrets", cmd)
	}
}

func TestSecretsValidate(t *testing.T) {
	c := testConfig()
	c.Secrets = &Secrets{Sealed: []byte("API_KEY=plain")}
	if _, err := c.Render(); err == nil || !strings.Contains(err.Error(), "secrets") {
		t.Errorf("Render with a plain bundle = %v; want an error naming secrets", err)
	}
}
