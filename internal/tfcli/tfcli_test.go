package tfcli

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

func TestParseVersion(t *testing.T) {
	tests := []struct {
		name    string
		out     string
		want    Info
		wantErr bool
	}{
		{name: "terraform", out: "Terraform v1.11.4\non linux_amd64\n", want: Info{Kind: Terraform, Version: "1.11.4"}},
		{name: "tofu", out: "OpenTofu v1.11.6\non linux_amd64\n", want: Info{Kind: OpenTofu, Version: "1.11.6"}},
		{name: "tofu dev build", out: "OpenTofu v1.11.6-dev\non linux_amd64\n", want: Info{Kind: OpenTofu, Version: "1.11.6-dev"}},
		{name: "no newline", out: "Terraform v1.12.0", want: Info{Kind: Terraform, Version: "1.12.0"}},
		{name: "other tool", out: "Packer v1.9.0\n", wantErr: true},
		{name: "json", out: "{\n  \"terraform_version\": \"1.11.4\"\n}\n", wantErr: true},
		{name: "empty", out: "", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseVersion([]byte(tt.out))
			if tt.wantErr {
				if !errors.Is(err, ErrUnknownCLI) {
					t.Fatalf("ParseVersion(%q) = %+v, %v; want ErrUnknownCLI", tt.out, got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseVersion(%q) = %+v, %v; want %+v", tt.out, got, err, tt.want)
			}
		})
	}
}

func TestProviderAddress(t *testing.T) {
	for k, want := range map[Kind]string{
		Terraform: "registry.terraform.io/agentlab/agentlab",
		OpenTofu:  "registry.opentofu.org/agentlab/agentlab",
	} {
		if got := k.ProviderAddress(); got != want {
			t.Errorf("%v.ProviderAddress() = %q; want %q", k, got, want)
		}
	}
}

// TestDetect runs a fake CLI named "terraform" that prints OpenTofu's
// version: the output decides, not the file name.
func TestDetect(t *testing.T) {
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("needs sh")
	}
	dir := t.TempDir()
	fake := filepath.Join(dir, "terraform")
	script := "#!/bin/sh\n[ \"$1\" = version ] || exit 2\necho 'OpenTofu v1.11.6'\necho 'on linux_amd64'\n"
	if err := os.WriteFile(fake, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	got, err := Detect(context.Background(), fake)
	if err != nil || got.Kind != OpenTofu {
		t.Fatalf("Detect(fake) = %+v, %v; want OpenTofu", got, err)
	}

	broken := filepath.Join(dir, "broken")
	if err := os.WriteFile(broken, []byte("#!/bin/sh\necho nope >&2\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := Detect(context.Background(), broken); err == nil {
		t.Fatal("Detect(a binary that fails) succeeded; want an error")
	}
}

// TestDetectReal checks the real binaries on PATH, when there are any.
func TestDetectReal(t *testing.T) {
	for name, want := range map[string]Kind{"terraform": Terraform, "tofu": OpenTofu} {
		path, err := exec.LookPath(name)
		if err != nil {
			continue
		}
		got, err := Detect(context.Background(), path)
		if err != nil {
			t.Errorf("Detect(%s): %v", path, err)
			continue
		}
		if got.Kind != want {
			t.Errorf("Detect(%s).Kind = %v; want %v", path, got.Kind, want)
		}
	}
}

// TestFind: a given path wins; else terraform, then tofu, from PATH.
func TestFind(t *testing.T) {
	bothDir, tofuDir, emptyDir := t.TempDir(), t.TempDir(), t.TempDir()
	for _, f := range []string{filepath.Join(bothDir, "terraform"), filepath.Join(bothDir, "tofu"), filepath.Join(tofuDir, "tofu")} {
		if err := os.WriteFile(f, []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name, path, pathEnv, want string
		wantErr                   error
	}{
		{"given path", "/opt/tofu/tofu", bothDir, "/opt/tofu/tofu", nil},
		{"terraform first", "", bothDir, filepath.Join(bothDir, "terraform"), nil},
		{"tofu alone", "", tofuDir, filepath.Join(tofuDir, "tofu"), nil},
		{"none", "", emptyDir, "", ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("PATH", tt.pathEnv)
			got, err := Find(tt.path)
			if got != tt.want || !errors.Is(err, tt.wantErr) {
				t.Errorf("Find(%q) with PATH=%s = %q, %v; want %q, %v", tt.path, tt.pathEnv, got, err, tt.want, tt.wantErr)
			}
		})
	}
}
