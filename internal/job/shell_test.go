package job

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestShellScript sources the rendered spec with the real sh and prints the
// variables back: every value must come out byte for byte.
func TestShellScript(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh on PATH")
	}
	spec := Spec{
		ID: "job-0123456789abcdef", Repo: "file:///tmp/it's a repo", Ref: "v1.0",
		Task:           "echo \"$HOME\" 'quoted' `backticks` $(subshell)\nline two\\\n\ttabbed ; rm -rf / #",
		TimeoutSeconds: 90, Artifacts: []string{"out/*", "*.log"}, Token: "tok",
		Env: map[string]string{"A": "it's", "B": "$(x)\nnewline", "PATH": "/nope"},
	}
	file := filepath.Join(t.TempDir(), "spec.sh")
	if err := os.WriteFile(file, []byte(spec.ShellScript()), 0o600); err != nil {
		t.Fatal(err)
	}
	script := `. "$1"
printf '%s\0' "$AGENTLAB_JOB_ID" "$AGENTLAB_REPO" "$AGENTLAB_REF" "$AGENTLAB_TASK" "$AGENTLAB_TIMEOUT" "$AGENTLAB_ARTIFACTS" "$AGENTLAB_JOB_TOKEN" "$AGENTLAB_WORKSPACE" "$AGENTLAB_FINISH_FIELDS"
printf '%s\0' "$PATH"
(agentlab_task_env; printf '%s\0' "$A" "$B" "$PATH")`
	out, err := exec.Command(sh, "-c", script, "sh", file).Output()
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00")
	want := []string{spec.ID, spec.Repo, spec.Ref, spec.Task, "90", "out/*\n*.log", "tok", "", "not_run", os.Getenv("PATH"), "it's", "$(x)\nnewline", "/nope"}
	if len(got) != len(want) {
		t.Fatalf("got %d values %q; want %d", len(got), got, len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("value %d = %q; want %q", i, got[i], want[i])
		}
	}
}
