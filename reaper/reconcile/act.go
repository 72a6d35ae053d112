package reconcile

import (
	"context"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/agentlab/terraform-provider-agentlab/internal/pve"
	"github.com/agentlab/terraform-provider-agentlab/internal/volume"
	"github.com/agentlab/terraform-provider-agentlab/reaper"
)

// maxBackoff caps the wait between attempts at a failing destroy.
const maxBackoff = time.Hour

// runActions destroys or stops the VMs in todo, ActionConcurrency at a time,
// and waits for all of them.
func (l *Loop) runActions(ctx context.Context, todo []int) {
	if len(todo) == 0 {
		return
	}
	sem := make(chan struct{}, l.opts.ActionConcurrency)
	var wg sync.WaitGroup
	for _, vmid := range todo {
		l.mu.Lock()
		e := l.vms[vmid]
		if e == nil || e.inFlight {
			l.mu.Unlock()
			continue
		}
		e.inFlight = true
		l.mu.Unlock()
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			l.act(ctx, vmid)
		})
	}
	wg.Wait()
}

// act re-reads the VM's config, decides again on what it finds, records the
// intent, acts and records the outcome. The action runs to its end even if
// ctx is cancelled (bounded by ActionTimeout): stopping half-way would only
// leave work for the next start.
func (l *Loop) act(ctx context.Context, vmid int) {
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), l.opts.ActionTimeout)
	defer cancel()
	unlock := l.locks.lock(vmid)
	defer unlock()
	defer func() {
		l.mu.Lock()
		if e := l.vms[vmid]; e != nil {
			e.inFlight = false
		}
		l.mu.Unlock()
	}()

	l.mu.Lock()
	e := l.vms[vmid]
	if e == nil {
		l.mu.Unlock()
		return
	}
	ref := pve.VMRef{Node: e.lease.Node, VMID: vmid}
	kind, status, lock, resumed := e.kind, e.lease.Status, e.lock, e.lease.State == reaper.StateDestroying
	l.mu.Unlock()

	// Never act on what the resource list or an earlier read said: read the
	// config now and decide again on it.
	cfg, err := l.pve.Config(actx, ref)
	if pve.IsNotFound(err) {
		return // gone; the next tick records it
	}
	if err != nil {
		l.failed(vmid, actNone, fmt.Errorf("read config before acting: %w", err), false)
		return
	}
	now := l.clock.Now()
	l.mu.Lock()
	e.setConfig(cfg, l.opts.MaxLease)
	e.operatorKept = l.kept[vmid]
	f := e.facts()
	f.kind, f.status, f.lock = kind, status, lock
	if cl := cfg.Lock(); cl != "" {
		f.lock = cl
	}
	v := decide(f, now, l.policy())
	e.verdict, e.decided, e.nextCheck = v, true, nextCheck(e, v, l.policy())
	if v.act == actNone || l.opts.DryRun {
		ev, ok := l.transition(e, v, now)
		saved := e.lease
		e.dirty = false
		l.mu.Unlock()
		var evs []reaper.Event
		if ok {
			evs = append(evs, ev)
		}
		if err := l.store.Record(actx, []reaper.Lease{saved}, evs); err != nil {
			l.log.Error("cannot record decision", "vmid", vmid, "err", err)
		}
		return
	}
	meta := e.metadata()
	l.mu.Unlock()

	detach, err := workspaceKeys(cfg, meta.Workspace, vmid)
	if err != nil {
		l.mu.Lock()
		v := verdict{state: reaper.StateInvalid, reason: err.Error()}
		e.verdict, e.nextCheck = v, time.Time{}.AddDate(9999, 0, 0)
		ev, ok := l.transition(e, v, now)
		saved := e.lease
		l.mu.Unlock()
		var evs []reaper.Event
		if ok {
			evs = append(evs, ev)
		}
		if err := l.store.Record(actx, []reaper.Lease{saved}, evs); err != nil {
			l.log.Error("cannot record decision", "vmid", vmid, "err", err)
		}
		return
	}

	// Intent first: if it cannot be recorded, do nothing. The seed ISO to
	// delete once the VM is gone is part of it.
	var isos []string
	if v.act == actDestroy {
		isos = l.seedISOs(cfg, vmid)
		if err := l.recordVolumes(actx, ref.Node, vmid, isos, now); err != nil {
			l.log.Error("cannot record the seed ISO to delete; not acting", "vmid", vmid, "err", err)
			return
		}
	}
	plan := v.act.verb()
	if v.act == actDestroy && len(detach) > 0 {
		plan = fmt.Sprintf("stop, detach workspace %s (%s) and destroy", meta.Workspace, strings.Join(detach, ", "))
	}
	reason := fmt.Sprintf("%s; will %s", v.reason, plan)
	if resumed {
		reason += " (resuming an interrupted attempt)"
	}
	intent := reaper.Event{Time: now, VMID: vmid, Node: ref.Node, Kind: v.act.kind(), Decision: reaper.DecisionIntent,
		Reason: reason, Actor: reaper.ActorReaper}
	l.mu.Lock()
	e.lease.State, e.lease.Reason, e.lease.LastSeen = reaper.StateDestroying, reason, now
	count := !e.countedFor.Equal(meta.ExpiresAt)
	e.countedFor = meta.ExpiresAt
	saved := e.lease
	l.mu.Unlock()
	if err := l.store.Record(actx, []reaper.Lease{saved}, []reaper.Event{intent}); err != nil {
		l.log.Error("cannot record intent; not acting", "vmid", vmid, "err", err)
		l.mu.Lock()
		e.lease.State = reaper.StateExpired
		e.countedFor = time.Time{}
		l.mu.Unlock()
		return
	}
	if count {
		l.m.Expired()
	}
	l.log.Info("sandbox "+string(intent.Kind), "vmid", vmid, "node", ref.Node, "decision", intent.Decision, "reason", reason)

	if err := l.execute(actx, ref, v.act, detach); err != nil {
		l.failed(vmid, v.act, err, true)
		return
	}
	done := reaper.Event{Time: l.clock.Now(), VMID: vmid, Node: ref.Node, Kind: v.act.kind(), Decision: reaper.DecisionDone,
		Actor: reaper.ActorReaper}
	l.mu.Lock()
	e.failures, e.retryAt = 0, time.Time{}
	if v.act == actStop {
		done.Reason = fmt.Sprintf("stopped; lease expired at %s (on_expiry = stop)", stamp(meta.ExpiresAt))
		e.lease.State, e.lease.Status = reaper.StateStopped, "stopped"
		e.verdict = verdict{state: reaper.StateStopped, reason: done.Reason}
	} else {
		done.Reason = fmt.Sprintf("destroyed; lease expired at %s", stamp(meta.ExpiresAt))
		e.lease.State = reaper.StateDestroyed
		e.verdict = verdict{state: reaper.StateDestroyed}
	}
	e.lease.Reason, e.lease.LastSeen = done.Reason, done.Time
	e.decided, e.nextCheck = true, time.Time{}.AddDate(9999, 0, 0)
	saved = e.lease
	l.mu.Unlock()
	if err := l.store.Record(actx, []reaper.Lease{saved}, []reaper.Event{done}); err != nil {
		// Keep the intent open: the next tick (or start) records the outcome.
		l.log.Error("cannot record outcome", "vmid", vmid, "err", err)
		l.mu.Lock()
		e.lease.State = reaper.StateDestroying
		l.mu.Unlock()
		return
	}
	if v.act == actStop {
		l.m.Stopped()
	} else {
		l.m.Destroyed()
		l.deleteVolumes(actx, func(id int) bool { return id == vmid })
	}
	l.log.Info("sandbox "+string(done.Kind), "vmid", vmid, "node", ref.Node, "decision", done.Decision, "reason", done.Reason)
}

// execute stops or destroys the VM. Each step is idempotent, so running it
// again after an interruption finishes the job.
func (l *Loop) execute(ctx context.Context, ref pve.VMRef, a action, detach []string) error {
	if a == actStop {
		return l.pve.Stop(ctx, ref)
	}
	if len(detach) > 0 {
		if err := l.pve.Stop(ctx, ref); err != nil {
			return fmt.Errorf("stop before detaching the workspace: %w", err)
		}
		cfg, err := l.pve.Config(ctx, ref)
		if err != nil {
			return fmt.Errorf("read config before detaching the workspace: %w", err)
		}
		var present []string
		for _, k := range detach {
			if _, ok := cfg.Get(k); ok {
				present = append(present, k)
			}
		}
		if len(present) > 0 {
			if err := l.pve.UpdateConfig(ctx, ref, pve.ConfigUpdate{Delete: present, Digest: cfg.Digest()}); err != nil {
				return fmt.Errorf("detach workspace (%s): %w", strings.Join(present, ", "), err)
			}
		}
	}
	return l.pve.Destroy(ctx, ref)
}

// failed records a failed attempt and backs off: the next attempt waits
// Interval, doubling with each failure up to an hour.
func (l *Loop) failed(vmid int, a action, err error, intentRecorded bool) {
	now := l.clock.Now()
	l.mu.Lock()
	e := l.vms[vmid]
	if e == nil {
		l.mu.Unlock()
		return
	}
	e.failures++
	backoff := l.opts.Interval << min(e.failures-1, 16)
	if backoff > maxBackoff || backoff <= 0 {
		backoff = maxBackoff
	}
	e.retryAt = now.Add(backoff)
	verb := "act"
	if a != actNone {
		verb = a.verb()
	}
	e.lease.State = reaper.StateExpired
	e.lease.Reason = fmt.Sprintf("%s failed (attempt %d, next in %s): %v", verb, e.failures, backoff, err)
	saved := e.lease
	node := e.lease.Node
	l.mu.Unlock()

	l.log.Log(context.Background(), slog.LevelError, "sandbox action failed", "vmid", vmid, "node", node,
		"action", verb, "attempt", saved.Reason, "err", err, lacking(err))
	var evs []reaper.Event
	if intentRecorded {
		l.m.DestroyFailed()
		evs = append(evs, reaper.Event{Time: now, VMID: vmid, Node: node, Kind: a.kind(), Decision: reaper.DecisionFailed,
			Reason: saved.Reason, Actor: reaper.ActorReaper})
	}
	if err := l.store.Record(context.Background(), []reaper.Lease{saved}, evs); err != nil {
		l.log.Error("cannot record failure", "vmid", vmid, "err", err)
	}
}

// reDetachable matches the config keys that can hold a disk.
var reDetachable = regexp.MustCompile(`^(?:ide|sata|scsi|virtio|unused)\d+$`)

// workspaceKeys returns the config keys through which the workspace volume
// is attached, to delete before the destroy. It refuses (fails closed) when
// the volume is owned by the sandbox's own VMID: PVE would free it with the
// VM whatever the reaper detached.
func workspaceKeys(cfg pve.VMConfig, workspace string, vmid int) ([]string, error) {
	if workspace == "" {
		return nil, nil
	}
	if owner, ok := volume.Owner(workspace); ok {
		if owner == vmid {
			return nil, fmt.Errorf("workspace volume %s is owned by VM %d itself; destroying the VM would delete it: "+
				"move the workspace to a volume owned by an unused VMID, or destroy the VM by hand", workspace, vmid)
		}
	}
	var keys []string
	for k := range cfg.Raw {
		if !reDetachable.MatchString(k) {
			continue
		}
		d, err := pve.ParseDrive(k, cfg.Value(k))
		if err == nil && d.Volume == workspace {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys, nil
}
