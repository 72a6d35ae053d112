package reconcile

import (
	"context"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"sync"
	"time"

	"github.com/agentlab/terraform-provider-agentlab/internal/lease"
	"github.com/agentlab/terraform-provider-agentlab/internal/pve"
	"github.com/agentlab/terraform-provider-agentlab/reaper"
	"github.com/agentlab/terraform-provider-agentlab/reaper/egress"
)

// entry is the loop's memory of one VM.
type entry struct {
	lease    reaper.Lease // as stored and shown
	rawTags  []string     // the tags as the resource list gave them, to spot changes
	kind     string
	lock     string
	template bool

	// metaRead: metaErr holds the result of a config read (or of the store);
	// when it is nil, the lease holds the metadata (see metadata).
	metaRead bool
	metaErr  error
	readAt   time.Time
	needRead bool // read the config at the next tick
	// readFailures counts consecutive failed reads; while it is below
	// maxHeldReads and the metadata read before was valid, the VM keeps its
	// last verdict (hold) instead of turning unknown at every transient fault.
	readFailures int
	hold         bool
	gen          uint64 // bumped when a renewal rewrites the config

	seenTick   uint64 // tick in which the resource list last showed the VM
	isNew      bool   // no event recorded yet
	dirty      bool   // lease must be saved
	decided    bool   // verdict is up to date with the facts
	nextCheck  time.Time
	verdict    verdict
	inFlight   bool
	failures   int
	retryAt    time.Time
	countedFor time.Time // expiry already counted in agentlab_leases_expired_total
	// operatorKept: the operator kept the VM with Keep (copied from
	// Loop.kept when deciding).
	operatorKept bool
	// egress is what the egress filter needs of the VM (see egress.go); nil
	// until its config is read with the filter on.
	egress *egress.Sandbox
}

// load fills the loop's memory from the store, once.
func (l *Loop) load(ctx context.Context) error {
	l.mu.Lock()
	loaded := l.loaded
	l.mu.Unlock()
	if loaded {
		return nil
	}
	stored, err := l.store.Leases(ctx, false)
	if err != nil {
		return fmt.Errorf("load leases: %w", err)
	}
	kept, err := l.store.Kept(ctx)
	if err != nil {
		return err
	}
	vols, err := l.store.VolumeDeletions(ctx)
	if err != nil {
		return err
	}
	orphans, err := l.store.Orphans(ctx)
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.kept, l.pendingVols = kept, vols
	l.orphans.load(orphans)
	for _, s := range stored {
		if _, ok := l.vms[s.VMID]; ok {
			continue
		}
		e := &entry{lease: s, rawTags: slices.Clone(s.Tags), kind: "qemu"}
		if !s.ExpiresAt.IsZero() && s.State != reaper.StateInvalid && s.State != reaper.StateUnknown {
			e.metaRead = true
		}
		e.needRead = !e.metaRead && lease.Owned(s.Tags)
		l.vms[s.VMID] = e
	}
	l.loaded = true
	return nil
}

// metadata returns the VM's metadata block as far as the decisions use it,
// when metaRead is set and metaErr is nil. The entry keeps it in its lease
// only: 10,000 sandboxes would otherwise hold it twice.
func (e *entry) metadata() lease.Metadata { return metadataFromLease(e.lease) }

// metadataFromLease rebuilds the parts of a metadata block the decisions use
// from a lease.
func metadataFromLease(s reaper.Lease) lease.Metadata {
	m := lease.Metadata{
		Version: lease.Version, Owner: s.Owner, Profile: s.Profile, JobID: s.JobID,
		Workspace: s.Workspace, HeartbeatTokenSHA256: s.TokenSHA256, BootTokenSHA256: s.BootTokenSHA256,
	}
	m.CreatedAt, m.ExpiresAt, m.TTL = s.CreatedAt, s.ExpiresAt, s.TTL
	if !s.MaxExpiresAt.IsZero() {
		m.MaxTTL = s.MaxExpiresAt.Sub(s.CreatedAt)
	}
	m.OnExpiry, _ = lease.ParseAction(s.OnExpiry)
	return m
}

// observe updates the memory from the resource list and returns the
// sandboxes whose config must be read, and the VMs without an agentlab tag
// whose config the orphan search must read. Called with l.mu held.
func (l *Loop) observe(vms []pve.VMEntry, now time.Time) (reads []configRead, untracked []pve.VMRef) {
	for i := range vms {
		v := &vms[i]
		e := l.vms[v.VMID]
		if e == nil {
			if !ownedByTags(v.Tags) {
				// Not a sandbox: only the orphan search looks at it.
				if l.observeUntracked(v, now) {
					untracked = append(untracked, v.Ref())
				}
				continue
			}
			e = &entry{isNew: true}
			e.lease.VMID = v.VMID
			e.lease.FirstSeen = now
			l.vms[v.VMID] = e
		}
		e.seenTick = l.tickNo
		e.lock = v.Lock
		changed := e.lease.Node != v.Node || e.lease.Name != v.Name || e.lease.Status != v.Status ||
			e.kind != v.Type || e.template != v.Template || !slices.Equal(e.rawTags, v.Tags)
		if changed {
			e.lease.Node, e.lease.Name, e.lease.Status = v.Node, v.Name, v.Status
			e.kind, e.template = v.Type, v.Template
			e.rawTags = slices.Clone(v.Tags)
			e.lease.Tags = lease.ParseTags(joinRaw(v.Tags))
			e.decided, e.dirty = false, true
		}
		if e.inFlight || !wantsConfig(e) {
			continue
		}
		stale := e.lease.State == reaper.StateInvalid && now.Sub(e.readAt) >= l.opts.InvalidRefresh
		if !e.metaRead || changed || e.needRead || stale || l.wantsEgress(e) {
			reads = append(reads, configRead{ref: pve.VMRef{Node: v.Node, VMID: v.VMID}, gen: e.gen})
		}
	}
	return reads, untracked
}

// wantsConfig reports whether the loop needs the VM's metadata: only QEMU
// VMs (not templates) carrying the agentlab tag.
func wantsConfig(e *entry) bool {
	return !e.template && (e.kind == "qemu" || e.kind == "") && lease.Owned(e.lease.Tags)
}

func joinRaw(tags []string) string {
	n := 0
	for _, t := range tags {
		n += len(t) + 1
	}
	b := make([]byte, 0, n)
	for i, t := range tags {
		if i > 0 {
			b = append(b, ';')
		}
		b = append(b, t...)
	}
	return string(b)
}

// configRead is a config the tick reads: the VM, and its entry's gen when
// the tick decided to read it.
type configRead struct {
	ref pve.VMRef
	gen uint64
}

// configFacts is what the loop keeps of a config it read: the metadata block
// and the tags. The config itself is dropped at once: the first tick reads
// every sandbox's config, and holding them until the tick's end would make
// that tick the daemon's peak of memory.
type configFacts struct {
	meta    lease.Metadata
	metaErr error
	tags    string
	hasTags bool
	egress  *egress.Sandbox // nil when the egress filter is off
}

// factsOf returns what the loop keeps of cfg.
func factsOf(cfg pve.VMConfig) configFacts {
	var f configFacts
	f.meta, f.metaErr = lease.Decode(cfg.Description())
	f.tags, f.hasTags = cfg.Get("tags")
	return f
}

// readConfigs reads the configs, ReadConcurrency at a time, and applies
// each one as it arrives.
func (l *Loop) readConfigs(ctx context.Context, reads []configRead, now time.Time) {
	sem := make(chan struct{}, l.opts.ReadConcurrency)
	var wg sync.WaitGroup
	for _, r := range reads {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			cfg, err := l.pve.Config(ctx, r.ref)
			var f configFacts
			if err == nil {
				f = factsOf(cfg)
				f.egress = l.egressOf(r.ref.VMID, cfg, f)
			}
			l.mu.Lock()
			defer l.mu.Unlock()
			l.applyRead(r, f, err, now)
		})
	}
	wg.Wait()
}

// maxHeldReads is how many consecutive config reads may fail before a VM
// with valid metadata turns unknown.
const maxHeldReads = 3

// applyRead stores what a config read found: f, or the error err. Called
// with l.mu held.
func (l *Loop) applyRead(r configRead, f configFacts, err error, now time.Time) {
	e := l.vms[r.ref.VMID]
	if e == nil || e.gen != r.gen || e.inFlight {
		if e != nil {
			e.needRead = true // a renewal changed the config meanwhile
		}
		return
	}
	e.decided = false
	switch {
	case pve.IsNotFound(err):
		// Gone between the list and the read: the next list will tell.
		e.needRead = true
		return
	case err != nil:
		e.needRead = true
		e.readFailures++
		if e.metaRead && e.metaErr == nil && e.lease.State != "" && e.readFailures < maxHeldReads {
			e.hold = true
			return
		}
		e.metaRead, e.metaErr = true, err
		return
	}
	e.needRead, e.readFailures, e.hold = false, 0, false
	e.readAt = now
	before := e.lease
	e.setFacts(f, l.opts.MaxLease)
	if !sameLease(before, e.lease) {
		e.dirty = true // e.g. a new heartbeat token hash: the store must know it
	}
}

// withSet returns cfg as it reads after an update that set the keys of
// set, for the loop to keep without reading it again.
func withSet(cfg pve.VMConfig, set map[string]string) pve.VMConfig {
	out := cfg
	out.Raw = maps.Clone(cfg.Raw)
	if out.Raw == nil {
		out.Raw = make(map[string]any, len(set))
	}
	for k, v := range set {
		out.Raw[k] = v
	}
	return out
}

// rememberWritten makes cfg, which the loop itself just wrote to vmid, its
// memory of that VM, as a tick reading it would (so the next tick needs no
// read, and one reading the old config meanwhile does not undo it), and
// returns the lease the VM then has; ok is false when the loop does not
// know the VM.
func (l *Loop) rememberWritten(vmid int, cfg pve.VMConfig, now time.Time) (_ reaper.Lease, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.vms[vmid]
	if e == nil {
		return reaper.Lease{}, false
	}
	e.setConfig(cfg, l.opts.MaxLease)
	e.gen++
	e.decided = false
	e.lease.LastSeen = now
	return e.lease, true
}

// setConfig takes the metadata and tags from a config just read; maxLease
// is policy.max_lease.
func (e *entry) setConfig(cfg pve.VMConfig, maxLease time.Duration) {
	e.setFacts(factsOf(cfg), maxLease)
}

// setFacts takes the metadata and tags read from a config; maxLease is
// policy.max_lease.
func (e *entry) setFacts(f configFacts, maxLease time.Duration) {
	e.metaRead, e.metaErr = true, f.metaErr
	if f.egress != nil {
		e.egress = f.egress
	}
	if f.hasTags || len(e.lease.Tags) > 0 {
		e.lease.Tags = lease.ParseTags(f.tags)
		e.rawTags = pve.SplitTags(lease.JoinTags(e.lease.Tags))
	}
	if e.metaErr == nil {
		m := f.meta
		e.lease.CreatedAt, e.lease.ExpiresAt, e.lease.MaxExpiresAt = m.CreatedAt, m.ExpiresAt, m.MaxExpiry()
		e.lease.TTL, e.lease.OnExpiry = m.TTL, string(m.OnExpiry)
		e.lease.Owner, e.lease.Profile, e.lease.JobID = m.Owner, m.Profile, m.JobID
		e.lease.Workspace, e.lease.TokenSHA256 = m.Workspace, m.HeartbeatTokenSHA256
		e.lease.BootTokenSHA256 = m.BootTokenSHA256
		e.lease.PolicyExpiresAt = time.Time{}
		if capAt, ok := reaper.PolicyExpiry(m.CreatedAt, m.ExpiresAt, maxLease); ok {
			e.lease.PolicyExpiresAt = capAt
		}
	}
}

// expiry returns the expiry the loop acts on: the metadata's, or the
// earlier one policy.max_lease imposes.
func (e *entry) expiry() time.Time {
	if !e.lease.PolicyExpiresAt.IsZero() {
		return e.lease.PolicyExpiresAt
	}
	return e.lease.ExpiresAt
}

// facts returns what decide needs.
func (e *entry) facts() facts {
	f := facts{
		tags: e.lease.Tags, template: e.template, kind: e.kind, status: e.lease.Status, lock: e.lock,
		metaErr: e.metaErr, metaRead: e.metaRead, operatorKept: e.operatorKept,
	}
	if e.metaRead && e.metaErr == nil {
		f.meta = e.metadata()
	}
	return f
}

// sameLease reports whether a and b hold the same values.
func sameLease(a, b reaper.Lease) bool {
	if !slices.Equal(a.Tags, b.Tags) {
		return false
	}
	a.Tags, b.Tags = nil, nil
	return reflect.DeepEqual(a, b)
}
