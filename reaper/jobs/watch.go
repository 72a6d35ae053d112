package jobs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/agentlab/terraform-provider-agentlab/internal/job"
	"github.com/agentlab/terraform-provider-agentlab/internal/lease"
	"github.com/agentlab/terraform-provider-agentlab/internal/pve"
	"github.com/agentlab/terraform-provider-agentlab/internal/volume"
	"github.com/agentlab/terraform-provider-agentlab/reaper"
)

// Run removes the files of uploads a crash interrupted, then runs Check
// every Interval, and at once when a job ends, until ctx is done.
func (s *Service) Run(ctx context.Context) error {
	if err := s.RemovePartial(); err != nil {
		s.log.Warn("cannot remove interrupted uploads", "dir", s.opts.Dir, "err", err)
	}
	t := time.NewTicker(s.opts.Interval)
	defer t.Stop()
	for {
		if err := s.Check(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("job check failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		case <-s.kick:
		}
	}
}

// Check looks at every job once: a job whose runner went silent, whose
// sandbox vanished or that outlived its timeout ends; an ended job's
// sandbox is destroyed (or kept); jobs past retention are removed.
func (s *Service) Check(ctx context.Context) error {
	js, err := s.store.Jobs(ctx)
	if err != nil {
		return err
	}
	now := s.clock.Now().UTC()
	present, listed := s.presentVMs(ctx, js)
	var errs []error
	var sandboxes []reaper.Job
	for _, j := range js {
		if ctx.Err() != nil {
			break
		}
		switch {
		case !j.Status.Ended():
			var vm *bool
			if listed && j.VMID != 0 {
				_, ok := present[pve.VMRef{Node: j.Node, VMID: j.VMID}]
				vm = &ok
			}
			if err := s.watch(ctx, j, now, vm); err != nil {
				errs = append(errs, err)
			}
		case j.VMID != 0 && j.SandboxFate == reaper.FatePending:
			sandboxes = append(sandboxes, j)
		case s.opts.Retention >= 0 && now.Sub(j.FinishedAt) > s.opts.Retention:
			if err := s.remove(ctx, j); err != nil {
				errs = append(errs, err)
			}
		}
	}
	errs = append(errs, s.endSandboxes(ctx, sandboxes)...)
	js, err = s.store.Jobs(ctx)
	if err == nil {
		counts := map[job.Status]int{}
		for _, j := range js {
			counts[j.Status]++
		}
		s.m.SetJobs(counts)
	}
	return errors.Join(append(errs, err)...)
}

// presentVMs lists the cluster's VMs when a running job has a sandbox.
func (s *Service) presentVMs(ctx context.Context, js []reaper.Job) (map[pve.VMRef]bool, bool) {
	if s.pve == nil {
		return nil, false
	}
	need := false
	for _, j := range js {
		need = need || (!j.Status.Ended() && j.VMID != 0)
	}
	if !need {
		return nil, false
	}
	vms, err := s.pve.ListVMs(ctx)
	if err != nil {
		s.log.Warn("cannot list VMs to check job sandboxes; checking next time", "err", err)
		return nil, false
	}
	present := make(map[pve.VMRef]bool, len(vms))
	for _, v := range vms {
		present[v.Ref()] = true
	}
	return present, true
}

// verdict says whether a job that has not ended must end now, and why.
// vm tells whether its sandbox VM exists (nil: unknown).
func (s *Service) verdict(j reaper.Job, now time.Time, vm *bool) (job.Status, string) {
	silent := now.Sub(j.LastSeen)
	switch {
	case vm != nil && !*vm && (j.SandboxSeen || j.BootstrapUsed):
		return job.StatusLost, fmt.Sprintf("sandbox VM %d on %s vanished", j.VMID, j.Node)
	case j.Status == job.StatusRunning && now.Sub(j.StartedAt) > j.TimeoutDuration+s.opts.HeartbeatGrace:
		return job.StatusTimedOut, fmt.Sprintf("the runner did not report the end within the timeout (%s)", j.Timeout)
	case j.BootstrapUsed && silent > s.opts.HeartbeatGrace:
		return job.StatusLost, fmt.Sprintf("no heartbeat from the runner for %s", silent.Truncate(time.Second))
	case !j.BootstrapUsed && j.VMID == 0 && silent > s.opts.BootTimeout:
		return job.StatusLost, fmt.Sprintf("no sandbox was set for the job within %s", s.opts.BootTimeout)
	case !j.BootstrapUsed && silent > s.opts.BootTimeout:
		return job.StatusLost, fmt.Sprintf("the runner did not fetch its spec within %s of the sandbox's creation", s.opts.BootTimeout)
	}
	return "", ""
}

// watch ends a job whose runner went silent, whose sandbox vanished or that
// outlived its timeout, and remembers a sandbox seen to exist.
func (s *Service) watch(ctx context.Context, j reaper.Job, now time.Time, vm *bool) error {
	st, _ := s.verdict(j, now, vm)
	seen := vm != nil && *vm && !j.SandboxSeen
	if st == "" && !seen {
		return nil
	}
	ended := false
	id := j.ID
	j, err := s.store.UpdateJob(ctx, id, func(cur *reaper.Job) error {
		if cur.Status.Ended() {
			return nil
		}
		if vm != nil && *vm {
			cur.SandboxSeen = true
		}
		st, reason := s.verdict(*cur, now, vm) // again: the runner may have spoken since
		if st == "" {
			return nil
		}
		s.end(cur, st, nil, reason)
		ended = true
		return nil
	})
	if err != nil {
		return fmt.Errorf("job %s: %w", id, err)
	}
	if ended {
		s.ended(ctx, j)
	}
	return nil
}

// endSandboxes ends the sandboxes of jobs that ended, DestroyConcurrency at
// a time: each is a stop and a destroy task of a few seconds, so jobs that
// end together (a pool's jobs often do) would otherwise have their VMs, and
// the host's memory and CPU, kept one destroy after the other.
func (s *Service) endSandboxes(ctx context.Context, js []reaper.Job) []error {
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	sem := make(chan struct{}, s.opts.DestroyConcurrency)
	for _, j := range js {
		if ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := s.endSandbox(ctx, j); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errs
}

// endSandbox destroys the sandbox of an ended job, unless keep_sandbox. The
// VM's config is read just before: a VM that is not tagged agentlab or whose
// metadata names another job is never touched (its VMID may be reused).
func (s *Service) endSandbox(ctx context.Context, j reaper.Job) error {
	ref := pve.VMRef{Node: j.Node, VMID: j.VMID}
	if j.KeepSandbox {
		return s.setFate(ctx, j, reaper.FateKept, "keep_sandbox is set; the sandbox stays until its lease ends")
	}
	if s.pve == nil {
		return nil
	}
	if s.opts.DryRun {
		return nil
	}
	cfg, err := s.pve.Config(ctx, ref)
	if pve.IsNotFound(err) {
		return s.setFate(ctx, j, reaper.FateGone, "the sandbox no longer exists")
	}
	if err != nil {
		return fmt.Errorf("job %s: read sandbox config: %w", j.ID, err)
	}
	if reason := notOurs(cfg, j.ID); reason != "" {
		s.log.Error("refusing to destroy a job's sandbox", "job", j.ID, "vmid", j.VMID, "reason", reason)
		return s.setFate(ctx, j, reaper.FateRefused, reason)
	}
	var detach []string
	for _, d := range cfg.Disks() {
		if owner, ok := volume.Owner(d.Volume); ok && owner != j.VMID {
			detach = append(detach, d.Key)
		}
	}
	if len(detach) > 0 {
		if err := s.pve.Stop(ctx, ref); err != nil && !pve.IsNotFound(err) {
			return fmt.Errorf("job %s: stop sandbox before detaching the workspace: %w", j.ID, err)
		}
		if err := s.pve.UpdateConfig(ctx, ref, pve.ConfigUpdate{Delete: detach, Digest: cfg.Digest()}); err != nil && !pve.IsNotFound(err) {
			return fmt.Errorf("job %s: detach workspace: %w", j.ID, err)
		}
	}
	if err := s.pve.Destroy(ctx, ref); err != nil {
		return fmt.Errorf("job %s: destroy sandbox: %w", j.ID, err)
	}
	return s.setFate(ctx, j, reaper.FateDestroyed, fmt.Sprintf("job ended as %s", j.Status))
}

// notOurs says why cfg is not the sandbox of job id, or "".
func notOurs(cfg pve.VMConfig, id string) string {
	if !lease.Owned(cfg.Tags()) {
		return "the VM is not tagged agentlab"
	}
	m, err := lease.Decode(cfg.Description())
	if err != nil {
		return fmt.Sprintf("the VM's metadata cannot be read: %v", err)
	}
	if m.JobID != id {
		return fmt.Sprintf("the VM's metadata names job %q, not %s", m.JobID, id)
	}
	return ""
}

func (s *Service) setFate(ctx context.Context, j reaper.Job, fate reaper.SandboxFate, reason string) error {
	if _, err := s.store.UpdateJob(ctx, j.ID, func(cur *reaper.Job) error {
		cur.SandboxFate = fate
		return nil
	}); err != nil {
		return err
	}
	decision := reaper.DecisionDone
	if fate == reaper.FateRefused {
		decision = reaper.DecisionSkip
	}
	s.log.Info("job sandbox "+string(fate), "job", j.ID, "vmid", j.VMID, "node", j.Node, "reason", reason)
	return s.store.AddEvents(ctx, reaper.Event{Time: s.clock.Now().UTC(), VMID: j.VMID, Node: j.Node, Kind: reaper.KindJob,
		Decision: decision, Reason: fmt.Sprintf("job %s: sandbox %s: %s", j.ID, fate, reason), Actor: reaper.ActorReaper})
}

// remove deletes a job past retention: its artifact files, then its rows.
func (s *Service) remove(ctx context.Context, j reaper.Job) error {
	dir, err := s.jobDir(j.ID)
	if err != nil {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove artifacts of %s: %w", j.ID, err)
	}
	if err := s.store.DeleteJob(ctx, j.ID); err != nil {
		return err
	}
	s.log.Info("job removed after retention", "job", j.ID, "finished_at", j.FinishedAt)
	return nil
}
