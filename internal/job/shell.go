package job

import (
	"strconv"
	"strings"
)

// ShellQuote quotes s for a POSIX shell: the result, read by sh, is exactly
// s (any bytes but NUL, which no spec field holds).
func ShellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// ShellScript renders the spec for the runner, which has no JSON parser: a
// file for sh to source that sets AGENTLAB_JOB_ID, AGENTLAB_REPO,
// AGENTLAB_REF, AGENTLAB_TASK, AGENTLAB_TIMEOUT (seconds),
// AGENTLAB_ARTIFACTS (one glob a line), AGENTLAB_JOB_TOKEN,
// AGENTLAB_WORKSPACE and AGENTLAB_FINISH_FIELDS (the optional fields of
// job.Finished this reaper takes, so a runner newer than the reaper sends
// only those), and defines agentlab_task_env, which exports the
// task's environment (called in the task's own shell only, so the runner's
// PATH and friends stay its own).
func (s Spec) ShellScript() string {
	var b strings.Builder
	b.WriteString("# agentlab job spec, for sh to source\n")
	set := func(k, v string) { b.WriteString(k + "=" + ShellQuote(v) + "\n") }
	set("AGENTLAB_JOB_ID", s.ID)
	set("AGENTLAB_REPO", s.Repo)
	set("AGENTLAB_REF", s.Ref)
	set("AGENTLAB_TASK", s.Task)
	set("AGENTLAB_TIMEOUT", strconv.FormatInt(s.TimeoutSeconds, 10))
	set("AGENTLAB_ARTIFACTS", strings.Join(s.Artifacts, "\n"))
	set("AGENTLAB_JOB_TOKEN", s.Token)
	set("AGENTLAB_WORKSPACE", s.Workspace)
	set("AGENTLAB_FINISH_FIELDS", "not_run")
	b.WriteString("agentlab_task_env() {\n")
	for _, k := range EnvKeys(s.Env) {
		b.WriteString("\texport " + k + "=" + ShellQuote(s.Env[k]) + "\n")
	}
	b.WriteString("\t:\n}\n")
	return b.String()
}
