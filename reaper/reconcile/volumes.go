package reconcile

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/agentlab/terraform-provider-agentlab/internal/pve"
	"github.com/agentlab/terraform-provider-agentlab/reaper"
)

// A sandbox's seed ISO holds its cloud-init data and heartbeat token; PVE
// does not free it with the VM (an ISO has no owner). The loop records the
// ISO's volid as a pending deletion before the VM's destroy starts and
// deletes it once the VM is gone, at the end of the action or at a later
// tick: a crash between the two is finished after the restart.

// seedISOs returns the volids of vmid's seed ISO: the CD-ROM drives of cfg
// that hold one, and otherwise the ones the last storage scan found (an ISO
// detached from its VM).
func (l *Loop) seedISOs(cfg pve.VMConfig, vmid int) []string {
	var out []string
	for _, d := range seedDrives(cfg, vmid) {
		out = append(out, d.Volume)
	}
	if len(out) > 0 {
		return out
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.orphans.seedISOs[vmid])
}

// recordVolumes records volids as pending deletions, before the action that
// makes them garbage.
func (l *Loop) recordVolumes(ctx context.Context, node string, vmid int, volids []string, now time.Time) error {
	if len(volids) == 0 {
		return nil
	}
	vols := make([]reaper.VolumeDeletion, 0, len(volids))
	for _, v := range volids {
		vols = append(vols, reaper.VolumeDeletion{Volid: v, Node: node, VMID: vmid, Since: now})
	}
	if err := l.store.AddVolumeDeletions(ctx, vols); err != nil {
		return err
	}
	l.mu.Lock()
	for _, v := range vols {
		if !slices.ContainsFunc(l.pendingVols, func(p reaper.VolumeDeletion) bool { return p.Volid == v.Volid }) {
			l.pendingVols = append(l.pendingVols, v)
		}
	}
	l.mu.Unlock()
	return nil
}

// deleteVolumes deletes the pending volumes whose VM is gone (gone(vmid)),
// and retires the seed ISOs a guest's first contact asked for that are not
// done yet (see seed.go), recording each outcome. A failed deletion is
// retried after a backoff.
func (l *Loop) deleteVolumes(ctx context.Context, gone func(vmid int) bool) {
	now := l.clock.Now()
	l.mu.Lock()
	var due, retire []reaper.VolumeDeletion
	for _, v := range l.pendingVols {
		switch {
		case now.Before(l.volRetry[v.Volid]):
		case v.Retire:
			retire = append(retire, v)
		case gone(v.VMID):
			due = append(due, v)
		}
	}
	l.mu.Unlock()
	for _, v := range retire {
		l.finishRetire(ctx, v, gone(v.VMID))
	}
	for _, v := range due {
		err := l.pve.DeleteVolume(ctx, v.Node, v.Volid)
		ev := reaper.Event{Time: l.clock.Now(), VMID: v.VMID, Node: v.Node, Kind: reaper.KindVolume, Actor: reaper.ActorReaper}
		if err != nil {
			l.volumeFailed(ctx, v, ev, "delete", err)
			continue
		}
		ev.Decision, ev.Reason = reaper.DecisionDone, fmt.Sprintf("deleted seed ISO %s of VM %d (it held the sandbox's cloud-init data and heartbeat token)", v.Volid, v.VMID)
		if !l.volumeEnded(ctx, v, ev) {
			continue
		}
		l.m.VolumeDeleted()
		l.log.Info("seed ISO deleted", "vmid", v.VMID, "volid", v.Volid)
	}
}

// volumeEnded records ev, the end of the pending deletion v (done, or left
// alone for good), and forgets v. It reports false when the store could not
// record it: v stays pending and a later tick ends it again (deleting an
// ISO that is gone already finds it gone).
func (l *Loop) volumeEnded(ctx context.Context, v reaper.VolumeDeletion, ev reaper.Event) bool {
	if err := l.store.VolumeDeleted(ctx, v.Volid, ev); err != nil {
		l.log.Error("cannot record the end of a seed ISO's deletion; trying again at the next tick",
			"volid", v.Volid, "decision", ev.Decision, "err", err)
		return false
	}
	l.forgetVolume(v.Volid)
	return true
}

// volumeFailed backs the pending deletion v off for four intervals and
// records ev as its failure to what ("delete", "retire") the seed ISO.
func (l *Loop) volumeFailed(ctx context.Context, v reaper.VolumeDeletion, ev reaper.Event, what string, err error) {
	l.mu.Lock()
	l.volRetry[v.Volid] = l.clock.Now().Add(l.opts.Interval * 4)
	l.mu.Unlock()
	ev.Decision, ev.Reason = reaper.DecisionFailed, fmt.Sprintf("%s seed ISO %s of VM %d failed (retrying): %v", what, v.Volid, v.VMID, err)
	l.log.Error("cannot "+what+" a seed ISO", "vmid", v.VMID, "volid", v.Volid, "err", err, lacking(err))
	if rerr := l.store.Record(ctx, nil, []reaper.Event{ev}); rerr != nil {
		l.log.Error("cannot record a failed seed ISO "+what, "volid", v.Volid, "err", rerr)
	}
}
