// Package examples holds the test of the Terraform examples in this
// directory: the ones the docs embed and the modules users copy.
package examples

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentlab/terraform-provider-agentlab/internal/tfcli"
)

// requiredProviders is what a user puts next to a docs snippet (which shows
// only the resource): the provider's registry address.
const requiredProviders = `terraform {
  required_providers {
    agentlab = {
      source = "agentlab/agentlab"
    }
  }
}
`

// companions are the examples a snippet builds on: the docs show the
// artifacts data source reading the job of the agentlab_job example.
var companions = map[string][]string{
	filepath.Join("data-sources", "agentlab_job_artifacts"): {filepath.Join("resources", "agentlab_job")},
}

// terraform finds the terraform (or tofu) binary the acceptance tests use.
func terraform(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("runs terraform: skipped with -short")
	}
	p, err := tfcli.Find(os.Getenv("TF_ACC_TERRAFORM_PATH"))
	if err != nil {
		t.Skip(err)
	}
	return p
}

// exampleDirs lists every directory under examples/ holding .tf files.
func exampleDirs(t *testing.T) []string {
	t.Helper()
	var dirs []string
	err := filepath.WalkDir(".", func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && strings.HasPrefix(d.Name(), ".") && p != "." {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(p, ".tf") {
			if dir := filepath.Dir(p); len(dirs) == 0 || dirs[len(dirs)-1] != dir {
				dirs = append(dirs, dir)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(dirs) < 8 {
		t.Fatalf("found only %d example directories: %v", len(dirs), dirs)
	}
	return dirs
}

// TestExamples checks every example is formatted (terraform fmt -check) and
// valid (terraform validate) against the provider built from this tree,
// offline: a dev_overrides CLI configuration serves the provider, so
// nothing is downloaded and no init is needed.
func TestExamples(t *testing.T) {
	tf := terraform(t)
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "bin")
	build := exec.Command("go", "build", "-o", filepath.Join(bin, "terraform-provider-agentlab"), "..")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	rc := filepath.Join(tmp, "cli.tfrc")
	if err := os.WriteFile(rc, []byte(fmt.Sprintf(`provider_installation {
  dev_overrides {
    "registry.terraform.io/agentlab/agentlab" = %[1]q
    "registry.opentofu.org/agentlab/agentlab" = %[1]q
  }
  direct {}
}
`, bin)), 0o644); err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), "TF_CLI_CONFIG_FILE="+rc, "TF_IN_AUTOMATION=1", "CHECKPOINT_DISABLE=1")

	if out, err := exec.Command(tf, "fmt", "-check", "-recursive", "-diff", ".").CombinedOutput(); err != nil {
		t.Errorf("terraform fmt -check: %v (run terraform fmt -recursive examples)\n%s", err, out)
	}
	for _, dir := range exampleDirs(t) {
		t.Run(dir, func(t *testing.T) {
			// A copy, so that validate leaves nothing in the tree, with the
			// provider's address added to a snippet that lacks it.
			work := filepath.Join(tmp, "work", dir)
			if err := os.CopyFS(work, os.DirFS(dir)); err != nil {
				t.Fatal(err)
			}
			for _, c := range companions[dir] {
				tfs, _ := filepath.Glob(filepath.Join(c, "*.tf"))
				for _, f := range tfs {
					b, err := os.ReadFile(f)
					if err != nil {
						t.Fatal(err)
					}
					if err := os.WriteFile(filepath.Join(work, "companion_"+filepath.Base(f)), b, 0o644); err != nil {
						t.Fatal(err)
					}
				}
			}
			hasAddress := false
			tfs, _ := filepath.Glob(filepath.Join(work, "*.tf"))
			for _, f := range tfs {
				b, err := os.ReadFile(f)
				if err != nil {
					t.Fatal(err)
				}
				hasAddress = hasAddress || strings.Contains(string(b), "required_providers")
			}
			if !hasAddress {
				if err := os.WriteFile(filepath.Join(work, "terraform.tf"), []byte(requiredProviders), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			cmd := exec.Command(tf, "-chdir="+work, "validate", "-no-color")
			cmd.Env = env
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("terraform validate: %v\n%s", err, out)
			}
		})
	}
}
