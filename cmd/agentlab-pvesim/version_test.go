package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// TestVersionSubcommand builds the binary the way a release does, with the
// version, commit and date injected, and checks "version" prints them.
func TestVersionSubcommand(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary: skipped with -short")
	}
	bin := filepath.Join(t.TempDir(), "agentlab-pvesim")
	build := exec.Command("go", "build", "-o", bin,
		"-ldflags", "-X main.version=1.2.3 -X main.commit=1a2b3c4 -X main.date=2026-11-30T12:00:00Z", ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "version").CombinedOutput()
	want := "agentlab-pvesim 1.2.3 (commit 1a2b3c4, built 2026-11-30T12:00:00Z, " + runtime.Version() + ")\n"
	if err != nil || string(out) != want {
		t.Errorf("version = %q, %v; want %q", out, err, want)
	}
}
