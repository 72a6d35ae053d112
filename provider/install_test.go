package provider

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/agentlab/terraform-provider-agentlab/internal/tfcli"
)

// TestInstall_initOffline installs the provider with the script behind make
// install into a temporary HOME, then runs init and validate offline with
// each CLI at hand (the acceptance tests' one, and terraform and tofu on
// PATH): the short source "agentlab/agentlab" must resolve to the installed
// binary on both registries, with every network access refused.
func TestInstall_initOffline(t *testing.T) {
	if os.Getenv("TF_ACC") == "" {
		t.Skip("needs terraform or tofu; set TF_ACC=1 (make test does)")
	}
	if runtime.GOOS == "windows" {
		t.Skip("make install is for Unix-like systems")
	}
	clis := map[string]bool{os.Getenv("TF_ACC_TERRAFORM_PATH"): true}
	for _, name := range []string{"terraform", "tofu"} {
		if p, err := exec.LookPath(name); err == nil {
			clis[p] = true
		}
	}

	home := t.TempDir()
	bin := filepath.Join(t.TempDir(), "terraform-provider-agentlab")
	mustRun(t, "", nil, "go", "build", "-o", bin, "..")
	mustRun(t, "", []string{"HOME=" + home}, filepath.Join("..", "scripts", "install-provider.sh"), bin, "v1.2.3")
	for _, k := range tfcli.Kinds() {
		p := filepath.Join(home, ".terraform.d", "plugins", k.ProviderAddress(), "1.2.3",
			runtime.GOOS+"_"+runtime.GOARCH, "terraform-provider-agentlab_v1.2.3")
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s mirror: %v", k, err)
		}
	}

	const cfg = `
terraform {
  required_providers {
    agentlab = { source = "agentlab/agentlab", version = "~> 1.2" }
  }
}

provider "agentlab" {
  endpoint  = "https://pve.example.com:8006"
  api_token = "terraform@pve!agentlab=00000000-0000-0000-0000-000000000000"
}

resource "agentlab_sandbox" "s" {
  template_vmid = 9000
  ttl           = "1h"
}
`
	for cli := range clis {
		info, err := tfcli.Detect(context.Background(), cli)
		if err != nil {
			t.Fatal(err)
		}
		t.Run(info.Kind.String(), func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "main.tf"), []byte(cfg), 0o600); err != nil {
				t.Fatal(err)
			}
			env := []string{
				"HOME=" + home,
				"TF_CLI_CONFIG_FILE=", // the user's CLI config could name another mirror
				"TF_PLUGIN_CACHE_DIR=",
				"TF_REATTACH_PROVIDERS=",
				"CHECKPOINT_DISABLE=1",
				// Offline: any registry request goes to a port nobody listens on.
				"HTTPS_PROXY=http://127.0.0.1:9", "HTTP_PROXY=http://127.0.0.1:9", "NO_PROXY=",
			}
			mustRun(t, dir, env, cli, "init", "-input=false", "-no-color")
			lock, err := os.ReadFile(filepath.Join(dir, ".terraform.lock.hcl"))
			if err != nil {
				t.Fatal(err)
			}
			if want := `provider "` + info.Kind.ProviderAddress() + `"`; !strings.Contains(string(lock), want) ||
				!strings.Contains(string(lock), `version     = "1.2.3"`) {
				t.Errorf("lock file does not pin %s 1.2.3:\n%s", info.Kind.ProviderAddress(), lock)
			}
			// validate starts the installed binary to read its schema.
			mustRun(t, dir, env, cli, "validate", "-no-color")
		})
	}
}

// mustRun runs name with args in dir (the test's directory when empty), with
// env added to the environment, and fails t when it fails.
func mustRun(t *testing.T, dir string, env []string, name string, args ...string) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, out)
	}
}
