package reconcile

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/agentlab/terraform-provider-agentlab/internal/lease"
	"github.com/agentlab/terraform-provider-agentlab/internal/pve"
	"github.com/agentlab/terraform-provider-agentlab/reaper"
)

// Keep sets (keep) or removes (!keep) the agentlab-keep tag of sandbox vmid
// for the operator, and records that the operator did it: with
// policy.user_keep false, only such a tag protects a sandbox. The record is
// written before the tag and removed after it, so an interruption never
// leaves a tag the reaper does not know it set. actor names who asked.
//
// Errors: reaper.ErrNotFound, reaper.ErrProtected (not an agentlab VM) and
// reaper.ErrConflict (the reaper is destroying it).
func (l *Loop) Keep(ctx context.Context, vmid int, keep bool, actor string) (reaper.Lease, error) {
	if err := l.load(ctx); err != nil {
		return reaper.Lease{}, err
	}
	node, err := l.nodeOf(ctx, vmid)
	if err != nil {
		return reaper.Lease{}, err
	}
	if err := l.setKeep(ctx, pve.VMRef{Node: node, VMID: vmid}, keep, actor); err != nil {
		return reaper.Lease{}, err
	}
	// Decide at once, so that leases shows the new state.
	if err := l.Tick(ctx); err != nil && !errors.Is(err, context.Canceled) {
		l.log.Warn("tick after keep failed", "err", err)
	}
	return l.store.Lease(ctx, vmid)
}

// setKeep is Keep's read-modify-write, under the VM's lock.
func (l *Loop) setKeep(ctx context.Context, ref pve.VMRef, keep bool, actor string) error {
	vmid, node := ref.VMID, ref.Node
	unlock := l.locks.lock(vmid)
	defer unlock()
	verb := "kept"
	if !keep {
		verb = "keep removed"
	}
	for attempt := 1; ; attempt++ {
		cfg, err := l.pve.Config(ctx, ref)
		if pve.IsNotFound(err) {
			return fmt.Errorf("vm %d: %w", vmid, reaper.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("read config of vm %d: %w", vmid, err)
		}
		tags := lease.ParseTags(cfg.Value("tags"))
		if !lease.Owned(tags) || cfg.Template() {
			return fmt.Errorf("vm %d has no agentlab tag: %w", vmid, reaper.ErrProtected)
		}
		l.mu.Lock()
		e := l.vms[vmid]
		destroying := e != nil && (e.inFlight || e.lease.State == reaper.StateDestroying)
		l.mu.Unlock()
		if destroying && keep {
			return fmt.Errorf("vm %d: %w: the reaper is destroying it", vmid, reaper.ErrConflict)
		}
		now := l.clock.Now()
		ev := reaper.Event{Time: now, VMID: vmid, Node: node, Kind: reaper.KindKeep, Decision: reaper.DecisionDone, Actor: actor}
		var next []string
		if keep {
			ev.Reason = "kept by the operator (agentlab-reaper keep): tagged agentlab-keep, never reaped until keep --remove"
			// Record first: a tag the reaper set must be known as such.
			if err := l.store.SetKept(ctx, vmid, true, now, actor, ev); err != nil {
				return err
			}
			l.mu.Lock()
			l.kept[vmid] = true
			l.mu.Unlock()
			next = append(slices.Clone(tags), lease.TagKeep)
		} else {
			next = slices.DeleteFunc(slices.Clone(tags), func(t string) bool { return t == lease.TagKeep })
		}
		if !slices.Equal(lease.ParseTags(lease.JoinTags(next)), tags) {
			err := l.pve.UpdateConfig(ctx, ref, pve.ConfigUpdate{Set: map[string]string{"tags": lease.JoinTags(next)}, Digest: cfg.Digest()})
			if pve.IsDigestMismatch(err) && attempt < maxDigestRetries {
				continue
			}
			if err != nil {
				return fmt.Errorf("write the tags of vm %d: %w", vmid, err)
			}
		}
		if !keep {
			ev.Reason = "keep removed by the operator (agentlab-reaper keep --remove): the lease applies again"
			if err := l.store.SetKept(ctx, vmid, false, now, actor, ev); err != nil {
				return err
			}
			l.mu.Lock()
			delete(l.kept, vmid)
			l.mu.Unlock()
		}
		l.log.Info("sandbox "+verb, "vmid", vmid, "node", node, "actor", actor)
		l.mu.Lock()
		if e := l.vms[vmid]; e != nil {
			e.decided, e.needRead = false, true
		}
		l.mu.Unlock()
		return nil
	}
}

// forgetRemovedKeeps drops the keep record of a sandbox whose agentlab-keep
// tag someone removed outside Keep: a tag a user adds again later is then a
// user's tag, honoured only with policy.user_keep.
func (l *Loop) forgetRemovedKeeps(ctx context.Context, now time.Time) {
	l.mu.Lock()
	var gone []*entry
	for id := range l.kept {
		if e := l.vms[id]; e != nil && e.seenTick == l.tickNo && e.metaRead && !lease.Kept(e.lease.Tags) {
			gone = append(gone, e)
		}
	}
	l.mu.Unlock()
	for _, e := range gone {
		ev := reaper.Event{Time: now, VMID: e.lease.VMID, Node: e.lease.Node, Kind: reaper.KindKeep, Decision: reaper.DecisionDone,
			Reason: "keep record dropped: the agentlab-keep tag was removed outside agentlab-reaper keep", Actor: reaper.ActorReaper}
		if err := l.store.SetKept(ctx, e.lease.VMID, false, now, reaper.ActorReaper, ev); err != nil {
			l.log.Error("cannot drop a keep record", "vmid", e.lease.VMID, "err", err)
			continue
		}
		l.mu.Lock()
		delete(l.kept, e.lease.VMID)
		l.mu.Unlock()
	}
}
