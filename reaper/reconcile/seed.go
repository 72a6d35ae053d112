package reconcile

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/agentlab/terraform-provider-agentlab/internal/lease"
	"github.com/agentlab/terraform-provider-agentlab/internal/pve"
	"github.com/agentlab/terraform-provider-agentlab/internal/volume"
	"github.com/agentlab/terraform-provider-agentlab/reaper"
)

// A sandbox's seed ISO holds its cloud-init data: the sealed secrets, the
// heartbeat token and a job's bootstrap token. The guest needs it only at
// its first boot (cloud-init reads it in its first stage and caches it), so
// the guest's first contact with the reaper is proof enough that it is
// needed no more: its boot report (agentlab-heartbeat --booted, which
// cloud-init runs at the end of the first boot), an authorized heartbeat,
// or a job runner fetching its spec. The loop then ejects the ISO from the
// VM's CD-ROM and deletes it from storage.
//
// Intent first: the deletion is recorded (with Retire set) before the
// eject, so a crash or a failure anywhere between is finished by a later
// tick. The provider retires a sandbox's ISO too, once the guest agent
// reports an address (whichever comes first wins and the other finds it
// gone); a job's it leaves to the reaper.

// Contacts that prove a guest has booted, as the events name them.
const (
	contactBoot      = "boot report"
	contactHeartbeat = "heartbeat"
	contactJobSpec   = "job spec"
)

// seedDrives returns the CD-ROM drives of cfg that hold vmid's own seed ISO
// (by internal/volume's naming rule), in key order.
func seedDrives(cfg pve.VMConfig, vmid int) []pve.Drive {
	var out []pve.Drive
	for _, d := range cfg.Drives() {
		if id, ok := volume.SeedISOOwner(d.Volume); ok && id == vmid && d.CDROM() && d.Storage != "" {
			out = append(out, d)
		}
	}
	return out
}

// noteSeed records, when cfg (the config of sandbox ref as read for a
// contact from its guest) still holds the sandbox's seed ISO, that the ISO
// is to be retired: the intent, in the store and in the pending deletions.
// It makes no Proxmox call; FinishSeeds (or the next tick) does the work.
// contact says how the guest made contact. A config without a seed costs
// nothing, so every contact after the first is free.
func (l *Loop) noteSeed(ctx context.Context, ref pve.VMRef, cfg pve.VMConfig, contact string) {
	drives := seedDrives(cfg, ref.VMID)
	if len(drives) == 0 {
		return
	}
	now := l.clock.Now()
	l.mu.Lock()
	known := true
	for _, d := range drives {
		known = known && slices.ContainsFunc(l.pendingVols, func(p reaper.VolumeDeletion) bool { return p.Volid == d.Volume && p.Retire })
	}
	l.mu.Unlock()
	if known {
		return // a contact before this one recorded it; its retirement is under way or retried
	}
	volids := make([]string, 0, len(drives))
	vols := make([]reaper.VolumeDeletion, 0, len(drives))
	for _, d := range drives {
		volids = append(volids, d.Volume)
		vols = append(vols, reaper.VolumeDeletion{Volid: d.Volume, Node: ref.Node, VMID: ref.VMID, Since: now, Retire: true})
	}
	reason := fmt.Sprintf("the guest of VM %d has booted (first %s); will eject and delete its seed ISO %s", ref.VMID, contact, strings.Join(volids, ", "))
	if l.opts.DryRun {
		ev := reaper.Event{Time: now, VMID: ref.VMID, Node: ref.Node, Kind: reaper.KindVolume, Decision: reaper.DecisionDryRun,
			Reason: "dry run: not done; " + reason, Actor: reaper.ActorReaper, DryRun: true}
		if err := l.store.Record(ctx, nil, []reaper.Event{ev}); err != nil {
			l.log.Error("cannot record a seed ISO left by dry run", "vmid", ref.VMID, "err", err)
		}
		return
	}
	if err := l.store.AddVolumeDeletions(ctx, vols); err != nil {
		l.log.Error("cannot record the seed ISO to retire; leaving it until the next contact", "vmid", ref.VMID, "err", err)
		return
	}
	intent := reaper.Event{Time: now, VMID: ref.VMID, Node: ref.Node, Kind: reaper.KindVolume, Decision: reaper.DecisionIntent,
		Reason: reason, Actor: reaper.ActorReaper}
	if err := l.store.Record(ctx, nil, []reaper.Event{intent}); err != nil {
		l.log.Error("cannot record the intent to retire a seed ISO", "vmid", ref.VMID, "err", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, v := range vols {
		if i := slices.IndexFunc(l.pendingVols, func(p reaper.VolumeDeletion) bool { return p.Volid == v.Volid }); i >= 0 {
			l.pendingVols[i].Retire = true
		} else {
			l.pendingVols = append(l.pendingVols, v)
		}
	}
}

// FinishSeeds ejects and deletes the seed ISOs of vmid whose retirement a
// contact from its guest recorded, and does nothing (no Proxmox call) when
// there are none. The guest listener calls it once it has answered the
// contact, so the guest never waits for Proxmox; the next tick does it
// otherwise.
func (l *Loop) FinishSeeds(ctx context.Context, vmid int) {
	now := l.clock.Now()
	l.mu.Lock()
	var due []reaper.VolumeDeletion
	for _, v := range l.pendingVols {
		if v.VMID == vmid && v.Retire && !now.Before(l.volRetry[v.Volid]) {
			due = append(due, v)
		}
	}
	l.mu.Unlock()
	for _, v := range due {
		l.finishRetire(ctx, v, false)
	}
}

// Booted is the guest's report, at its first boot, that it has booted,
// sent with the token its seed carried (agentlab-heartbeat --booted, which
// cloud-init runs once): the seed ISO is retired (see FinishSeeds) and the
// lease is left as it is. The seed's token is swapped for a fresh heartbeat
// token, returned for the guest to keep: from then on the seed's token
// (which sat in the ISO on PVE storage) extends nothing. Until the first
// heartbeat with the fresh token, the seed's token may ask again and gets
// another (the answer may have been lost on its way); a report with the
// current token returns no new one. It returns the VMID of the token's
// sandbox. Errors: reaper.ErrUnauthorized (a token no sandbox's metadata
// holds), reaper.ErrNotFound, reaper.ErrProtected (not an agentlab sandbox).
func (l *Loop) Booted(ctx context.Context, token string) (vmid int, heartbeatToken string, err error) {
	sum := sha256.Sum256([]byte(token))
	ref, err := l.tokenOwner(ctx, sum)
	if err != nil {
		return 0, "", err
	}
	unlock := l.locks.lock(ref.VMID)
	defer unlock()
	for attempt := 1; ; attempt++ {
		cfg, err := l.pve.Config(ctx, ref)
		if pve.IsNotFound(err) {
			return 0, "", fmt.Errorf("vm %d: %w", ref.VMID, reaper.ErrNotFound)
		}
		if err != nil {
			return 0, "", fmt.Errorf("read config of vm %d: %w", ref.VMID, err)
		}
		if !lease.Owned(lease.ParseTags(cfg.Value("tags"))) || cfg.Template() {
			return 0, "", fmt.Errorf("vm %d has no agentlab tag: %w", ref.VMID, reaper.ErrProtected)
		}
		meta, err := lease.Decode(cfg.Description())
		if err != nil {
			return 0, "", reaper.ErrUnauthorized // no trusted metadata, no trusted token
		}
		fresh, err := l.swapToken(ctx, ref, cfg, meta, sum)
		if pve.IsDigestMismatch(err) && attempt < maxDigestRetries {
			continue
		}
		if err != nil {
			return 0, "", err
		}
		l.log.Info("guest booted", "vmid", ref.VMID, "node", ref.Node, "token_handed", fresh != "")
		l.noteSeed(ctx, ref, cfg, contactBoot)
		return ref.VMID, fresh, nil
	}
}

// swapToken hands the guest of ref, which reported its boot with the token
// of hash sum, a fresh heartbeat token (see Booted): it writes the fresh
// token's hash to the metadata, keeping the seed's as BootTokenSHA256, in
// one update guarded by cfg's digest, and records the lease. It returns ""
// when the token is already the current one or in a dry run (nothing is
// written then: the guest keeps the seed's token).
func (l *Loop) swapToken(ctx context.Context, ref pve.VMRef, cfg pve.VMConfig, meta lease.Metadata, sum [sha256.Size]byte) (string, error) {
	current := tokenMatches(meta, sum) == nil
	seed := meta.BootTokenSHA256 != "" && hashMatches(meta.BootTokenSHA256, sum)
	switch {
	case current && meta.BootTokenSHA256 != "":
		return "", nil // it has the token a report handed it, and reports again
	case !current && !seed:
		return "", reaper.ErrUnauthorized
	case l.opts.DryRun:
		return "", nil
	}
	fresh, freshSum, err := lease.NewHeartbeatToken()
	if err != nil {
		return "", err
	}
	next := meta
	next.BootTokenSHA256 = hex.EncodeToString(sum[:])
	next.HeartbeatTokenSHA256 = freshSum
	desc, err := lease.Encode(cfg.Description(), next)
	if err != nil {
		return "", fmt.Errorf("vm %d: %w", ref.VMID, err)
	}
	set := map[string]string{"description": desc}
	if err := l.pve.UpdateConfig(ctx, ref, pve.ConfigUpdate{Set: set, Digest: cfg.Digest()}); err != nil {
		return "", fmt.Errorf("write the heartbeat token of vm %d: %w", ref.VMID, err)
	}
	now := l.clock.Now()
	reason := "heartbeat token handed to the guest at its boot report; the seed's token extends nothing any more"
	if seed {
		reason = "heartbeat token handed to the guest again (its boot report came again with the seed's token: the last answer was lost)"
	}
	ev := reaper.Event{Time: now, VMID: ref.VMID, Node: ref.Node, Kind: reaper.KindHeartbeat, Decision: reaper.DecisionDone,
		Reason: reason, Actor: reaper.ActorReaper}
	var leases []reaper.Lease
	if saved, ok := l.rememberWritten(ref.VMID, withSet(cfg, set), now); ok {
		leases = append(leases, saved)
	}
	if err := l.store.Record(ctx, leases, []reaper.Event{ev}); err != nil {
		// The metadata holds the new hash; the next tick stores it.
		l.log.Error("cannot record the new heartbeat token's hash", "vmid", ref.VMID, "err", err)
	}
	return fresh, nil
}

// JobContact is the first call of job jobID's runner: it fetched its spec,
// so the guest of the job's sandbox (node, vmid) has booted and its seed
// ISO is retired (see FinishSeeds). The VM must be an agentlab sandbox
// whose metadata names the job; otherwise nothing is done and the error
// says why.
func (l *Loop) JobContact(ctx context.Context, node string, vmid int, jobID string) error {
	ref := pve.VMRef{Node: node, VMID: vmid}
	cfg, err := l.pve.Config(ctx, ref)
	if pve.IsNotFound(err) {
		return fmt.Errorf("vm %d: %w", vmid, reaper.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("read config of vm %d: %w", vmid, err)
	}
	if !lease.Owned(lease.ParseTags(cfg.Value("tags"))) || cfg.Template() {
		return fmt.Errorf("vm %d has no agentlab tag: %w", vmid, reaper.ErrProtected)
	}
	meta, err := lease.Decode(cfg.Description())
	if err != nil || meta.JobID != jobID {
		return fmt.Errorf("vm %d: %w: its metadata does not name job %s", vmid, reaper.ErrConflict, jobID)
	}
	l.noteSeed(ctx, ref, cfg, contactJobSpec)
	l.FinishSeeds(ctx, vmid)
	return nil
}

// errNotASandbox is a VM whose seed the loop will not eject: it lost its
// agentlab tag or became a template since the contact.
var errNotASandbox = errors.New("not an agentlab sandbox")

// finishRetire ejects the pending seed ISO v from its VM's CD-ROM, if it is
// still there, and deletes it, recording the outcome. gone says the VM is
// known to be gone (no config to read). A failure is retried after a
// backoff, at a later tick.
func (l *Loop) finishRetire(ctx context.Context, v reaper.VolumeDeletion, gone bool) {
	l.mu.Lock()
	if l.volBusy[v.Volid] {
		l.mu.Unlock()
		return // a contact and a tick at once: one of them does it
	}
	l.volBusy[v.Volid] = true
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		delete(l.volBusy, v.Volid)
		l.mu.Unlock()
	}()
	err := l.eject(ctx, v, gone)
	if err == nil {
		err = l.pve.DeleteVolume(ctx, v.Node, v.Volid)
	}
	ev := reaper.Event{Time: l.clock.Now(), VMID: v.VMID, Node: v.Node, Kind: reaper.KindVolume, Actor: reaper.ActorReaper}
	if errors.Is(err, errNotASandbox) {
		// Left alone for good: the deletion was recorded for a sandbox.
		ev.Decision, ev.Reason = reaper.DecisionSkip, fmt.Sprintf("seed ISO %s left in place: VM %d %v", v.Volid, v.VMID, err)
		l.log.Warn("not retiring a seed ISO", "vmid", v.VMID, "volid", v.Volid, "err", err)
		l.volumeEnded(ctx, v, ev)
		return
	}
	if err != nil {
		l.volumeFailed(ctx, v, ev, "retire", err)
		return
	}
	ev.Decision, ev.Reason = reaper.DecisionDone, fmt.Sprintf("ejected and deleted seed ISO %s of VM %d after its guest booted (it held the sandbox's cloud-init data and heartbeat token)", v.Volid, v.VMID)
	if !l.volumeEnded(ctx, v, ev) {
		return
	}
	l.m.SeedRetired()
	l.log.Info("seed ISO retired", "vmid", v.VMID, "volid", v.Volid)
	// Nor is it on storage any more for the VM's destroy to delete.
	l.mu.Lock()
	if isos, ok := l.orphans.seedISOs[v.VMID]; ok {
		l.orphans.seedISOs[v.VMID] = slices.DeleteFunc(isos, func(id string) bool { return id == v.Volid })
	}
	l.mu.Unlock()
}

// eject empties every CD-ROM drive of v's VM that holds v, in one update
// guarded by the config digest, under the VM's lock. A VM that is gone took
// nothing with it (an ISO has no owner) and needs no eject.
func (l *Loop) eject(ctx context.Context, v reaper.VolumeDeletion, gone bool) error {
	if gone {
		return nil
	}
	unlock := l.locks.lock(v.VMID)
	defer unlock()
	ref := pve.VMRef{Node: v.Node, VMID: v.VMID}
	for attempt := 1; ; attempt++ {
		cfg, err := l.pve.Config(ctx, ref)
		if pve.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read config of vm %d: %w", v.VMID, err)
		}
		set := map[string]string{}
		for _, d := range seedDrives(cfg, v.VMID) {
			if d.Volume == v.Volid {
				set[d.Key] = "none,media=cdrom"
			}
		}
		if len(set) == 0 {
			return nil // ejected already (by the provider, or before a crash)
		}
		if !lease.Owned(lease.ParseTags(cfg.Value("tags"))) || cfg.Template() {
			return fmt.Errorf("has no agentlab tag or is a template: %w", errNotASandbox)
		}
		err = l.pve.UpdateConfig(ctx, ref, pve.ConfigUpdate{Set: set, Digest: cfg.Digest()})
		if pve.IsDigestMismatch(err) && attempt < maxDigestRetries {
			continue
		}
		if err != nil {
			return fmt.Errorf("eject the seed ISO of vm %d: %w", v.VMID, err)
		}
		return nil
	}
}

// forgetVolume drops a pending deletion that is done.
func (l *Loop) forgetVolume(volid string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.pendingVols = slices.DeleteFunc(l.pendingVols, func(p reaper.VolumeDeletion) bool { return p.Volid == volid })
	delete(l.volRetry, volid)
}
