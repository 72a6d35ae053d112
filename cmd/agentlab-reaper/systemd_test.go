package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestSystemdUnitVerifies runs systemd-analyze verify on the shipped unit
// (with ExecStart pointing at an executable that exists here), alone and
// with the egress drop-in appended (as systemd merges it), and fails on any
// message about it.
func TestSystemdUnitVerifies(t *testing.T) {
	dropIn, err := os.ReadFile("../../deploy/systemd/agentlab-reaper.service.d/egress.conf")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(dropIn), "CapabilityBoundingSet=CAP_NET_ADMIN\n") {
		t.Errorf("egress drop-in does not grant CAP_NET_ADMIN:\n%s", dropIn)
	}
	t.Run("unit", func(t *testing.T) { verifyUnit(t, "") })
	t.Run("unit with egress drop-in", func(t *testing.T) { verifyUnit(t, string(dropIn)) })
}

func verifyUnit(t *testing.T, dropIn string) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed")
	}
	unit, err := os.ReadFile("../../deploy/systemd/agentlab-reaper.service")
	if err != nil {
		t.Fatal(err)
	}
	const bin = "/usr/local/bin/agentlab-reaper"
	if !strings.Contains(string(unit), "ExecStart="+bin+" serve --config /etc/agentlab/reaper.yaml") {
		t.Fatalf("unit's ExecStart is not %s serve --config /etc/agentlab/reaper.yaml", bin)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "agentlab-reaper.service")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(string(unit), bin, self)+dropIn), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", path).CombinedOutput()
	var ours []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, "agentlab-reaper") {
			ours = append(ours, l)
		}
	}
	if len(ours) > 0 {
		t.Errorf("systemd-analyze verify reports:\n%s", strings.Join(ours, "\n"))
	}
	if err != nil && len(ours) == 0 {
		t.Logf("systemd-analyze verify exited with %v (about other units):\n%s", err, out)
	}
}
