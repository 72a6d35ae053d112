package provider

import (
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestDocsAreCurrent renders the provider docs with the same script as
// make generate, into a temporary directory, and fails when docs/ differs:
// a schema description, template or example changed without make generate.
func TestDocsAreCurrent(t *testing.T) {
	if os.Getenv("TF_ACC") == "" {
		t.Skip("needs terraform to dump the provider schema; set TF_ACC=1 (make test does)")
	}
	out := t.TempDir()
	cmd := exec.CommandContext(t.Context(), filepath.Join("..", "scripts", "generate-docs.sh"))
	// The same CLI as the acceptance tests: TestMain chose it.
	cmd.Env = append(os.Environ(), "DOCS_DIR="+out, "TERRAFORM="+os.Getenv("TF_ACC_TERRAFORM_PATH"))
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("scripts/generate-docs.sh: %v\n%s", err, b)
	}
	rendered := map[string]bool{}
	err := filepath.WalkDir(out, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(out, path)
		rendered[rel] = true
		want, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		got, err := os.ReadFile(filepath.Join("..", "docs", rel))
		if err != nil {
			t.Errorf("docs/%s is missing; run make generate", rel)
			return nil
		}
		if !bytes.Equal(got, want) {
			t.Errorf("docs/%s is out of date; run make generate", rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Nothing stale is left in the directories tfplugindocs owns.
	for _, dir := range []string{"resources", "data-sources"} {
		entries, err := os.ReadDir(filepath.Join("..", "docs", dir))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if rel := filepath.Join(dir, e.Name()); !rendered[rel] {
				t.Errorf("docs/%s is not generated from the schema any more; run make generate", rel)
			}
		}
	}
}
