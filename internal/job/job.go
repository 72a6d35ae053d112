package job

import (
	"time"
)

// Job is a job as the control API shows it.
type Job struct {
	// ID is "job-" and 16 hex digits.
	ID string `json:"id"`
	// Repo is the git repository to clone (any URL git understands).
	Repo string `json:"repo"`
	// Ref is the branch, tag or commit to check out.
	Ref string `json:"ref"`
	// Task is the shell command the runner runs with sh -c in the checkout.
	Task string `json:"task"`
	// Timeout is the task's time limit, as a Go duration ("30m0s").
	Timeout string `json:"timeout"`
	// ArtifactsGlobs are the patterns of the files to upload, relative to the
	// checkout.
	ArtifactsGlobs []string `json:"artifacts_globs"`
	// EnvKeys are the names of the task's environment variables (the values
	// are only in the spec the runner fetches).
	EnvKeys []string `json:"env_keys"`
	// KeepSandbox keeps the sandbox when the job ends.
	KeepSandbox bool `json:"keep_sandbox"`
	// Owner is who registered the job, free text.
	Owner string `json:"owner,omitempty"`
	// Status is where the job stands.
	Status Status `json:"status"`
	// Reason explains a failed, timed_out or lost status.
	Reason string `json:"reason,omitempty"`
	// ExitCode is the task's exit code; nil until the job ended, and for
	// jobs that ended without one (lost, cancelled).
	ExitCode *int `json:"exit_code"`
	// Node and VMID are the job's sandbox, once the provider set it.
	Node string `json:"node,omitempty"`
	VMID int    `json:"vmid,omitempty"`
	// CreatedAt is when the job was registered; StartedAt when the runner
	// started the task; FinishedAt when the job ended.
	CreatedAt  time.Time `json:"created_at"`
	StartedAt  time.Time `json:"started_at,omitzero"`
	FinishedAt time.Time `json:"finished_at,omitzero"`
	// LogTail is the end of the job's log (at most LogTailBytes).
	LogTail string `json:"log_tail"`
	// Artifacts are the files the runner uploaded, by name.
	Artifacts []Artifact `json:"artifacts"`
}

// LogTailBytes is how much of the end of the log Job.LogTail holds.
const LogTailBytes = 4096

// Artifact is one uploaded file.
type Artifact struct {
	// Name is the file's path relative to the checkout; see CheckName.
	Name string `json:"name"`
	// Size is its size in bytes.
	Size int64 `json:"size"`
	// SHA256 is the hex sha256 of its content.
	SHA256 string `json:"sha256"`
}

// RegisterRequest is the body of POST /v1/jobs.
type RegisterRequest struct {
	// Repo, Ref and Task are required.
	Repo string `json:"repo"`
	Ref  string `json:"ref"`
	Task string `json:"task"`
	// Timeout is a Go duration; empty means DefaultTimeout.
	Timeout string `json:"timeout,omitempty"`
	// Artifacts are the globs of the files to upload (see the runner).
	Artifacts []string `json:"artifacts,omitempty"`
	// Env is the task's extra environment (plain, not secret).
	Env map[string]string `json:"env,omitempty"`
	// KeepSandbox keeps the sandbox when the job ends.
	KeepSandbox bool `json:"keep_sandbox,omitempty"`
	// Owner is free text naming who asked for the job.
	Owner string `json:"owner,omitempty"`
}

// Registered is the answer of POST /v1/jobs.
type Registered struct {
	// Job is the new job, status requested.
	Job Job `json:"job"`
	// BootstrapToken lets the runner fetch the spec once. The reaper keeps
	// only its sha256: it is shown here and nowhere else.
	BootstrapToken string `json:"bootstrap_token"`
}

// SandboxRequest is the body of PUT /v1/jobs/{id}/sandbox.
type SandboxRequest struct {
	Node string `json:"node"`
	VMID int    `json:"vmid"`
	// Workspace is the workspace volume attached to the sandbox (e.g.
	// "local-lvm:vm-999000-disk-0"), empty when none. With one, the spec
	// tells the runner to work in /workspace.
	Workspace string `json:"workspace,omitempty"`
}

// WorkspaceMount is where a sandbox's workspace volume is mounted.
const WorkspaceMount = "/workspace"

// StatusRequest is the body of POST /v1/jobs/{id}/status: the statuses
// the provider drives (provisioning, booting).
type StatusRequest struct {
	Status Status `json:"status"`
}

// ListResponse is the answer of GET /v1/jobs.
type ListResponse struct {
	Jobs []Job `json:"jobs"`
}

// ArtifactsResponse is the answer of GET /v1/jobs/{id}/artifacts.
type ArtifactsResponse struct {
	Artifacts []Artifact `json:"artifacts"`
}

// Spec is what the runner fetches from the guest listener with its
// bootstrap token (GET /v1/job/spec).
type Spec struct {
	ID             string            `json:"id"`
	Repo           string            `json:"repo"`
	Ref            string            `json:"ref"`
	Task           string            `json:"task"`
	TimeoutSeconds int64             `json:"timeout_seconds"`
	Artifacts      []string          `json:"artifacts"`
	Env            map[string]string `json:"env"`
	// Token is the job token for every later guest request.
	Token string `json:"token"`
	// Workspace is where the workspace volume is mounted ("/workspace"),
	// or empty when the sandbox has none.
	Workspace string `json:"workspace"`
}

// Finished is the body of POST /v1/job/finished.
type Finished struct {
	ExitCode int  `json:"exit_code"`
	TimedOut bool `json:"timed_out"`
	// Error, when set, says why the runner could not run the task or
	// deliver its results (clone failed, an upload failed): the job fails
	// with it as the reason.
	Error string `json:"error,omitempty"`
	// NotRun says the task never ran (the checkout failed): the job has no
	// exit code. A runner sets ExitCode too, for reapers that predate it.
	NotRun bool `json:"not_run,omitempty"`
}

// Headers of GET /v1/jobs/{id}/log and of artifact downloads.
const (
	// HeaderLogOffset is the offset to ask for next.
	HeaderLogOffset = "X-Log-Offset"
	// HeaderLogComplete is "true" once the job ended: the log will not grow.
	HeaderLogComplete = "X-Log-Complete"
	// HeaderChecksum is the hex sha256 of a downloaded artifact.
	HeaderChecksum = "X-Checksum-Sha256"
)

// DefaultTimeout is the timeout of a job registered without one.
const DefaultTimeout = 30 * time.Minute

// MaxTimeout bounds a job's timeout.
const MaxTimeout = 7 * 24 * time.Hour
