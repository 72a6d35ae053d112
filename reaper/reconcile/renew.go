package reconcile

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/agentlab/terraform-provider-agentlab/internal/lease"
	"github.com/agentlab/terraform-provider-agentlab/internal/pve"
	"github.com/agentlab/terraform-provider-agentlab/reaper"
)

// maxDigestRetries bounds the read-modify-write attempts of a renewal that
// races other writers of the VM's config.
const maxDigestRetries = 4

// Renew sets the lease of vmid to expire d from now (and its TTL to d),
// never past max_ttl, for an operator or the provider. actor names who asked.
//
// When max_ttl cuts the renewal short, the lease is extended to the cap and
// Renew returns the Renewal together with a *lease.PastMaxTTLError (errors.Is
// lease.ErrPastMaxTTL). Other errors: reaper.ErrNotFound, reaper.ErrConflict
// (a lease being destroyed, metadata or tags the reaper cannot trust),
// reaper.ErrProtected (not an agentlab VM) and lease.ErrInvalid (bad d).
func (l *Loop) Renew(ctx context.Context, vmid int, d time.Duration, actor string) (reaper.Renewal, error) {
	node, err := l.nodeOf(ctx, vmid)
	if err != nil {
		l.m.Renewal("rejected")
		return reaper.Renewal{}, err
	}
	r, err := l.extend(ctx, pve.VMRef{Node: node, VMID: vmid}, extension{
		kind: reaper.KindRenew, actor: actor, ttl: func(lease.Metadata) time.Duration { return d },
	})
	l.m.Renewal(result(err))
	return r, err
}

// catchUpEvery bounds the ticks that heartbeats with unknown tokens may run,
// so such requests cannot make the reaper list Proxmox on demand.
const catchUpEvery = 10 * time.Second

// catchUp runs a tick for a heartbeat whose token no lease knows yet (a
// sandbox created since the last tick, so its agent need not wait a whole
// interval), at most once per catchUpEvery. It reports whether it ran one
// that succeeded.
func (l *Loop) catchUp(ctx context.Context) bool {
	now := l.clock.Now()
	l.mu.Lock()
	if !l.lastCatchUp.IsZero() && now.Sub(l.lastCatchUp) < catchUpEvery {
		l.mu.Unlock()
		return false
	}
	l.lastCatchUp = now
	l.mu.Unlock()
	return l.Tick(ctx) == nil
}

// Heartbeat extends, by its TTL from now, the lease of the sandbox whose
// heartbeat token is token, never past max_ttl. The reaper knows only the
// token's sha256, from the VM's metadata; the comparison is constant-time.
// A lease already expired is not extended (reaper.ErrConflict): grace is the
// last chance. Errors as for Renew, plus reaper.ErrUnauthorized.
//
// A heartbeat whose token matches proves the guest has booted: when the VM
// still holds its seed ISO, its retirement is recorded, for FinishSeeds or
// the next tick to carry out (see seed.go).
func (l *Loop) Heartbeat(ctx context.Context, token string) (reaper.Renewal, error) {
	sum := sha256.Sum256([]byte(token))
	ref, err := l.tokenOwner(ctx, sum)
	if errors.Is(err, reaper.ErrUnauthorized) {
		l.m.Heartbeat("unauthorized")
		return reaper.Renewal{}, err
	}
	if err != nil {
		l.m.Heartbeat("error")
		return reaper.Renewal{}, err
	}
	var booted *pve.VMConfig // the config, once the token proved the guest is up
	r, err := l.extend(ctx, ref, extension{
		kind: reaper.KindHeartbeat, actor: reaper.ActorGuest, heartbeat: true,
		contact:   func(cfg pve.VMConfig) { booted = &cfg },
		ttl:       func(m lease.Metadata) time.Duration { return m.TTL },
		authorize: func(m lease.Metadata) error { return tokenMatches(m, sum) },
	})
	if booted != nil {
		l.noteSeed(ctx, ref, *booted, contactHeartbeat)
	}
	switch {
	case errors.Is(err, reaper.ErrUnauthorized):
		l.m.Heartbeat("unauthorized")
	default:
		l.m.Heartbeat(result(err))
	}
	return r, err
}

// tokenOwner finds the sandbox whose metadata held the heartbeat token of
// hash sum at the last tick (running a catch-up tick for a sandbox created
// since). The token is not checked against the VM's config yet. An unknown
// token is reaper.ErrUnauthorized.
func (l *Loop) tokenOwner(ctx context.Context, sum [sha256.Size]byte) (pve.VMRef, error) {
	known, err := l.store.LeaseByToken(ctx, hex.EncodeToString(sum[:]))
	if errors.Is(err, reaper.ErrNotFound) && l.catchUp(ctx) {
		// A sandbox created since the last tick: the catch-up tick has seen it.
		known, err = l.store.LeaseByToken(ctx, hex.EncodeToString(sum[:]))
	}
	if errors.Is(err, reaper.ErrNotFound) {
		return pve.VMRef{}, reaper.ErrUnauthorized
	}
	if err != nil {
		return pve.VMRef{}, err
	}
	node := known.Node
	l.mu.Lock()
	if e := l.vms[known.VMID]; e != nil {
		node = e.lease.Node
	}
	l.mu.Unlock()
	return pve.VMRef{Node: node, VMID: known.VMID}, nil
}

// tokenMatches checks, in constant time, that the metadata m holds the hash
// sum of a heartbeat token.
func tokenMatches(m lease.Metadata, sum [sha256.Size]byte) error {
	if !hashMatches(m.HeartbeatTokenSHA256, sum) {
		return reaper.ErrUnauthorized
	}
	return nil
}

// hashMatches reports, in constant time, whether the hex hash want is sum.
func hashMatches(want string, sum [sha256.Size]byte) bool {
	b, err := hex.DecodeString(want)
	return err == nil && len(b) == sha256.Size && subtle.ConstantTimeCompare(b, sum[:]) == 1
}

func result(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, lease.ErrPastMaxTTL):
		return "capped"
	case errors.Is(err, reaper.ErrConflict), errors.Is(err, reaper.ErrNotFound),
		errors.Is(err, reaper.ErrProtected), errors.Is(err, lease.ErrInvalid):
		return "rejected"
	}
	return "error"
}

// nodeOf finds the node of vmid: from the last tick, else from the store.
func (l *Loop) nodeOf(ctx context.Context, vmid int) (string, error) {
	l.mu.Lock()
	e := l.vms[vmid]
	l.mu.Unlock()
	if e != nil {
		return e.lease.Node, nil
	}
	s, err := l.store.Lease(ctx, vmid)
	if err != nil {
		return "", err
	}
	if !s.State.Present() {
		return "", fmt.Errorf("vm %d is %s: %w", vmid, s.State, reaper.ErrNotFound)
	}
	return s.Node, nil
}

type extension struct {
	kind      reaper.EventKind
	actor     string
	heartbeat bool
	ttl       func(lease.Metadata) time.Duration
	authorize func(lease.Metadata) error // nil: no token to check
	contact   func(pve.VMConfig)         // nil, or told the config once authorize accepted the token
}

// extend is the read-modify-write of a renewal: read the config, check it,
// write the new expiry to the metadata block and the expiry tag in one
// update guarded by the config digest, retrying when another writer got in
// between. The VM's lock keeps the loop's own destroy out meanwhile.
func (l *Loop) extend(ctx context.Context, ref pve.VMRef, x extension) (reaper.Renewal, error) {
	unlock := l.locks.lock(ref.VMID)
	defer unlock()
	for attempt := 1; ; attempt++ {
		r, cfg, err := l.extendOnce(ctx, ref, x)
		if pve.IsDigestMismatch(err) && attempt < maxDigestRetries {
			continue
		}
		if err != nil && !errors.Is(err, lease.ErrPastMaxTTL) {
			l.rejected(ctx, ref, x, err)
			return reaper.Renewal{}, err
		}
		l.renewed(ctx, ref, x, r, cfg, err)
		return r, err
	}
}

func (l *Loop) extendOnce(ctx context.Context, ref pve.VMRef, x extension) (reaper.Renewal, pve.VMConfig, error) {
	cfg, err := l.pve.Config(ctx, ref)
	if pve.IsNotFound(err) {
		return reaper.Renewal{}, cfg, fmt.Errorf("vm %d: %w", ref.VMID, reaper.ErrNotFound)
	}
	if err != nil {
		return reaper.Renewal{}, cfg, fmt.Errorf("read config of vm %d: %w", ref.VMID, err)
	}
	tags := lease.ParseTags(cfg.Value("tags"))
	if !lease.Owned(tags) || cfg.Template() {
		return reaper.Renewal{}, cfg, fmt.Errorf("vm %d has no agentlab tag: %w", ref.VMID, reaper.ErrProtected)
	}
	meta, err := lease.Decode(cfg.Description())
	if err != nil {
		if x.authorize != nil {
			return reaper.Renewal{}, cfg, reaper.ErrUnauthorized // no trusted metadata, no trusted token
		}
		return reaper.Renewal{}, cfg, fmt.Errorf("vm %d: %w: %w; fix the metadata block by hand", ref.VMID, reaper.ErrConflict, err)
	}
	if x.authorize != nil {
		if err := x.authorize(meta); err != nil {
			return reaper.Renewal{}, cfg, err
		}
		if x.contact != nil {
			x.contact(cfg)
		}
	}
	if tagExp, err := lease.ExpiryFromTags(tags); err != nil || !tagExp.Equal(meta.ExpiresAt) {
		return reaper.Renewal{}, cfg, fmt.Errorf("vm %d: %w: the expiry tag disagrees with the metadata (expires_at %s); the reaper does not touch it",
			ref.VMID, reaper.ErrConflict, stamp(meta.ExpiresAt))
	}
	l.mu.Lock()
	destroying := false
	if e := l.vms[ref.VMID]; e != nil {
		destroying = e.inFlight || e.lease.State == reaper.StateDestroying
	}
	l.mu.Unlock()
	if destroying {
		return reaper.Renewal{}, cfg, fmt.Errorf("vm %d: %w: the reaper is destroying it", ref.VMID, reaper.ErrConflict)
	}
	now := l.clock.Now()
	if x.heartbeat && meta.Expired(now, l.opts.Grace) {
		return reaper.Renewal{}, cfg, fmt.Errorf("vm %d: %w: lease expired at %s; heartbeats cannot revive it, renew it through the control API",
			ref.VMID, reaper.ErrConflict, stamp(meta.ExpiresAt))
	}

	ttl := x.ttl(meta)
	renewed, rerr := meta.Lease.Renew(now, ttl)
	if rerr != nil && !errors.Is(rerr, lease.ErrPastMaxTTL) {
		return reaper.Renewal{}, cfg, fmt.Errorf("vm %d: %w", ref.VMID, rerr)
	}
	if capAt, ok := reaper.PolicyExpiry(renewed.CreatedAt, renewed.ExpiresAt, l.opts.MaxLease); ok {
		// The operator's ceiling, whatever the metadata's max_ttl allows.
		renewed.ExpiresAt = capAt
		rerr = &reaper.PolicyCapError{MaxLease: l.opts.MaxLease, Cap: capAt}
	}
	if x.heartbeat {
		renewed.TTL = meta.TTL
	}
	r := reaper.Renewal{Previous: meta.ExpiresAt, Capped: rerr != nil, DryRun: l.opts.DryRun}
	var policyCap *reaper.PolicyCapError
	switch {
	case errors.As(rerr, &policyCap):
		r.CappedBy = "policy.max_lease"
	case rerr != nil:
		r.CappedBy = "max_ttl"
	}
	next := meta
	next.Lease = renewed
	if x.heartbeat && !renewed.ExpiresAt.After(meta.ExpiresAt) {
		next = meta // a heartbeat never shortens a lease
	}
	if x.heartbeat {
		// The guest has the token its boot report was handed: the seed's
		// may not ask for another any more.
		next.BootTokenSHA256 = ""
	}
	if (next.Lease == meta.Lease && next.BootTokenSHA256 == meta.BootTokenSHA256) || l.opts.DryRun {
		r.Lease = l.leaseView(ref, cfg, next, tags)
		return r, cfg, rerr
	}
	desc, err := lease.Encode(cfg.Description(), next)
	if err != nil {
		return reaper.Renewal{}, cfg, fmt.Errorf("vm %d: %w", ref.VMID, err)
	}
	newTags := lease.WithExpiry(tags, next.ExpiresAt)
	set := map[string]string{"description": desc, "tags": newTags}
	if err := l.pve.UpdateConfig(ctx, ref, pve.ConfigUpdate{Set: set, Digest: cfg.Digest()}); err != nil {
		return reaper.Renewal{}, cfg, fmt.Errorf("write the new expiry of vm %d: %w", ref.VMID, err)
	}
	written := withSet(cfg, set)
	r.Lease = l.leaseView(ref, written, next, lease.ParseTags(newTags))
	return r, written, rerr
}

// leaseView returns the lease as the loop shows it after a renewal.
func (l *Loop) leaseView(ref pve.VMRef, cfg pve.VMConfig, m lease.Metadata, tags []string) reaper.Lease {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out reaper.Lease
	if e := l.vms[ref.VMID]; e != nil {
		out = e.lease
	} else {
		out = reaper.Lease{VMID: ref.VMID, Node: ref.Node, Name: cfg.Name(), State: reaper.StateActive}
	}
	out.Tags = tags
	out.CreatedAt, out.ExpiresAt, out.MaxExpiresAt = m.CreatedAt, m.ExpiresAt, m.MaxExpiry()
	out.TTL, out.OnExpiry = m.TTL, string(m.OnExpiry)
	out.Owner, out.Profile, out.JobID, out.Workspace = m.Owner, m.Profile, m.JobID, m.Workspace
	out.TokenSHA256, out.BootTokenSHA256 = m.HeartbeatTokenSHA256, m.BootTokenSHA256
	out.PolicyExpiresAt = time.Time{}
	if capAt, ok := reaper.PolicyExpiry(m.CreatedAt, m.ExpiresAt, l.opts.MaxLease); ok {
		out.PolicyExpiresAt = capAt
		m.ExpiresAt = capAt
	}
	switch out.State {
	case reaper.StateActive, reaper.StateExpiring, reaper.StateExpired, reaper.StateStopped:
		now := l.clock.Now()
		switch {
		case m.Expired(now, 0) && out.State == reaper.StateStopped:
		case m.Expired(now, 0):
			out.State = reaper.StateExpired
		case m.WarnDue(now, l.opts.WarnBefore):
			out.State = reaper.StateExpiring
		default:
			out.State = reaper.StateActive
		}
	}
	return out
}

// renewed records a renewal (capped or not) and updates the loop's memory
// with the config as written, so the next tick needs no read.
func (l *Loop) renewed(ctx context.Context, ref pve.VMRef, x extension, r reaper.Renewal, cfg pve.VMConfig, capErr error) {
	now := l.clock.Now()
	reason := fmt.Sprintf("lease extended from %s to %s", stamp(r.Previous), stamp(r.Lease.ExpiresAt))
	if r.Lease.ExpiresAt.Equal(r.Previous) {
		reason = fmt.Sprintf("lease unchanged, expires at %s", stamp(r.Previous))
	}
	if capErr != nil {
		reason += "; " + capErr.Error()
	}
	if r.DryRun {
		reason = "dry run: not written; " + reason
	}
	ev := reaper.Event{Time: now, VMID: ref.VMID, Node: ref.Node, Kind: x.kind, Decision: reaper.DecisionDone,
		Reason: reason, Actor: x.actor, DryRun: r.DryRun}
	saved := r.Lease
	if !r.DryRun {
		if remembered, ok := l.rememberWritten(ref.VMID, cfg, now); ok {
			saved = remembered
		}
	}
	if saved.FirstSeen.IsZero() {
		saved.FirstSeen = now
	}
	if saved.LastSeen.IsZero() {
		saved.LastSeen = now
	}
	var leases []reaper.Lease
	if !r.DryRun {
		leases = append(leases, saved)
	}
	if err := l.store.Record(ctx, leases, []reaper.Event{ev}); err != nil {
		l.log.Error("cannot record renewal", "vmid", ref.VMID, "err", err)
	}
	level := "lease renewed"
	if x.kind == reaper.KindHeartbeat {
		level = "heartbeat"
	}
	l.log.Info(level, "vmid", ref.VMID, "node", ref.Node, "actor", x.actor, "expires_at", stamp(r.Lease.ExpiresAt),
		"capped", r.Capped, "dry_run", r.DryRun)
}

// rejected logs a refused renewal and records it, when it concerns a
// sandbox: a refused heartbeat too (a sandbox retrying every minute costs
// one row, whose count grows: identical events are stored once). A heartbeat
// whose token matches nothing is only logged.
func (l *Loop) rejected(ctx context.Context, ref pve.VMRef, x extension, err error) {
	l.log.Warn("renewal refused", "vmid", ref.VMID, "actor", x.actor, "kind", x.kind, "err", err)
	if errors.Is(err, reaper.ErrNotFound) || errors.Is(err, reaper.ErrUnauthorized) ||
		!(errors.Is(err, reaper.ErrConflict) || errors.Is(err, reaper.ErrProtected) || errors.Is(err, lease.ErrInvalid)) {
		return
	}
	ev := reaper.Event{Time: l.clock.Now(), VMID: ref.VMID, Node: ref.Node, Kind: x.kind, Decision: reaper.DecisionRejected,
		Reason: err.Error(), Actor: x.actor, DryRun: l.opts.DryRun}
	if rerr := l.store.Record(ctx, nil, []reaper.Event{ev}); rerr != nil {
		l.log.Error("cannot record refused renewal", "vmid", ref.VMID, "err", rerr)
	}
}
