package jobrunner

import (
	"os/exec"
	"testing"
)

// TestShellcheck lints the runner as POSIX sh (shellcheck is in .ci/run's
// packages; the test skips where it is missing).
func TestShellcheck(t *testing.T) {
	sc, err := exec.LookPath("shellcheck")
	if err != nil {
		t.Skip("shellcheck not installed")
	}
	out, err := exec.Command(sc, "--shell=sh", "--severity=style", "agentlab-job-runner.sh").CombinedOutput()
	if err != nil {
		t.Errorf("shellcheck: %v\n%s", err, out)
	}
}

func TestScriptEmbedded(t *testing.T) {
	if len(Script) < 1000 || Script[:10] != "#!/bin/sh\n" {
		t.Errorf("Script is not the runner (%d bytes)", len(Script))
	}
}
