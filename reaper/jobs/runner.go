package jobs

import (
	"context"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/agentlab/terraform-provider-agentlab/internal/job"
	"github.com/agentlab/terraform-provider-agentlab/reaper"
)

// ErrTokenUsed is a bootstrap token presented a second time.
var ErrTokenUsed = errors.New("bootstrap token already used")

// Spec hands the runner its job, once: the bootstrap token stops working
// and the spec carries the job token for every later request. A replayed
// bootstrap token is an error wrapping both ErrTokenUsed and
// reaper.ErrUnauthorized; a job that already ended (cancelled) wraps
// job.ErrTransition.
func (s *Service) Spec(ctx context.Context, bootstrap string) (job.Spec, error) {
	sum := sha256Hex(bootstrap)
	found, err := s.store.JobByBootstrap(ctx, sum)
	if err != nil {
		return job.Spec{}, err
	}
	token := job.NewToken()
	now := s.clock.Now().UTC()
	j, err := s.store.UpdateJob(ctx, found.ID, func(j *reaper.Job) error {
		if j.BootstrapUsed {
			return fmt.Errorf("%w: %w", ErrTokenUsed, reaper.ErrUnauthorized)
		}
		if j.Status.Ended() {
			return fmt.Errorf("%w: job %s already ended as %s", job.ErrTransition, j.ID, j.Status)
		}
		j.BootstrapUsed, j.TokenSHA256, j.LastSeen = true, sha256Hex(token), now
		if job.CanTransition(j.Status, job.StatusBooting) {
			j.Status = job.StatusBooting
		}
		return nil
	})
	if err != nil {
		return job.Spec{}, err
	}
	s.log.Info("job spec fetched", "job", j.ID, "vmid", j.VMID)
	spec := job.Spec{ID: j.ID, Repo: j.Repo, Ref: j.Ref, Task: j.Task, TimeoutSeconds: int64(j.TimeoutDuration.Seconds()),
		Artifacts: j.ArtifactsGlobs, Env: j.Env, Token: token}
	if spec.Env == nil {
		spec.Env = map[string]string{}
	}
	if j.Workspace != "" {
		spec.Workspace = job.WorkspaceMount
	}
	return spec, nil
}

// Authenticate returns the job a job token belongs to, or an error
// wrapping reaper.ErrUnauthorized. Tokens of ended jobs no longer work.
func (s *Service) Authenticate(ctx context.Context, token string) (reaper.Job, error) {
	if token == "" {
		return reaper.Job{}, reaper.ErrUnauthorized
	}
	return s.store.JobByToken(ctx, sha256Hex(token))
}

// Started records that the runner started the task: the job is running.
func (s *Service) Started(ctx context.Context, id string) error {
	now := s.clock.Now().UTC()
	_, err := s.store.UpdateJob(ctx, id, func(j *reaper.Job) error {
		j.LastSeen = now
		if j.Status == job.StatusRunning {
			return nil
		}
		if err := job.Transition(j.Status, job.StatusRunning); err != nil {
			return err
		}
		j.Status, j.StartedAt = job.StatusRunning, now
		return nil
	})
	return err
}

// Heartbeat records that the runner is alive.
func (s *Service) Heartbeat(ctx context.Context, id string) error {
	now := s.clock.Now().UTC()
	_, err := s.store.UpdateJob(ctx, id, func(j *reaper.Job) error {
		if j.Status.Ended() {
			return fmt.Errorf("%w: job %s already ended as %s", job.ErrTransition, j.ID, j.Status)
		}
		j.LastSeen = now
		return nil
	})
	return err
}

// AppendLog appends a chunk of the task's output to the job's log; past
// MaxLogBytes the rest is dropped. It returns the log's size.
func (s *Service) AppendLog(ctx context.Context, id string, data []byte) (int64, error) {
	_, size, err := s.store.AppendLog(ctx, id, data, s.opts.MaxLogBytes, s.clock.Now().UTC())
	return size, err
}

// Finished records the task's end: succeeded for exit code 0, timed_out
// when the runner's timer fired, failed otherwise (and without an exit
// code when the task never ran). The job token stops working and the
// sandbox is ended.
func (s *Service) Finished(ctx context.Context, id string, f job.Finished) (job.Job, error) {
	j, err := s.store.UpdateJob(ctx, id, func(j *reaper.Job) error {
		st, reason := job.StatusSucceeded, ""
		switch {
		case f.TimedOut:
			st, reason = job.StatusTimedOut, fmt.Sprintf("the task ran longer than its timeout (%s)", j.Timeout)
		case f.ExitCode != 0:
			st, reason = job.StatusFailed, fmt.Sprintf("the task exited with code %d", f.ExitCode)
		}
		if f.Error != "" && !f.TimedOut {
			st, reason = job.StatusFailed, "runner: "+truncate(f.Error, 500)
		}
		var code *int
		switch {
		case !f.NotRun:
			code = &f.ExitCode
		case f.Error == "":
			st, reason = job.StatusFailed, "runner: the task did not run"
		}
		if err := job.Transition(j.Status, st); err != nil {
			return err
		}
		s.end(j, st, code, reason)
		if j.StartedAt.IsZero() {
			j.StartedAt = j.FinishedAt
		}
		return nil
	})
	if err != nil {
		return job.Job{}, err
	}
	s.ended(ctx, j)
	return j.Job, nil
}

// truncate cuts s to at most n bytes, on a rune boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
