// Package reconcile is the reaper's loop: every interval it lists the
// cluster's VMs with one /cluster/resources call, reads the metadata of
// agentlab-tagged VMs only when it may have changed, decides what each lease
// calls for and destroys (or stops) the sandboxes whose lease has expired. It
// also renews leases, for the control API and for heartbeats from inside
// sandboxes, by rewriting the VM's metadata block and expiry tag.
//
// The VM's own config is the source of truth. The loop fails closed: a VM
// without the agentlab tag, tagged agentlab-keep, with unreadable, missing or
// malformed metadata, or whose expiry tag disagrees with its metadata is never
// touched. Every decision is an event in the store; a destructive action is
// recorded as an intent before it starts and as an outcome after, so a crash
// half-way is finished by the next tick and leaves a complete audit trail.
package reconcile

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/agentlab/terraform-provider-agentlab/internal/clock"
	"github.com/agentlab/terraform-provider-agentlab/internal/pve"
	"github.com/agentlab/terraform-provider-agentlab/reaper"
)

// Proxmox is what the loop needs from the Proxmox VE API; *pve.Client has it.
type Proxmox interface {
	ListVMs(ctx context.Context) ([]pve.VMEntry, error)
	Config(ctx context.Context, ref pve.VMRef) (pve.VMConfig, error)
	UpdateConfig(ctx context.Context, ref pve.VMRef, upd pve.ConfigUpdate) error
	Stop(ctx context.Context, ref pve.VMRef) error
	Destroy(ctx context.Context, ref pve.VMRef) error
	Storages(ctx context.Context, node, content string) ([]pve.StorageInfo, error)
	StorageContent(ctx context.Context, node, storage, content string, vmid int) ([]pve.Volume, error)
	DeleteVolume(ctx context.Context, node, volid string) error
	ActiveTasks(ctx context.Context, node, typ string) ([]pve.TaskStatus, error)
}

// Store keeps leases as last seen and the event log; *sqlite.DB is one.
type Store interface {
	Leases(ctx context.Context, all bool) ([]reaper.Lease, error)
	Lease(ctx context.Context, vmid int) (reaper.Lease, error)
	LeaseByToken(ctx context.Context, sha256Hex string) (reaper.Lease, error)
	Record(ctx context.Context, leases []reaper.Lease, events []reaper.Event) error
	Touch(ctx context.Context, at time.Time) error
	PruneLeases(ctx context.Context, before time.Time) (int64, error)
	PruneEvents(ctx context.Context, before time.Time) (int64, error)
	Size() (int64, error)
	Kept(ctx context.Context) (map[int]bool, error)
	SetKept(ctx context.Context, vmid int, keep bool, at time.Time, actor string, ev reaper.Event) error
	AddVolumeDeletions(ctx context.Context, vols []reaper.VolumeDeletion) error
	VolumeDeletions(ctx context.Context) ([]reaper.VolumeDeletion, error)
	VolumeDeleted(ctx context.Context, volid string, ev reaper.Event) error
	Orphans(ctx context.Context) ([]reaper.Orphan, error)
	SyncOrphans(ctx context.Context, kinds []reaper.OrphanKind, current []reaper.Orphan, events []reaper.Event) error
}

// Metrics receives what the loop counts; *metrics.Metrics is one.
type Metrics interface {
	SetSandboxes(counts map[reaper.State]int)
	Expired()
	Destroyed()
	Stopped()
	DestroyFailed()
	Tick(d time.Duration, ok bool, end time.Time)
	Heartbeat(result string)
	Renewal(result string)
	SetOrphans(counts map[reaper.OrphanKind]int)
	OrphanPruned(kind reaper.OrphanKind)
	VolumeDeleted()
	SeedRetired()
	DatabaseSize(bytes int64)
}

// Options configure a Loop. Zero values take the defaults noted.
type Options struct {
	// Interval is the time between ticks in Run. Default 30 s.
	Interval time.Duration
	// Grace is extra time after expiry before the loop acts.
	Grace time.Duration
	// WarnBefore is how long before expiry a warning event is recorded; 0 disables it.
	WarnBefore time.Duration
	// DryRun makes the loop decide and record everything but change nothing.
	DryRun bool
	// Clock tells the time for every decision. Default the wall clock.
	Clock clock.Clock
	// Logger receives the decisions. Default discards.
	Logger *slog.Logger
	// Metrics receives counts. Default none.
	Metrics Metrics
	// ReadConcurrency bounds parallel config reads in a tick. Default 8.
	ReadConcurrency int
	// ActionConcurrency bounds parallel destroys in a tick. Default 4.
	ActionConcurrency int
	// ActionTimeout bounds one destroy or stop, which runs to its end even
	// when the loop is being shut down. Default 5 min.
	ActionTimeout time.Duration
	// InvalidRefresh is how often the config of a VM the loop refuses to touch
	// (invalid state) is read again although nothing in the resource list
	// changed. Default 1 h.
	InvalidRefresh time.Duration
	// Retention is how long destroyed and gone sandboxes stay in the lease
	// table. Default 7 days.
	Retention time.Duration
	// EventRetention is how long events stay in the audit log. Default 30 days.
	EventRetention time.Duration
	// MaxLease caps every lease, whatever its metadata says; 0: no cap.
	MaxLease time.Duration
	// UserKeep honours agentlab-keep tags set outside Keep.
	UserKeep bool
	// Prune removes the orphans whose ownership the loop can prove once they
	// have been seen for OrphanGrace.
	Prune bool
	// OrphanGrace is how long an orphan must have been seen before Prune
	// removes it.
	OrphanGrace time.Duration
	// PlaceholderFirst and PlaceholderLast bound the VMIDs in which clone
	// placeholders are orphans; both 0: every VMID.
	PlaceholderFirst, PlaceholderLast int
	// StorageScanEvery is how often the loop lists the ISO storages for seed
	// ISOs whose VM is gone (also right after a VM disappears). Default 15 min.
	StorageScanEvery time.Duration
	// Egress, when set, is the egress filter the loop hands every sandbox to
	// at each tick; EgressBridge is the bridge whose NICs it filters.
	Egress       EgressFilter
	EgressBridge string
}

func (o Options) withDefaults() Options {
	if o.Interval <= 0 {
		o.Interval = 30 * time.Second
	}
	if o.Clock == nil {
		o.Clock = clock.Real{}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Metrics == nil {
		o.Metrics = noMetrics{}
	}
	if o.ReadConcurrency <= 0 {
		o.ReadConcurrency = 8
	}
	if o.ActionConcurrency <= 0 {
		o.ActionConcurrency = 4
	}
	if o.ActionTimeout <= 0 {
		o.ActionTimeout = 5 * time.Minute
	}
	if o.InvalidRefresh <= 0 {
		o.InvalidRefresh = time.Hour
	}
	if o.Retention <= 0 {
		o.Retention = 7 * 24 * time.Hour
	}
	if o.EventRetention <= 0 {
		o.EventRetention = 30 * 24 * time.Hour
	}
	if o.StorageScanEvery <= 0 {
		o.StorageScanEvery = 15 * time.Minute
	}
	return o
}

// Loop is the reconcile loop. Create it with New; it is safe for concurrent
// use (Tick, Renew and Heartbeat may run at the same time).
type Loop struct {
	pve   Proxmox
	store Store
	opts  Options
	clock clock.Clock
	log   *slog.Logger
	m     Metrics

	tickMu sync.Mutex // one tick at a time
	locks  vmLocks

	mu        sync.Mutex // guards the fields below
	vms       map[int]*entry
	loaded    bool
	tickNo    uint64
	lastPrune time.Time
	lastTick  time.Time
	// lastCatchUp is when a heartbeat with an unknown token last ran a tick.
	lastCatchUp time.Time
	// kept holds the VMs the operator kept with Keep.
	kept map[int]bool
	// pendingVols are the volumes to delete once their VM is gone, and
	// volRetry when a failed deletion may be tried again.
	pendingVols []reaper.VolumeDeletion
	volRetry    map[string]time.Time
	// volBusy holds the seed ISOs being retired (see seed.go).
	volBusy map[string]bool
	// orphans tracks what the orphan search found (see orphans.go).
	orphans orphanState
}

// New returns a loop over p and s.
func New(p Proxmox, s Store, opts Options) *Loop {
	opts = opts.withDefaults()
	return &Loop{
		pve: p, store: s, opts: opts, clock: opts.Clock, log: opts.Logger, m: opts.Metrics,
		vms: map[int]*entry{}, kept: map[int]bool{}, volRetry: map[string]time.Time{}, volBusy: map[string]bool{},
	}
}

// Run ticks at once and then every Interval until ctx is cancelled. A failed
// tick is logged and retried at the next interval. An action under way when
// ctx is cancelled runs to its end (bounded by ActionTimeout).
func (l *Loop) Run(ctx context.Context) error {
	t := time.NewTicker(l.opts.Interval)
	defer t.Stop()
	for {
		if err := l.Tick(ctx); err != nil && ctx.Err() == nil {
			l.log.Warn("reconcile tick failed; retrying at the next interval", "err", err, "interval", l.opts.Interval, lacking(err))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// LastTick returns when the last successful tick ended (zero before one).
func (l *Loop) LastTick() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lastTick
}

// Tick runs one reconcile pass: list, read what changed, decide, record,
// act. It returns an error when the VMs cannot be listed or the decisions
// cannot be recorded; then nothing was changed.
func (l *Loop) Tick(ctx context.Context) error {
	l.tickMu.Lock()
	defer l.tickMu.Unlock()
	started := time.Now()
	err := l.tick(ctx)
	end := l.clock.Now()
	l.m.Tick(time.Since(started), err == nil, end)
	if err == nil {
		l.mu.Lock()
		l.lastTick = end
		l.mu.Unlock()
	}
	return err
}

func (l *Loop) tick(ctx context.Context) error {
	if err := l.load(ctx); err != nil {
		return err
	}
	cluster, reads, untracked, now, err := l.list(ctx)
	if err != nil {
		return err
	}
	l.readConfigs(ctx, reads, now)
	l.readUntracked(ctx, untracked)

	l.mu.Lock()
	d := l.decideAll(now)
	counts := l.countStates()
	tracked := len(l.vms)
	l.mu.Unlock()

	if err := l.store.Record(ctx, d.leases, d.events); err != nil {
		l.mu.Lock()
		l.unrecorded(d)
		l.mu.Unlock()
		return fmt.Errorf("record decisions: %w", err)
	}
	l.mu.Lock()
	l.recorded(d)
	l.mu.Unlock()
	for _, ev := range d.events {
		if ev.Kind == reaper.KindDestroy && ev.Decision == reaper.DecisionDone {
			l.m.Destroyed()
		}
		if (ev.Kind == reaper.KindDestroy || ev.Kind == reaper.KindGone) && ev.Decision == reaper.DecisionDone {
			// A vanished VM, logged once its outcome is in the audit log.
			l.log.Info("sandbox "+string(ev.Kind), "vmid", ev.VMID, "node", ev.Node, "decision", ev.Decision, "reason", ev.Reason)
		}
	}
	l.m.SetSandboxes(counts)

	l.runActions(ctx, d.todo)
	l.deleteVolumes(ctx, cluster.absent)
	l.searchOrphans(ctx, cluster, now)
	l.syncEgress(ctx, now)

	if err := l.store.Touch(ctx, now); err != nil {
		l.log.Warn("cannot update last_seen", "err", err)
	}
	l.forgetRemovedKeeps(ctx, now)
	l.prune(ctx, now)
	l.log.Debug("tick", "vms", len(cluster.ids), "sandboxes", tracked, "config_reads", len(reads),
		"events", len(d.events), "actions", len(d.todo))
	return nil
}

// list lists the VMs and updates the loop's memory from the list. It
// returns what the rest of the tick needs of the list (VMIDs and nodes), the
// sandbox configs to read, the untagged VMs whose config the orphan search
// reads, and when. The list itself, 10,000 entries in a large cluster, is
// dropped at once: the first tick reads every config and is the daemon's
// peak of memory.
func (l *Loop) list(ctx context.Context) (c clusterView, reads []configRead, untracked []pve.VMRef, now time.Time, err error) {
	vms, err := l.pve.ListVMs(ctx)
	if err != nil {
		return clusterView{}, nil, nil, time.Time{}, fmt.Errorf("list vms: %w", err)
	}
	now = l.clock.Now()
	c.ids = make([]int, len(vms))
	nodes := map[string]bool{}
	for i := range vms {
		c.ids[i] = vms[i].VMID
		if !nodes[vms[i].Node] {
			nodes[vms[i].Node] = true
			c.nodes = append(c.nodes, vms[i].Node)
		}
	}
	slices.Sort(c.ids)
	slices.Sort(c.nodes)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.tickNo++
	reads, untracked = l.observe(vms, now)
	return c, reads, untracked, now, nil
}

// clusterView is what a tick keeps of the resource list.
type clusterView struct {
	ids   []int    // every VMID, sorted
	nodes []string // the nodes with guests, sorted
}

// absent reports whether vmid was not in the list.
func (c clusterView) absent(vmid int) bool {
	_, found := slices.BinarySearch(c.ids, vmid)
	return !found
}

// prune deletes old destroyed and gone leases and events older than
// EventRetention, and measures the database, at most once an hour.
func (l *Loop) prune(ctx context.Context, now time.Time) {
	if now.Sub(l.lastPrune) < time.Hour {
		return
	}
	l.lastPrune = now
	if n, err := l.store.PruneLeases(ctx, now.Add(-l.opts.Retention)); err != nil {
		l.log.Warn("cannot prune old leases", "err", err)
	} else if n > 0 {
		l.log.Info("pruned old leases", "count", n)
	}
	if n, err := l.store.PruneEvents(ctx, now.Add(-l.opts.EventRetention)); err != nil {
		l.log.Warn("cannot prune old events", "err", err)
	} else if n > 0 {
		l.log.Info("pruned old events", "count", n, "retention", l.opts.EventRetention)
	}
	if size, err := l.store.Size(); err != nil {
		l.log.Warn("cannot measure the database", "err", err)
	} else {
		l.m.DatabaseSize(size)
	}
}

type noMetrics struct{}

func (noMetrics) SetSandboxes(map[reaper.State]int)    {}
func (noMetrics) Expired()                             {}
func (noMetrics) Destroyed()                           {}
func (noMetrics) Stopped()                             {}
func (noMetrics) DestroyFailed()                       {}
func (noMetrics) Tick(time.Duration, bool, time.Time)  {}
func (noMetrics) Heartbeat(string)                     {}
func (noMetrics) Renewal(string)                       {}
func (noMetrics) SetOrphans(map[reaper.OrphanKind]int) {}
func (noMetrics) OrphanPruned(reaper.OrphanKind)       {}
func (noMetrics) VolumeDeleted()                       {}
func (noMetrics) SeedRetired()                         {}
func (noMetrics) DatabaseSize(int64)                   {}
