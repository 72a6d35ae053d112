package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/agentlab/terraform-provider-agentlab/internal/tfcli"
	"github.com/agentlab/terraform-provider-agentlab/reaper/reapertest"
)

func TestServeAddress(t *testing.T) {
	tests := []struct {
		cli     string
		want    string
		wantErr error
	}{
		{cli: "terraform", want: "registry.terraform.io/agentlab/agentlab"},
		{cli: "tofu", want: "registry.opentofu.org/agentlab/agentlab"},
		{cli: "opentofu", want: "registry.opentofu.org/agentlab/agentlab"},
		{cli: " OpenTofu ", want: "registry.opentofu.org/agentlab/agentlab"},
		{cli: "Terraform", want: "registry.terraform.io/agentlab/agentlab"},
		{cli: "", wantErr: errUnknownDebugCLI},
		{cli: "pulumi", wantErr: errUnknownDebugCLI},
	}
	for _, tt := range tests {
		got, err := serveAddress(tt.cli)
		if !errors.Is(err, tt.wantErr) || got != tt.want {
			t.Errorf("serveAddress(%q) = %q, %v; want %q, %v", tt.cli, got, err, tt.want, tt.wantErr)
		}
		if err != nil && !strings.Contains(err.Error(), "use terraform or tofu") {
			t.Errorf("serveAddress(%q) error %q does not say what to use", tt.cli, err)
		}
	}
}

// TestDebugAttach starts the built provider with -debug for the CLI under
// test (TF_ACC_TERRAFORM_PATH, else terraform or tofu on PATH) and has that
// CLI attach to it through the TF_REATTACH_PROVIDERS value the provider
// prints: init and validate then work with no provider installed anywhere,
// which they only do when the value names the provider by that CLI's address.
func TestDebugAttach(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the provider and runs terraform: skipped with -short")
	}
	tf, err := tfcli.Find(os.Getenv("TF_ACC_TERRAFORM_PATH"))
	if err != nil {
		t.Skip(err)
	}
	ctx := context.Background()
	cli, err := tfcli.Detect(ctx, tf)
	if err != nil {
		t.Fatal(err)
	}
	flagValue := map[tfcli.Kind]string{tfcli.Terraform: "terraform", tfcli.OpenTofu: "tofu"}[cli.Kind]

	dir := t.TempDir()
	bin := reapertest.GoBuild(t, dir, reapertest.Module)
	cmd := exec.Command(bin, "-debug", "-debug-cli", flagValue)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt) // -debug stops on SIGINT
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Signal(syscall.SIGKILL)
			<-exited
		}
	})
	reattach := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if _, v, ok := strings.Cut(sc.Text(), "TF_REATTACH_PROVIDERS='"); ok {
				reattach <- strings.TrimSuffix(v, "'")
			}
		}
		exited <- cmd.Wait()
	}()
	var value string
	select {
	case value = <-reattach:
	case err := <-exited:
		t.Fatalf("the provider exited (%v) before printing TF_REATTACH_PROVIDERS", err)
	case <-time.After(time.Minute):
		t.Fatal("the provider printed no TF_REATTACH_PROVIDERS in a minute")
	}
	var entries map[string]json.RawMessage
	if err := json.Unmarshal([]byte(value), &entries); err != nil {
		t.Fatalf("TF_REATTACH_PROVIDERS=%s: %v", value, err)
	}
	if _, ok := entries[cli.Kind.ProviderAddress()]; !ok || len(entries) != 1 {
		t.Fatalf("TF_REATTACH_PROVIDERS=%s; want one entry, for %s (%s)", value, cli.Kind.ProviderAddress(), cli.Kind)
	}

	// The CLI, with no plugin directory, mirror or override of the machine's.
	work := filepath.Join(dir, "work")
	home := filepath.Join(dir, "home")
	for _, d := range []string{work, home} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	rc := filepath.Join(dir, "empty.tfrc")
	if err := os.WriteFile(rc, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(work, "main.tf"), []byte(`
terraform {
  required_providers {
    agentlab = { source = "agentlab/agentlab" }
  }
}

resource "agentlab_sandbox" "debugged" {
  name          = "debugged"
  template_vmid = 9000
}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TF_") && !strings.HasPrefix(kv, "HOME=") {
			env = append(env, kv)
		}
	}
	env = append(env, "HOME="+home, "TF_CLI_CONFIG_FILE="+rc, "TF_IN_AUTOMATION=1", "CHECKPOINT_DISABLE=1",
		"TF_REATTACH_PROVIDERS="+value)
	for _, args := range [][]string{{"init", "-input=false", "-no-color"}, {"validate", "-no-color"}} {
		run := exec.CommandContext(ctx, tf, args...)
		run.Dir = work
		run.Env = env
		if out, err := run.CombinedOutput(); err != nil {
			t.Fatalf("%s %s attached to the debug provider: %v\n%s", cli.Kind, args[0], err, out)
		}
	}
}
