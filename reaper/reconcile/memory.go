package reconcile

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"time"

	"github.com/agentlab/terraform-provider-agentlab/internal/lease"
	"github.com/agentlab/terraform-provider-agentlab/internal/pve"
	"github.com/agentlab/terraform-provider-agentlab/reaper"
)

// entry is the loop's memory of one VM.
type entry struct {
	lease    reaper.Lease // as stored and shown
	rawTags  []string     // the tags as the resource list gave them, to spot changes
	kind     string
	lock     string
	template bool

	metaRead bool // meta/metaErr hold the result of a config read (or of the store)
	meta     lease.Metadata
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
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range stored {
		if _, ok := l.vms[s.VMID]; ok {
			continue
		}
		e := &entry{lease: s, rawTags: slices.Clone(s.Tags), kind: "qemu"}
		if !s.ExpiresAt.IsZero() && s.State != reaper.StateInvalid && s.State != reaper.StateUnknown {
			e.metaRead = true
			e.meta = metadataFromLease(s)
		}
		e.needRead = !e.metaRead && lease.Owned(s.Tags)
		l.vms[s.VMID] = e
	}
	l.loaded = true
	return nil
}

// metadataFromLease rebuilds the parts of a metadata block the decisions use
// from a stored lease.
func metadataFromLease(s reaper.Lease) lease.Metadata {
	m := lease.Metadata{
		Version: lease.Version, Owner: s.Owner, Profile: s.Profile, JobID: s.JobID,
		Workspace: s.Workspace, HeartbeatTokenSHA256: s.TokenSHA256,
	}
	m.CreatedAt, m.ExpiresAt, m.TTL = s.CreatedAt, s.ExpiresAt, s.TTL
	if !s.MaxExpiresAt.IsZero() {
		m.MaxTTL = s.MaxExpiresAt.Sub(s.CreatedAt)
	}
	m.OnExpiry, _ = lease.ParseAction(s.OnExpiry)
	return m
}

// observe updates the memory from the resource list and returns the VMs
// whose config must be read. Called with l.mu held.
func (l *Loop) observe(vms []pve.VMEntry, now time.Time) []configRead {
	var reads []configRead
	for i := range vms {
		v := &vms[i]
		e := l.vms[v.VMID]
		if e == nil {
			if !ownedByTags(v.Tags) {
				continue // not ours and never was: ignore silently
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
		if !e.metaRead || changed || e.needRead || stale {
			reads = append(reads, configRead{ref: pve.VMRef{Node: v.Node, VMID: v.VMID}, gen: e.gen})
		}
	}
	return reads
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

type configRead struct {
	ref pve.VMRef
	gen uint64
	cfg pve.VMConfig
	err error
}

// readConfigs reads the configs, ReadConcurrency at a time.
func (l *Loop) readConfigs(ctx context.Context, reads []configRead) []configRead {
	if len(reads) == 0 {
		return nil
	}
	sem := make(chan struct{}, l.opts.ReadConcurrency)
	var wg sync.WaitGroup
	for i := range reads {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			reads[i].cfg, reads[i].err = l.pve.Config(ctx, reads[i].ref)
		})
	}
	wg.Wait()
	return reads
}

// maxHeldReads is how many consecutive config reads may fail before a VM
// with valid metadata turns unknown.
const maxHeldReads = 3

// applyReads stores what the config reads found. Called with l.mu held.
func (l *Loop) applyReads(results []configRead, now time.Time) {
	for _, r := range results {
		e := l.vms[r.ref.VMID]
		if e == nil || e.gen != r.gen || e.inFlight {
			if e != nil {
				e.needRead = true // a renewal changed the config meanwhile
			}
			continue
		}
		e.decided = false
		switch {
		case pve.IsNotFound(r.err):
			// Gone between the list and the read: the next list will tell.
			e.needRead = true
			continue
		case r.err != nil:
			e.needRead = true
			e.readFailures++
			if e.metaRead && e.metaErr == nil && e.lease.State != "" && e.readFailures < maxHeldReads {
				e.hold = true
				continue
			}
			e.metaRead, e.metaErr = true, r.err
			continue
		}
		e.needRead, e.readFailures, e.hold = false, 0, false
		e.readAt = now
		before := e.lease
		e.setConfig(r.cfg)
		if !sameLease(before, e.lease) {
			e.dirty = true // e.g. a new heartbeat token hash: the store must know it
		}
	}
}

// setConfig takes the metadata and tags from a config just read.
func (e *entry) setConfig(cfg pve.VMConfig) {
	e.metaRead = true
	e.meta, e.metaErr = lease.Decode(cfg.Description())
	if tags, ok := cfg.Get("tags"); ok || len(e.lease.Tags) > 0 {
		e.lease.Tags = lease.ParseTags(tags)
		e.rawTags = pve.SplitTags(lease.JoinTags(e.lease.Tags))
	}
	if e.metaErr == nil {
		m := e.meta
		e.lease.CreatedAt, e.lease.ExpiresAt, e.lease.MaxExpiresAt = m.CreatedAt, m.ExpiresAt, m.MaxExpiry()
		e.lease.TTL, e.lease.OnExpiry = m.TTL, string(m.OnExpiry)
		e.lease.Owner, e.lease.Profile, e.lease.JobID = m.Owner, m.Profile, m.JobID
		e.lease.Workspace, e.lease.TokenSHA256 = m.Workspace, m.HeartbeatTokenSHA256
	}
}

// facts returns what decide needs.
func (e *entry) facts() facts {
	return facts{
		tags: e.lease.Tags, template: e.template, kind: e.kind, status: e.lease.Status, lock: e.lock,
		meta: e.meta, metaErr: e.metaErr, metaRead: e.metaRead,
	}
}

// sameLease reports whether a and b hold the same values.
func sameLease(a, b reaper.Lease) bool {
	if !slices.Equal(a.Tags, b.Tags) {
		return false
	}
	a.Tags, b.Tags = nil, nil
	return reflect.DeepEqual(a, b)
}
