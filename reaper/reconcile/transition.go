package reconcile

import (
	"context"
	"log/slog"
	"slices"
	"time"

	"github.com/agentlab/terraform-provider-agentlab/reaper"
)

// decision is what one tick decided: leases to save and events to record
// (together, in one transaction), VMs to forget once that is done, VMs to
// act on, and what the decisions changed, to undo if recording fails.
type decision struct {
	leases []reaper.Lease
	events []reaper.Event
	gone   []int
	todo   []int
	undo   []undo
}

// undo is the part of a VM's lease that deciding changes (see transition),
// as it was before.
type undo struct {
	vmid                int
	state               reaper.State
	reason              string
	warnedFor, lastSeen time.Time
}

// decideAll decides for every VM whose facts changed or whose next deadline
// passed and notes the VMs that disappeared. Called with l.mu held.
func (l *Loop) decideAll(now time.Time) decision {
	p := l.policy()
	var d decision
	for id, e := range l.vms {
		if e.seenTick != l.tickNo {
			if ev, gone, ok := l.vanished(e, now); ok {
				d.events = append(d.events, ev)
				d.leases = append(d.leases, gone)
				l.orphans.scanDue = true // its seed ISO may be left behind
			}
			d.gone = append(d.gone, id)
			continue
		}
		if e.inFlight {
			continue
		}
		if e.hold {
			// The config changed but could not be read: keep the last
			// verdict until a read succeeds (an action re-reads anyway).
			e.hold = false
		} else if !e.decided || !now.Before(e.nextCheck) {
			before := undo{vmid: id, state: e.lease.State, reason: e.lease.Reason,
				warnedFor: e.lease.WarnedFor, lastSeen: e.lease.LastSeen}
			e.operatorKept = l.kept[id]
			v := decide(e.facts(), now, p)
			e.verdict, e.decided, e.nextCheck = v, true, nextCheck(e, v, p)
			if ev, ok := l.transition(e, v, now); ok {
				d.events = append(d.events, ev)
			}
			if e.dirty {
				d.undo = append(d.undo, before)
			}
		}
		if e.dirty {
			e.dirty = false
			e.lease.LastSeen = now
			d.leases = append(d.leases, e.lease)
		}
		if e.verdict.act != actNone && !l.opts.DryRun && !now.Before(e.retryAt) {
			d.todo = append(d.todo, id)
		}
	}
	slices.Sort(d.todo)
	return d
}

// recorded applies a tick's decision once the store has it: VMs that
// disappeared are forgotten. Called with l.mu held.
func (l *Loop) recorded(d decision) {
	for _, id := range d.gone {
		delete(l.vms, id)
	}
}

// unrecorded undoes a tick's decision the store refused, so that the next
// tick decides (and records) again. Called with l.mu held.
func (l *Loop) unrecorded(d decision) {
	for _, s := range d.leases {
		if e := l.vms[s.VMID]; e != nil {
			e.dirty, e.decided = true, false
		}
	}
	for _, u := range d.undo {
		if e := l.vms[u.vmid]; e != nil {
			e.lease.State, e.lease.Reason, e.lease.WarnedFor, e.lease.LastSeen = u.state, u.reason, u.warnedFor, u.lastSeen
		}
	}
}

// nextCheck is when a verdict may change by the passage of time alone.
func nextCheck(e *entry, v verdict, p policy) time.Time {
	if v.act != actNone || !e.metaRead || e.metaErr != nil {
		return time.Time{} // decide again at every tick
	}
	exp := e.expiry() // the metadata's (or the policy's), as metaErr is nil
	switch v.state {
	case reaper.StateActive:
		if p.warnBefore > 0 {
			return exp.Add(-p.warnBefore)
		}
		return exp
	case reaper.StateExpiring:
		return exp
	case reaper.StateExpired:
		return exp.Add(p.grace)
	}
	return time.Time{}.AddDate(9999, 0, 0) // only a change of facts matters
}

// transition applies verdict v to e and returns the event to record when the
// VM's state changed (once per VM per state change, never at every tick).
// Called with l.mu held.
func (l *Loop) transition(e *entry, v verdict, now time.Time) (reaper.Event, bool) {
	old := e.lease
	state, reason := v.state, v.reason
	if old.State == reaper.StateDestroying && state == reaper.StateExpired {
		// An interrupted destroy stays open until an action records its
		// outcome or the VM disappears (PVE may be finishing it: lock
		// "destroyed").
		e.isNew = false
		return reaper.Event{}, false
	}
	if v.act != actNone && !l.opts.DryRun {
		// The action records its intent and outcome; a failed attempt's
		// reason stays until the next attempt.
		if old.State != state || (e.failures == 0 && old.Reason != reason) {
			e.lease.State, e.lease.Reason, e.dirty = state, reason, true
		}
		e.isNew = false
		return reaper.Event{}, false
	}
	if v.act != actNone {
		reason = "dry run: would " + v.act.verb() + "; " + reason
	}
	changed := old.State != state || (state != reaper.StateUnknown && old.Reason != reason)
	if !changed && !e.isNew {
		return reaper.Event{}, false
	}
	e.isNew, e.dirty = false, true
	e.lease.State, e.lease.Reason = state, reason
	ev := reaper.Event{Time: now, VMID: e.lease.VMID, Node: e.lease.Node, Kind: reaper.KindObserve,
		Decision: reaper.DecisionTrack, Reason: reason, Actor: reaper.ActorReaper, DryRun: l.opts.DryRun}
	level := slog.LevelInfo
	switch {
	case old.State == reaper.StateDestroying:
		// The VM is no longer to be destroyed (renewed, protected, ...):
		// close the interrupted destroy's intent.
		ev.Kind, ev.Decision = reaper.KindDestroy, reaper.DecisionSkip
		ev.Reason = "interrupted destroy abandoned: " + reason
		level = slog.LevelWarn
	case state == reaper.StateExpiring:
		if !e.lease.WarnedFor.Equal(e.lease.ExpiresAt) {
			e.lease.WarnedFor = e.lease.ExpiresAt
			ev.Kind = reaper.KindWarn
		}
	case state == reaper.StateExpired:
		if v.act != actNone {
			ev.Kind, ev.Decision = v.act.kind(), reaper.DecisionDryRun
		} else {
			ev.Kind, ev.Decision = reaper.KindExpire, reaper.DecisionWait
		}
	case state == reaper.StateStopped, state == reaper.StateProtected:
		ev.Decision = reaper.DecisionSkip
	case state == reaper.StateInvalid, state == reaper.StateUnknown:
		ev.Decision = reaper.DecisionSkip
		level = slog.LevelWarn
	}
	l.log.Log(context.Background(), level, "sandbox "+string(ev.Kind), "vmid", ev.VMID, "node", ev.Node,
		"state", state, "decision", ev.Decision, "reason", ev.Reason, "dry_run", l.opts.DryRun)
	return ev, true
}

// vanished returns the event and the final lease of a VM that is no longer
// in the resource list; the tick logs it once recorded. Called with l.mu held.
func (l *Loop) vanished(e *entry, now time.Time) (reaper.Event, reaper.Lease, bool) {
	if !e.lease.State.Present() {
		return reaper.Event{}, reaper.Lease{}, false
	}
	final := e.lease
	ev := reaper.Event{Time: now, VMID: final.VMID, Node: final.Node, Actor: reaper.ActorReaper}
	if final.State == reaper.StateDestroying {
		ev.Kind, ev.Decision, ev.Reason = reaper.KindDestroy, reaper.DecisionDone,
			"VM is gone: the destroy started before an interruption completed"
		final.State = reaper.StateDestroyed
	} else {
		ev.Kind, ev.Decision, ev.Reason = reaper.KindGone, reaper.DecisionDone,
			"VM no longer exists in the cluster (removed outside the reaper)"
		final.State = reaper.StateGone
	}
	final.Reason = ev.Reason
	final.LastSeen = now
	return ev, final, true // logged by the tick once recorded
}

// countStates counts the present VMs by state. Called with l.mu held.
func (l *Loop) countStates() map[reaper.State]int {
	counts := make(map[reaper.State]int, len(reaper.States()))
	for _, e := range l.vms {
		if e.seenTick == l.tickNo {
			counts[e.lease.State]++
		}
	}
	return counts
}
