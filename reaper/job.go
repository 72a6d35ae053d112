package reaper

import (
	"time"

	"github.com/agentlab/terraform-provider-agentlab/internal/job"
)

// Job is the reaper's record of a job: the public view the control API shows
// and what only the reaper may know (token hashes, the env values, the
// runner's last sign of life, what became of the sandbox).
type Job struct {
	job.Job
	// Env is the task's environment, handed to the runner in the spec.
	Env map[string]string
	// TimeoutDuration is Job.Timeout parsed.
	TimeoutDuration time.Duration
	// Workspace is the workspace volume attached to the sandbox, if any.
	Workspace string
	// BootstrapSHA256 is the hex sha256 of the one-time bootstrap token;
	// BootstrapUsed is set once the runner fetched its spec with it.
	BootstrapSHA256 string
	BootstrapUsed   bool
	// TokenSHA256 is the hex sha256 of the job token, empty before the spec
	// is fetched and after the job ended (the token then stops working).
	TokenSHA256 string
	// LastSeen is the runner's last sign of life (spec, log, heartbeat), or
	// when the job was registered or got its sandbox.
	LastSeen time.Time
	// SandboxSeen is set once the reaper saw the sandbox VM exist.
	SandboxSeen bool
	// SandboxFate is what became of the sandbox after the job ended.
	SandboxFate SandboxFate
	// LogSize is the length of the log in bytes.
	LogSize int64
}

// SandboxFate is what became of a job's sandbox after the job ended.
type SandboxFate string

// The fates of a job's sandbox.
const (
	// FatePending is a sandbox the reaper has not dealt with yet (or the job
	// has not ended).
	FatePending SandboxFate = ""
	// FateDestroyed is a sandbox the reaper destroyed.
	FateDestroyed SandboxFate = "destroyed"
	// FateKept is a sandbox left running because of keep_sandbox.
	FateKept SandboxFate = "kept"
	// FateGone is a sandbox that no longer existed (or never had a VM).
	FateGone SandboxFate = "gone"
	// FateRefused is a VM the reaper refused to destroy: its metadata does
	// not name the job, so the VMID may have been reused.
	FateRefused SandboxFate = "refused"
)

// ArtifactFile is an artifact and where its bytes are.
type ArtifactFile struct {
	job.Artifact
	// Path is the file holding the bytes.
	Path string
	// CreatedAt is when the upload completed.
	CreatedAt time.Time
}

// KindJob records what the reaper did about a job's sandbox: the job's end,
// the sandbox destroyed, kept or refused.
const KindJob EventKind = "job"
