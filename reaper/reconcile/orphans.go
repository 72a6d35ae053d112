package reconcile

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/agentlab/terraform-provider-agentlab/internal/lease"
	"github.com/agentlab/terraform-provider-agentlab/internal/pve"
	"github.com/agentlab/terraform-provider-agentlab/internal/volume"
	"github.com/agentlab/terraform-provider-agentlab/reaper"
)

// The orphan search finds what AgentLab made and nothing owns any more:
//
//   - untagged: a VM whose description holds a valid AgentLab metadata block
//     but which lacks the agentlab tag (the provider writes the tag after the
//     clone, in a second call, and may die in between). The loop reads the
//     config of a VM without an agentlab tag once, when it first sees it (and
//     again when its name changes); the metadata proves the VM is AgentLab's.
//     It is an orphan from its second tick on (in its first, the provider may
//     be about to tag it).
//   - placeholder: a config holding only "lock: clone" (no name, no tags),
//     left by a clone interrupted by a crash, in the placeholder VMID range.
//     It is an orphan once it has been seen in two ticks and no clone task
//     runs on its node, or once it is older than OrphanGrace whatever runs.
//     An API token cannot remove a lock (skiplock is root-only), so it is only
//     listed, with the command an operator runs.
//   - iso: a seed ISO (volume.SeedISOOwner) whose VM does not exist. Listing
//     storage costs calls, so the loop scans the ISO storages every
//     StorageScanEvery, and at the tick after a VM disappears.
//
// Each orphan is an event once, when found; with Prune, the untagged VMs and
// the ISOs seen for OrphanGrace are removed.

// orphanState is the loop's memory of the orphan search; guarded by Loop.mu.
type orphanState struct {
	found        map[string]reaper.Orphan // by ID, as stored
	untagged     map[int]*untaggedVM
	placeholders map[int]*placeholderVM
	seedISOs     map[int][]string // VMID → its seed ISOs, as the last storage scan found them
	lastScan     time.Time
	scanDue      bool
}

// untaggedVM is a QEMU VM without an agentlab tag.
type untaggedVM struct {
	node, name string
	firstTick  uint64 // a VM the provider is configuring is untagged for a moment
	seenTick   uint64
	read       bool // config read since the name last changed
	metadata   bool // the config holds a valid AgentLab metadata block
	locked     bool
}

// placeholderVM is a clone placeholder as the resource list shows it.
type placeholderVM struct {
	node      string
	firstSeen time.Time
	firstTick uint64
	seenTick  uint64
}

func (s *orphanState) load(stored []reaper.Orphan) {
	s.found = make(map[string]reaper.Orphan, len(stored))
	for _, o := range stored {
		s.found[o.ID] = o
	}
	if s.untagged == nil {
		s.untagged = map[int]*untaggedVM{}
		s.placeholders = map[int]*placeholderVM{}
		s.seedISOs = map[int][]string{}
	}
}

// vmOrphanID and isoOrphanID are the IDs of orphans.
func vmOrphanID(vmid int) string      { return "vm/" + strconv.Itoa(vmid) }
func isoOrphanID(volid string) string { return "iso/" + volid }

// isPlaceholder reports whether a resource list entry is a clone
// placeholder: locked by a clone, without name or tags.
func isPlaceholder(v *pve.VMEntry) bool {
	return v.Lock == "clone" && v.Name == "" && len(v.Tags) == 0 && !v.Template
}

// inPlaceholderRange reports whether vmid is in the placeholder VMID range.
func (l *Loop) inPlaceholderRange(vmid int) bool {
	first, last := l.opts.PlaceholderFirst, l.opts.PlaceholderLast
	return (first == 0 && last == 0) || (vmid >= first && vmid <= last)
}

// observeUntracked notes a VM the loop does not track as a sandbox (no
// agentlab tag) and returns whether its config must be read. Called with
// l.mu held.
func (l *Loop) observeUntracked(v *pve.VMEntry, now time.Time) bool {
	s := &l.orphans
	if v.Template || (v.Type != "qemu" && v.Type != "") {
		return false
	}
	if isPlaceholder(v) {
		delete(s.untagged, v.VMID)
		if !l.inPlaceholderRange(v.VMID) {
			return false
		}
		p := s.placeholders[v.VMID]
		if p == nil {
			p = &placeholderVM{node: v.Node, firstSeen: now, firstTick: l.tickNo}
			s.placeholders[v.VMID] = p
		}
		p.seenTick = l.tickNo
		return false
	}
	delete(s.placeholders, v.VMID)
	u := s.untagged[v.VMID]
	if u == nil {
		u = &untaggedVM{firstTick: l.tickNo}
		s.untagged[v.VMID] = u
	}
	if u.node != v.Node || u.name != v.Name {
		u.node, u.name, u.read = v.Node, v.Name, false
	}
	u.locked = v.Lock != ""
	u.seenTick = l.tickNo
	return !u.read && !u.locked
}

// readUntracked reads the configs of untagged VMs to find AgentLab metadata.
func (l *Loop) readUntracked(ctx context.Context, refs []pve.VMRef) {
	l.parallel(refs, func(ref pve.VMRef) {
		cfg, err := l.pve.Config(ctx, ref)
		l.mu.Lock()
		defer l.mu.Unlock()
		u := l.orphans.untagged[ref.VMID]
		if u == nil || err != nil {
			return // read again at the next tick
		}
		_, derr := lease.Decode(cfg.Description())
		u.read, u.metadata = true, derr == nil && !lease.Owned(lease.ParseTags(cfg.Value("tags")))
	})
}

// parallel runs fn for each ref, ReadConcurrency at a time.
func (l *Loop) parallel(refs []pve.VMRef, fn func(pve.VMRef)) {
	sem := make(chan struct{}, l.opts.ReadConcurrency)
	var wg sync.WaitGroup
	for _, r := range refs {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			fn(r)
		})
	}
	wg.Wait()
}

// searchOrphans runs after the tick's decisions: it settles the VM orphans
// (forgetting VMs no longer listed), scans the ISO storages when due, records
// what changed and prunes.
func (l *Loop) searchOrphans(ctx context.Context, cluster clusterView, now time.Time) {
	l.mu.Lock()
	s := &l.orphans
	var vanished bool
	for id, u := range s.untagged {
		if u.seenTick != l.tickNo {
			if u.metadata {
				vanished = true
			}
			delete(s.untagged, id)
		}
	}
	var candidates []int
	for id, p := range s.placeholders {
		switch {
		case p.seenTick != l.tickNo:
			delete(s.placeholders, id)
		case p.firstTick < l.tickNo:
			if _, known := s.found[vmOrphanID(id)]; !known {
				candidates = append(candidates, id)
			}
		}
	}
	if vanished {
		s.scanDue = true
	}
	scan := s.scanDue || s.lastScan.IsZero() || now.Sub(s.lastScan) >= l.opts.StorageScanEvery
	l.mu.Unlock()

	cloning := l.cloningNodes(ctx, candidates)

	l.mu.Lock()
	current := map[string]reaper.Orphan{}
	for id, u := range s.untagged {
		// Known from before a restart: still one until a read says otherwise.
		_, known := s.found[vmOrphanID(id)]
		if (u.metadata && (u.firstTick < l.tickNo || known)) || (known && !u.read) {
			o := reaper.Orphan{ID: vmOrphanID(id), Kind: reaper.OrphanUntagged, VMID: id, Node: u.node,
				Reason: "VM carries AgentLab metadata but no agentlab tag (the provider stopped between the clone and the tag): the reaper ignores it and Terraform's state may lack it"}
			current[o.ID] = o
		}
	}
	for id, p := range s.placeholders {
		o := reaper.Orphan{ID: vmOrphanID(id), Kind: reaper.OrphanPlaceholder, VMID: id, Node: p.node}
		_, known := s.found[o.ID]
		switch {
		case known:
			o.Reason = s.found[o.ID].Reason
		case p.firstTick == l.tickNo:
			continue // seen once: a clone may be under way
		case !cloning[p.node]:
			o.Reason = "clone placeholder (config holds only lock: clone) and no clone task runs on " + p.node + ": an interrupted clone"
		case now.Sub(p.firstSeen) >= l.opts.OrphanGrace:
			o.Reason = fmt.Sprintf("clone placeholder (config holds only lock: clone) for over %s: an interrupted clone", l.opts.OrphanGrace)
		default:
			continue
		}
		current[o.ID] = o
	}
	l.mu.Unlock()
	l.syncOrphans(ctx, []reaper.OrphanKind{reaper.OrphanUntagged, reaper.OrphanPlaceholder}, current, now)

	if scan {
		l.scanStorage(ctx, cluster, now)
	}
	l.pruneOrphans(ctx, now)
}

// cloningNodes returns the nodes among the candidates' on which a clone task
// runs: one call per node, made only when a placeholder outlived a tick.
func (l *Loop) cloningNodes(ctx context.Context, candidates []int) map[string]bool {
	if len(candidates) == 0 {
		return nil
	}
	l.mu.Lock()
	nodes := map[string]bool{}
	for _, id := range candidates {
		if p := l.orphans.placeholders[id]; p != nil {
			nodes[p.node] = false
		}
	}
	l.mu.Unlock()
	for node := range nodes {
		tasks, err := l.pve.ActiveTasks(ctx, node, "qmclone")
		if err != nil {
			l.log.Warn("cannot list the clone tasks; placeholders wait for orphan_grace", "node", node, "err", err, lacking(err))
			nodes[node] = true
			continue
		}
		nodes[node] = len(tasks) > 0
	}
	return nodes
}

// scanStorage lists the ISO storages of every node for seed ISOs whose VM
// does not exist.
func (l *Loop) scanStorage(ctx context.Context, cluster clusterView, now time.Time) {
	l.mu.Lock()
	pending := map[string]bool{}
	for _, v := range l.pendingVols {
		pending[v.Volid] = true
	}
	l.mu.Unlock()

	current := map[string]reaper.Orphan{}
	seen := map[int][]string{}
	for _, node := range cluster.nodes {
		list, err := l.pve.Storages(ctx, node, "iso")
		if err != nil {
			l.log.Warn("cannot list the ISO storages; retrying at the next tick", "node", node, "err", err, lacking(err))
			return
		}
		for _, st := range list {
			vols, err := l.pve.StorageContent(ctx, node, st.Storage, "iso", 0)
			if err != nil {
				l.log.Warn("cannot list an ISO storage; retrying at the next tick", "node", node, "storage", st.Storage, "err", err, lacking(err))
				return
			}
			for _, v := range vols {
				id, ok := volume.SeedISOOwner(v.VolID)
				if !ok {
					continue
				}
				seen[id] = append(seen[id], v.VolID)
				if !cluster.absent(id) || pending[v.VolID] {
					continue
				}
				o := reaper.Orphan{ID: isoOrphanID(v.VolID), Kind: reaper.OrphanISO, VMID: id, Node: node, Volid: v.VolID,
					Reason: fmt.Sprintf("AgentLab seed ISO of VM %d, which does not exist; it holds that sandbox's cloud-init data and heartbeat token", id)}
				current[o.ID] = o
			}
		}
	}
	l.mu.Lock()
	l.orphans.seedISOs, l.orphans.lastScan, l.orphans.scanDue = seen, now, false
	l.mu.Unlock()
	l.syncOrphans(ctx, []reaper.OrphanKind{reaper.OrphanISO}, current, now)
}

// syncOrphans makes the found orphans of kinds exactly current, recording an
// event for each new one.
func (l *Loop) syncOrphans(ctx context.Context, kinds []reaper.OrphanKind, current map[string]reaper.Orphan, now time.Time) {
	l.mu.Lock()
	var events []reaper.Event
	var fresh []reaper.Orphan
	changed := false
	for id, o := range current {
		old, known := l.orphans.found[id]
		if known {
			o.FirstSeen = old.FirstSeen
		} else {
			o.FirstSeen = now
			changed = true
			o.Action = l.orphanAction(o)
			events = append(events, reaper.Event{Time: now, VMID: o.VMID, Node: o.Node, Kind: reaper.KindOrphan,
				Decision: reaper.DecisionTrack, Reason: fmt.Sprintf("%s orphan: %s; %s", o.Kind, o.Reason, o.Action),
				Actor: reaper.ActorReaper, DryRun: l.opts.DryRun})
			fresh = append(fresh, o)
		}
		o.LastSeen = now
		current[id] = o
	}
	var list []reaper.Orphan
	for id, o := range l.orphans.found {
		if !slices.Contains(kinds, o.Kind) {
			continue
		}
		if _, ok := current[id]; !ok {
			changed = true
			l.log.Info("orphan resolved", "kind", o.Kind, "vmid", o.VMID, "volid", o.Volid)
		}
	}
	for _, o := range current {
		list = append(list, o)
	}
	if !changed {
		// Nothing to write: the stored set is current (last_seen in the
		// store is when it last changed; the memory has the latest).
		for id, o := range current {
			l.orphans.found[id] = o
		}
		l.mu.Unlock()
		return
	}
	l.mu.Unlock()
	if err := l.store.SyncOrphans(ctx, kinds, list, events); err != nil {
		l.log.Error("cannot record orphans; retrying at the next tick", "err", err)
		return
	}
	l.mu.Lock()
	for id, o := range l.orphans.found {
		if slices.Contains(kinds, o.Kind) {
			delete(l.orphans.found, id)
		}
	}
	for id, o := range current {
		l.orphans.found[id] = o
	}
	counts := l.orphanCounts()
	l.mu.Unlock()
	l.m.SetOrphans(counts)
	for _, o := range fresh { // logged once recorded and listed
		l.log.Warn("orphan found", "kind", o.Kind, "vmid", o.VMID, "node", o.Node, "volid", o.Volid, "reason", o.Reason, "action", o.Action)
	}
}

// orphanCounts counts the found orphans by kind. Called with l.mu held.
func (l *Loop) orphanCounts() map[reaper.OrphanKind]int {
	counts := map[reaper.OrphanKind]int{}
	for _, o := range l.orphans.found {
		counts[o.Kind]++
	}
	return counts
}

// orphanAction says what prune does about o, or what the operator runs.
func (l *Loop) orphanAction(o reaper.Orphan) string {
	grace := l.opts.OrphanGrace.String()
	switch o.Kind {
	case reaper.OrphanPlaceholder:
		return fmt.Sprintf("an API token cannot remove a lock (skiplock is root-only); on node %s run: qm unlock %d && qm destroy %d", o.Node, o.VMID, o.VMID)
	case reaper.OrphanUntagged:
		if l.opts.Prune {
			return fmt.Sprintf("prune destroys it once seen for %s (its metadata proves it is AgentLab's)", grace)
		}
		return fmt.Sprintf("set prune: true to have the reaper destroy it, or on node %s run: qm destroy %d --purge", o.Node, o.VMID)
	case reaper.OrphanISO:
		if l.opts.Prune {
			return fmt.Sprintf("prune deletes it once seen for %s", grace)
		}
		return fmt.Sprintf("set prune: true to have the reaper delete it, or on node %s run: pvesm free %s", o.Node, o.Volid)
	}
	return ""
}

// Orphans returns the orphans found, by kind and VMID, with what is done
// about each.
func (l *Loop) Orphans(ctx context.Context) ([]reaper.Orphan, error) {
	if err := l.load(ctx); err != nil {
		return nil, err
	}
	l.mu.Lock()
	out := make([]reaper.Orphan, 0, len(l.orphans.found))
	for _, o := range l.orphans.found {
		o.Action = l.orphanAction(o)
		out = append(out, o)
	}
	l.mu.Unlock()
	order := map[reaper.OrphanKind]int{}
	for i, k := range reaper.OrphanKinds() {
		order[k] = i
	}
	slices.SortFunc(out, func(a, b reaper.Orphan) int {
		if c := order[a.Kind] - order[b.Kind]; c != 0 {
			return c
		}
		if c := a.VMID - b.VMID; c != 0 {
			return c
		}
		if a.ID < b.ID {
			return -1
		}
		if a.ID > b.ID {
			return 1
		}
		return 0
	})
	return out, nil
}

// pruneOrphans removes the orphans whose ownership is proven and that have
// been seen for OrphanGrace, when Prune is on (and dry_run off).
func (l *Loop) pruneOrphans(ctx context.Context, now time.Time) {
	if !l.opts.Prune || l.opts.DryRun {
		return
	}
	l.mu.Lock()
	var due []reaper.Orphan
	for _, o := range l.orphans.found {
		if o.Kind != reaper.OrphanPlaceholder && now.Sub(o.FirstSeen) >= l.opts.OrphanGrace {
			due = append(due, o)
		}
	}
	l.mu.Unlock()
	slices.SortFunc(due, func(a, b reaper.Orphan) int { return a.VMID - b.VMID })
	for _, o := range due {
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), l.opts.ActionTimeout)
		l.pruneOrphan(actx, o, now)
		cancel()
	}
}

// pruneOrphan removes one orphan: intent, action, outcome.
func (l *Loop) pruneOrphan(ctx context.Context, o reaper.Orphan, now time.Time) {
	var isos []string
	what := "delete seed ISO " + o.Volid
	if o.Kind == reaper.OrphanISO {
		// The VMID may have been reused since the scan: a new sandbox's
		// upload replaces an ISO of the same name. Only a VMID that still
		// does not exist proves the ISO an orphan.
		_, err := l.pve.Config(ctx, pve.VMRef{Node: o.Node, VMID: o.VMID})
		switch {
		case err == nil:
			l.forgetOrphan(ctx, o, "a VM with its VMID exists again")
			return
		case !pve.IsNotFound(err):
			l.log.Warn("cannot check an orphan ISO's VM; retrying at the next tick", "vmid", o.VMID, "err", err)
			return
		}
	}
	if o.Kind == reaper.OrphanUntagged {
		// Look again just before acting: the provider may have tagged it
		// since, or someone kept it.
		unlock := l.locks.lock(o.VMID)
		defer unlock()
		cfg, err := l.pve.Config(ctx, pve.VMRef{Node: o.Node, VMID: o.VMID})
		switch {
		case pve.IsNotFound(err):
			l.forgetOrphan(ctx, o, "VM is gone")
			return
		case err != nil:
			l.log.Warn("cannot read an orphan's config; retrying at the next tick", "vmid", o.VMID, "err", err)
			return
		}
		tags := lease.ParseTags(cfg.Value("tags"))
		if _, derr := lease.Decode(cfg.Description()); derr != nil || lease.Owned(tags) || lease.Kept(tags) || cfg.Lock() != "" || cfg.Template() {
			l.forgetOrphan(ctx, o, "config changed: tagged, kept, locked or without metadata")
			return
		}
		isos = l.seedISOs(cfg, o.VMID)
		what = "destroy VM " + strconv.Itoa(o.VMID)
		if len(isos) > 0 {
			what += " and delete its seed ISO"
		}
	}
	intent := reaper.Event{Time: now, VMID: o.VMID, Node: o.Node, Kind: reaper.KindOrphan, Decision: reaper.DecisionIntent,
		Reason: fmt.Sprintf("prune %s orphan seen since %s: will %s", o.Kind, stamp(o.FirstSeen), what), Actor: reaper.ActorReaper}
	if err := l.recordVolumes(ctx, o.Node, o.VMID, isos, now); err != nil {
		l.log.Error("cannot record the seed ISO to delete; not pruning", "vmid", o.VMID, "err", err)
		return
	}
	if err := l.store.Record(ctx, nil, []reaper.Event{intent}); err != nil {
		l.log.Error("cannot record the prune intent; not pruning", "vmid", o.VMID, "err", err)
		return
	}
	var err error
	if o.Kind == reaper.OrphanUntagged {
		err = l.pve.Destroy(ctx, pve.VMRef{Node: o.Node, VMID: o.VMID})
	} else {
		err = l.pve.DeleteVolume(ctx, o.Node, o.Volid)
	}
	outcome := reaper.Event{Time: l.clock.Now(), VMID: o.VMID, Node: o.Node, Kind: reaper.KindOrphan, Actor: reaper.ActorReaper}
	if err != nil {
		outcome.Decision, outcome.Reason = reaper.DecisionFailed, fmt.Sprintf("prune %s orphan failed (retrying at the next tick): %v", o.Kind, err)
		l.log.Error("prune failed", "kind", o.Kind, "vmid", o.VMID, "volid", o.Volid, "err", err, lacking(err))
		if rerr := l.store.Record(ctx, nil, []reaper.Event{outcome}); rerr != nil {
			l.log.Error("cannot record a failed prune", "vmid", o.VMID, "err", rerr)
		}
		return
	}
	outcome.Decision, outcome.Reason = reaper.DecisionDone, fmt.Sprintf("pruned %s orphan: %s", o.Kind, what)
	l.m.OrphanPruned(o.Kind)
	l.mu.Lock()
	delete(l.orphans.found, o.ID)
	if o.Kind == reaper.OrphanUntagged {
		delete(l.orphans.untagged, o.VMID)
	}
	list := l.foundOf(o.Kind)
	counts := l.orphanCounts()
	l.mu.Unlock()
	if err := l.store.SyncOrphans(ctx, []reaper.OrphanKind{o.Kind}, list, []reaper.Event{outcome}); err != nil {
		l.log.Error("cannot record a prune", "vmid", o.VMID, "err", err)
	}
	l.m.SetOrphans(counts)
	l.log.Info("orphan pruned", "kind", o.Kind, "vmid", o.VMID, "volid", o.Volid)
	if len(isos) > 0 {
		l.deleteVolumes(ctx, func(vmid int) bool { return vmid == o.VMID })
	}
}

// forgetOrphan drops an orphan a fresh look disproved.
func (l *Loop) forgetOrphan(ctx context.Context, o reaper.Orphan, why string) {
	l.log.Info("orphan resolved", "kind", o.Kind, "vmid", o.VMID, "why", why)
	l.mu.Lock()
	delete(l.orphans.found, o.ID)
	if u := l.orphans.untagged[o.VMID]; u != nil {
		u.read = false // read it again
	}
	list := l.foundOf(o.Kind)
	counts := l.orphanCounts()
	l.mu.Unlock()
	if err := l.store.SyncOrphans(ctx, []reaper.OrphanKind{o.Kind}, list, nil); err != nil {
		l.log.Error("cannot record orphans", "err", err)
	}
	l.m.SetOrphans(counts)
}

// foundOf returns the found orphans of kind k. Called with l.mu held.
func (l *Loop) foundOf(k reaper.OrphanKind) []reaper.Orphan {
	var out []reaper.Orphan
	for _, o := range l.orphans.found {
		if o.Kind == k {
			out = append(out, o)
		}
	}
	return out
}
