// Package jobs is the reaper's job registry: it registers jobs for the
// provider, answers the runner inside the sandbox (spec, log, heartbeats,
// artifacts, the end), notices runners that went silent and sandboxes that
// vanished, ends each job's sandbox when the job ends, and removes old jobs.
//
// Every status change goes through job.Transition inside one store
// transaction, so the provider, the runner and the watchdog can race without
// a job ever leaving an end status.
package jobs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/agentlab/terraform-provider-agentlab/internal/clock"
	"github.com/agentlab/terraform-provider-agentlab/internal/job"
	"github.com/agentlab/terraform-provider-agentlab/internal/pve"
	"github.com/agentlab/terraform-provider-agentlab/reaper"
)

// Store keeps jobs, logs and artifact records; *sqlite.DB is one.
type Store interface {
	CreateJob(ctx context.Context, j reaper.Job) error
	Job(ctx context.Context, id string) (reaper.Job, error)
	JobByToken(ctx context.Context, sha256Hex string) (reaper.Job, error)
	JobByBootstrap(ctx context.Context, sha256Hex string) (reaper.Job, error)
	Jobs(ctx context.Context) ([]reaper.Job, error)
	UpdateJob(ctx context.Context, id string, fn func(*reaper.Job) error) (reaper.Job, error)
	DeleteJob(ctx context.Context, id string) error
	AppendLog(ctx context.Context, id string, data []byte, limit int64, at time.Time) (int, int64, error)
	ReadLog(ctx context.Context, id string, offset int64, limit int) ([]byte, error)
	PutArtifact(ctx context.Context, id string, a reaper.ArtifactFile) (string, error)
	Artifacts(ctx context.Context, id string) ([]reaper.ArtifactFile, error)
	AddEvents(ctx context.Context, events ...reaper.Event) error
}

// Proxmox is what the registry needs from the Proxmox VE API to end a
// job's sandbox; *pve.Client has it.
type Proxmox interface {
	ListVMs(ctx context.Context) ([]pve.VMEntry, error)
	Config(ctx context.Context, ref pve.VMRef) (pve.VMConfig, error)
	UpdateConfig(ctx context.Context, ref pve.VMRef, upd pve.ConfigUpdate) error
	Stop(ctx context.Context, ref pve.VMRef) error
	Destroy(ctx context.Context, ref pve.VMRef) error
}

// Metrics receives what the registry counts; *metrics.Metrics is one.
type Metrics interface {
	SetJobs(counts map[job.Status]int)
	JobEnded(status job.Status, d time.Duration)
	ArtifactBytes(n int64)
}

// Options configure a Service. Zero values take the defaults noted.
type Options struct {
	// Dir is the artifacts directory. Required.
	Dir string
	// MaxBytes bounds one artifact upload. Default 10 GiB.
	MaxBytes int64
	// MaxLogBytes bounds a job's log; the rest is dropped. Default 64 MiB.
	MaxLogBytes int64
	// HeartbeatGrace is how long a runner may stay silent before its job is
	// lost. Default 90 s (three missed 30 s heartbeats).
	HeartbeatGrace time.Duration
	// BootTimeout is how long a job with a sandbox may wait for its runner
	// to fetch the spec, and a registered job for its sandbox, before it is
	// lost. Default 15 min.
	BootTimeout time.Duration
	// Retention is how long an ended job's rows and files are kept. Default
	// 720 h; negative keeps them forever.
	Retention time.Duration
	// Interval is the watchdog's period in Run. Default 10 s.
	Interval time.Duration
	// DestroyConcurrency bounds how many ended jobs' sandboxes are
	// destroyed at once. Default 4, as the reconcile loop's destroys.
	DestroyConcurrency int
	// DryRun keeps the registry from destroying sandboxes.
	DryRun bool
	// Clock tells the time. Default the wall clock. When it also makes
	// timers (clock.Timers, as clock.Fake does), Watch holds its answers on
	// them.
	Clock clock.Clock
	// Logger receives what the registry does. Default discards.
	Logger *slog.Logger
	// Metrics receives counts. Default none.
	Metrics Metrics
}

// Service is the job registry. Create it with New.
type Service struct {
	store Store
	pve   Proxmox
	opts  Options
	clock clock.Clock
	log   *slog.Logger
	m     Metrics
	kick  chan struct{}
	// timers time Watch's holds; changes wakes it.
	timers  clock.Timers
	changes *changes
}

// New returns a registry over store; pve may be nil, and then no sandbox is
// ever destroyed or checked.
func New(store Store, pve Proxmox, opts Options) (*Service, error) {
	if opts.Dir == "" {
		return nil, errors.New("jobs: the artifacts directory is empty")
	}
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = 10 << 30
	}
	if opts.MaxLogBytes <= 0 {
		opts.MaxLogBytes = 64 << 20
	}
	if opts.HeartbeatGrace <= 0 {
		opts.HeartbeatGrace = 90 * time.Second
	}
	if opts.BootTimeout <= 0 {
		opts.BootTimeout = 15 * time.Minute
	}
	if opts.Retention == 0 {
		opts.Retention = 720 * time.Hour
	}
	if opts.Interval <= 0 {
		opts.Interval = 10 * time.Second
	}
	if opts.DestroyConcurrency <= 0 {
		opts.DestroyConcurrency = 4
	}
	if opts.Clock == nil {
		opts.Clock = clock.Real{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	m := opts.Metrics
	if m == nil {
		m = noMetrics{}
	}
	timers, ok := opts.Clock.(clock.Timers)
	if !ok {
		timers = clock.Real{}
	}
	ch := newChanges()
	return &Service{store: watchedStore{Store: store, changes: ch}, pve: pve, opts: opts, clock: opts.Clock,
		log: opts.Logger, m: m, kick: make(chan struct{}, 1), timers: timers, changes: ch}, nil
}

// Register records a new job (status requested) and returns it with its
// one-time bootstrap token.
func (s *Service) Register(ctx context.Context, req job.RegisterRequest) (job.Registered, error) {
	req, timeout, err := req.Normalize()
	if err != nil {
		return job.Registered{}, err
	}
	now := s.clock.Now().UTC()
	bootstrap := job.NewToken()
	globs := req.Artifacts
	if globs == nil {
		globs = []string{}
	}
	j := reaper.Job{
		Job: job.Job{
			ID: job.NewID(), Repo: req.Repo, Ref: req.Ref, Task: req.Task, Timeout: req.Timeout,
			ArtifactsGlobs: globs, EnvKeys: job.EnvKeys(req.Env), KeepSandbox: req.KeepSandbox, Owner: req.Owner,
			Status: job.StatusRequested, CreatedAt: now,
		},
		Env: req.Env, TimeoutDuration: timeout, BootstrapSHA256: sha256Hex(bootstrap), LastSeen: now,
	}
	if err := s.store.CreateJob(ctx, j); err != nil {
		return job.Registered{}, err
	}
	s.log.Info("job registered", "job", j.ID, "repo", j.Repo, "ref", j.Ref, "timeout", j.Timeout, "owner", j.Owner)
	v, err := s.view(ctx, j)
	return job.Registered{Job: v, BootstrapToken: bootstrap}, err
}

// Get returns one job as the control API shows it.
func (s *Service) Get(ctx context.Context, id string) (job.Job, error) {
	j, err := s.load(ctx, id)
	if err != nil {
		return job.Job{}, err
	}
	return s.view(ctx, j)
}

// List returns every job, newest first.
func (s *Service) List(ctx context.Context) ([]job.Job, error) {
	js, err := s.store.Jobs(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]job.Job, 0, len(js))
	for _, j := range js {
		v, err := s.view(ctx, j)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// SetSandbox records the job's sandbox. Setting the same one again is
// harmless; another one is a conflict. A job that already ended takes it
// too, and the watchdog destroys it (unless keep_sandbox): the caller sees
// the end status in the answer.
func (s *Service) SetSandbox(ctx context.Context, id string, sb job.SandboxRequest) (job.Job, error) {
	if sb.Node == "" || sb.VMID <= 0 {
		return job.Job{}, &job.FieldError{Field: "vmid", Problem: "node and a positive vmid are required"}
	}
	if !job.ValidID(id) {
		return job.Job{}, fmt.Errorf("%q: %w", id, job.ErrNotFound)
	}
	now := s.clock.Now().UTC()
	j, err := s.store.UpdateJob(ctx, id, func(j *reaper.Job) error {
		if j.VMID == sb.VMID && j.Node == sb.Node {
			if sb.Workspace != "" {
				j.Workspace = sb.Workspace
			}
			return nil
		}
		if j.VMID != 0 {
			return fmt.Errorf("%w: job %s already runs in VM %d on %s", reaper.ErrConflict, id, j.VMID, j.Node)
		}
		// A job that already ended (lost waiting for its sandbox, cancelled)
		// still takes the VM, so the watchdog destroys it: nothing is orphaned.
		j.Node, j.VMID, j.Workspace, j.LastSeen = sb.Node, sb.VMID, sb.Workspace, now
		return nil
	})
	if err != nil {
		return job.Job{}, err
	}
	if j.Status.Ended() {
		s.wake()
	}
	s.log.Info("job sandbox set", "job", id, "node", sb.Node, "vmid", sb.VMID, "workspace", sb.Workspace)
	return s.view(ctx, j)
}

// SetStatus moves the job to provisioning or booting, the statuses the
// provider drives. A repeated report, or one that comes after the runner or
// the watchdog moved the job further, changes nothing.
func (s *Service) SetStatus(ctx context.Context, id string, st job.Status) (job.Job, error) {
	if st != job.StatusProvisioning && st != job.StatusBooting {
		return job.Job{}, &job.FieldError{Field: "status", Problem: fmt.Sprintf("%q: the provider may set only provisioning or booting", st)}
	}
	j, err := s.loadUpdate(ctx, id, func(j *reaper.Job) error {
		if job.CanTransition(j.Status, st) {
			j.Status = st
		}
		return nil
	})
	if err != nil {
		return job.Job{}, err
	}
	return s.view(ctx, j)
}

// Cancel ends a job that has not ended as failed, reason "cancelled" (or
// "cancelled: why"), and has its sandbox destroyed (unless keep_sandbox).
func (s *Service) Cancel(ctx context.Context, id, why string) (job.Job, error) {
	reason, err := job.CancelledReason(why)
	if err != nil {
		return job.Job{}, err
	}
	var ended bool
	j, err := s.loadUpdate(ctx, id, func(j *reaper.Job) error {
		if j.Status.Ended() {
			return nil
		}
		ended = true
		s.end(j, job.StatusFailed, nil, reason)
		return nil
	})
	if err != nil {
		return job.Job{}, err
	}
	if ended {
		s.ended(ctx, j)
	}
	return s.view(ctx, j)
}

// load reads a job by ID; malformed IDs are not found.
func (s *Service) load(ctx context.Context, id string) (reaper.Job, error) {
	if !job.ValidID(id) {
		return reaper.Job{}, fmt.Errorf("%q: %w", id, job.ErrNotFound)
	}
	return s.store.Job(ctx, id)
}

func (s *Service) loadUpdate(ctx context.Context, id string, fn func(*reaper.Job) error) (reaper.Job, error) {
	if !job.ValidID(id) {
		return reaper.Job{}, fmt.Errorf("%q: %w", id, job.ErrNotFound)
	}
	return s.store.UpdateJob(ctx, id, fn)
}

// end moves j to an end status; the job token stops working.
func (s *Service) end(j *reaper.Job, st job.Status, exit *int, reason string) {
	j.Status, j.ExitCode, j.Reason = st, exit, reason
	j.FinishedAt = s.clock.Now().UTC()
	j.TokenSHA256 = ""
}

// ended logs and counts a job that just ended and wakes the watchdog to
// deal with its sandbox.
func (s *Service) ended(ctx context.Context, j reaper.Job) {
	d := j.FinishedAt.Sub(j.CreatedAt)
	s.m.JobEnded(j.Status, d)
	s.log.Info("job ended", "job", j.ID, "status", j.Status, "reason", j.Reason, "exit_code", derefOr(j.ExitCode, -1),
		"duration", d.String(), "vmid", j.VMID)
	if j.VMID != 0 {
		_ = s.store.AddEvents(ctx, reaper.Event{Time: j.FinishedAt, VMID: j.VMID, Node: j.Node, Kind: reaper.KindJob,
			Decision: reaper.DecisionDone, Reason: fmt.Sprintf("job %s ended: %s %s", j.ID, j.Status, j.Reason), Actor: reaper.ActorReaper})
	}
	s.wake()
}

// wake makes the watchdog check the jobs now.
func (s *Service) wake() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// view fills in the log tail and the artifacts.
func (s *Service) view(ctx context.Context, j reaper.Job) (job.Job, error) {
	v := j.Job
	from := max(j.LogSize-job.LogTailBytes, 0)
	tail, err := s.store.ReadLog(ctx, j.ID, from, job.LogTailBytes)
	if err != nil {
		return job.Job{}, err
	}
	v.LogTail = string(tail)
	arts, err := s.store.Artifacts(ctx, j.ID)
	if err != nil {
		return job.Job{}, err
	}
	v.Artifacts = make([]job.Artifact, 0, len(arts))
	for _, a := range arts {
		v.Artifacts = append(v.Artifacts, a.Artifact)
	}
	if v.EnvKeys == nil {
		v.EnvKeys = []string{}
	}
	return v, nil
}

func sha256Hex(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

func derefOr(p *int, def int) int {
	if p == nil {
		return def
	}
	return *p
}

type noMetrics struct{}

func (noMetrics) SetJobs(map[job.Status]int)         {}
func (noMetrics) JobEnded(job.Status, time.Duration) {}
func (noMetrics) ArtifactBytes(int64)                {}

// ReadLog returns up to limit bytes of the job's log from offset on, the
// offset to ask for next, and whether the log is complete (the job ended
// and nothing is left past next).
func (s *Service) ReadLog(ctx context.Context, id string, offset int64, limit int) ([]byte, int64, bool, error) {
	j, err := s.load(ctx, id)
	if err != nil {
		return nil, 0, false, err
	}
	offset = min(offset, j.LogSize)
	data, err := s.store.ReadLog(ctx, id, offset, limit)
	if err != nil {
		return nil, 0, false, err
	}
	next := offset + int64(len(data))
	return data, next, j.Status.Ended() && next >= j.LogSize, nil
}
