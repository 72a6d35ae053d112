package reconcile

import (
	"context"
	"slices"
	"time"

	"github.com/agentlab/terraform-provider-agentlab/internal/pve"
	"github.com/agentlab/terraform-provider-agentlab/reaper"
	"github.com/agentlab/terraform-provider-agentlab/reaper/egress"
)

// EgressFilter keeps the egress filter in line with the sandboxes; an
// *egress.Filter is one.
type EgressFilter interface {
	Sync(ctx context.Context, sandboxes []egress.Sandbox) ([]egress.Change, error)
}

// wantsEgress reports whether the loop must read e's config for the egress
// filter: it has not since it started (a restart keeps leases, not MACs).
func (l *Loop) wantsEgress(e *entry) bool {
	return l.opts.Egress != nil && e.egress == nil
}

// egressOf returns what the egress filter needs of a sandbox's config: the
// MACs of its NICs on the bridge and its policy. A sandbox whose metadata
// is unreadable or invalid is Broken: it gets no egress at all.
func (l *Loop) egressOf(vmid int, cfg pve.VMConfig, f configFacts) *egress.Sandbox {
	if l.opts.Egress == nil {
		return nil
	}
	s := &egress.Sandbox{VMID: vmid}
	for _, n := range cfg.NICs() {
		if n.Bridge == l.opts.EgressBridge && n.MAC != "" {
			s.MACs = append(s.MACs, n.MAC)
		}
	}
	if f.metaErr != nil {
		s.Broken = true
		return s
	}
	p, rules, err := egress.FromMetadata(string(f.meta.Egress), f.meta.EgressAllow)
	if err != nil {
		s.Broken = true
		return s
	}
	s.Policy, s.Allow = p, rules
	return s
}

// syncEgress hands the filter every sandbox the tick saw and records an
// event for each one whose rules changed. A failure is logged; the next tick
// tries again.
func (l *Loop) syncEgress(ctx context.Context, now time.Time) {
	if l.opts.Egress == nil {
		return
	}
	l.mu.Lock()
	var sbs []egress.Sandbox
	nodes := map[int]string{}
	for id, e := range l.vms {
		if e.seenTick != l.tickNo || e.egress == nil || !wantsConfig(e) {
			continue
		}
		sbs = append(sbs, *e.egress)
		nodes[id] = e.lease.Node
	}
	l.mu.Unlock()
	slices.SortFunc(sbs, func(a, b egress.Sandbox) int { return a.VMID - b.VMID })
	changes, err := l.opts.Egress.Sync(ctx, sbs)
	if err != nil {
		l.log.Error("cannot apply the egress filter; sandboxes keep the rules loaded before", "err", err)
		return
	}
	events := make([]reaper.Event, 0, len(changes))
	for _, c := range changes {
		events = append(events, reaper.Event{Time: now, VMID: c.Sandbox.VMID, Node: nodes[c.Sandbox.VMID],
			Kind: reaper.KindEgress, Decision: reaper.DecisionDone, Reason: c.Reason(), Actor: reaper.ActorReaper})
		l.log.Info("sandbox egress rules "+string(c.Kind), "vmid", c.Sandbox.VMID, "reason", c.Reason())
	}
	if len(events) > 0 {
		if err := l.store.Record(ctx, nil, events); err != nil {
			l.log.Warn("cannot record egress events", "err", err)
		}
	}
}
