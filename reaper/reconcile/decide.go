package reconcile

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/agentlab/terraform-provider-agentlab/internal/lease"
	"github.com/agentlab/terraform-provider-agentlab/reaper"
)

// action is what the loop must do to a sandbox.
type action int

const (
	actNone action = iota
	actDestroy
	actStop
)

func (a action) kind() reaper.EventKind {
	if a == actStop {
		return reaper.KindStop
	}
	return reaper.KindDestroy
}

func (a action) verb() string {
	if a == actStop {
		return "stop"
	}
	return "destroy"
}

// facts is what the loop knows about a VM when it decides: the resource list
// entry and, when read, the config's metadata block.
type facts struct {
	tags     []string // normalised
	template bool
	kind     string // "qemu" or "lxc"
	status   string
	lock     string
	meta     lease.Metadata
	metaErr  error // from lease.Decode, or the error reading the config
	metaRead bool  // meta/metaErr come from a read config
	// operatorKept: the operator kept the VM with agentlab-reaper keep.
	operatorKept bool
}

// verdict is the decision about one VM.
type verdict struct {
	state  reaper.State
	reason string
	act    action
}

// policy holds the settings decisions depend on.
type policy struct {
	grace      time.Duration
	warnBefore time.Duration
	maxLease   time.Duration // 0: no ceiling
	userKeep   bool          // honour agentlab-keep tags set outside Keep
}

// policy returns the loop's decision settings.
func (l *Loop) policy() policy {
	return policy{grace: l.opts.Grace, warnBefore: l.opts.WarnBefore, maxLease: l.opts.MaxLease, userKeep: l.opts.UserKeep}
}

// keepIgnored is appended to the reason of a sandbox whose agentlab-keep tag
// the reaper does not honour.
const keepIgnored = "; agentlab-keep tag ignored: it was not set with agentlab-reaper keep and policy.user_keep is false"

// ownedByTags reports whether a VM's tags make it the reaper's concern at
// all: any agentlab tag. VMs without one are ignored silently.
func ownedByTags(tags []string) bool {
	for _, t := range tags {
		if t == lease.TagOwned || strings.HasPrefix(t, lease.TagOwned+"-") {
			return true
		}
	}
	return false
}

// decide applies the reaper's rules, in order: never touch what is not
// plainly ours and valid (fail closed), then act on expiry. An agentlab-keep
// tag protects the VM when the operator set it (Keep) or policy.user_keep
// allows anyone to; otherwise the verdict says it was ignored.
func decide(f facts, now time.Time, p policy) verdict {
	v := decideLease(f, now, p)
	if lease.Kept(f.tags) && !p.userKeep && !f.operatorKept && v.state != reaper.StateProtected {
		v.reason += keepIgnored
	}
	return v
}

func decideLease(f facts, now time.Time, p policy) verdict {
	switch {
	case f.template:
		return verdict{state: reaper.StateProtected, reason: "VM is a template; templates are never reaped"}
	case f.kind != "" && f.kind != "qemu":
		return verdict{state: reaper.StateInvalid, reason: fmt.Sprintf("guest is a %s container, not a QEMU VM; sandboxes are VMs", f.kind)}
	case !lease.Owned(f.tags):
		return verdict{state: reaper.StateInvalid, reason: "no agentlab tag: the reaper only touches VMs tagged agentlab"}
	case lease.Kept(f.tags) && f.operatorKept:
		return verdict{state: reaper.StateProtected, reason: "tagged agentlab-keep (agentlab-reaper keep)"}
	case lease.Kept(f.tags) && p.userKeep:
		return verdict{state: reaper.StateProtected, reason: "tagged agentlab-keep"}
	case !f.metaRead:
		return verdict{state: reaper.StateUnknown, reason: "config not read yet"}
	}
	if f.metaErr != nil {
		switch {
		case errors.Is(f.metaErr, lease.ErrNoBlock):
			return verdict{state: reaper.StateInvalid, reason: "no agentlab metadata block in the description"}
		case errors.Is(f.metaErr, lease.ErrMalformed):
			return verdict{state: reaper.StateInvalid, reason: f.metaErr.Error()}
		}
		return verdict{state: reaper.StateUnknown, reason: "cannot read config: " + f.metaErr.Error()}
	}
	m := f.meta
	tagExp, err := lease.ExpiryFromTags(f.tags)
	switch {
	case errors.Is(err, lease.ErrNoExpiryTag):
		return verdict{state: reaper.StateInvalid, reason: fmt.Sprintf("no %s tag mirroring the metadata's expires_at %s", lease.ExpiryTagPrefix+"<unix seconds>", stamp(m.ExpiresAt))}
	case err != nil:
		return verdict{state: reaper.StateInvalid, reason: "expiry tag: " + err.Error()}
	case !tagExp.Equal(m.ExpiresAt):
		return verdict{state: reaper.StateInvalid, reason: fmt.Sprintf("expiry tag says %s but the metadata says %s", stamp(tagExp), stamp(m.ExpiresAt))}
	}
	if capAt, ok := reaper.PolicyExpiry(m.CreatedAt, m.ExpiresAt, p.maxLease); ok {
		v := decideExpiry(f, m.Lease, capAt, now, p)
		v.reason += fmt.Sprintf(" (capped by policy.max_lease %s; the metadata says %s)", p.maxLease, stamp(m.ExpiresAt))
		return v
	}
	return decideExpiry(f, m.Lease, m.ExpiresAt, now, p)
}

// decideExpiry decides on a valid lease l that ends at expires.
func decideExpiry(f facts, l lease.Lease, expires time.Time, now time.Time, p policy) verdict {
	m := l
	m.ExpiresAt = expires

	if m.Expired(now, p.grace) {
		act := actDestroy
		if m.OnExpiry == lease.Stop {
			act = actStop
			if f.status == "stopped" {
				return verdict{state: reaper.StateStopped, reason: fmt.Sprintf("lease expired at %s; VM stopped (on_expiry = stop)", stamp(m.ExpiresAt))}
			}
		}
		v := verdict{state: reaper.StateExpired, reason: fmt.Sprintf("lease expired at %s", stamp(m.ExpiresAt)), act: act}
		if p.grace > 0 {
			v.reason += fmt.Sprintf(" (grace %s ended)", p.grace)
		}
		if f.lock != "" {
			v.act = actNone
			v.reason += fmt.Sprintf("; VM is locked (%s), will %s once the lock is released", f.lock, act.verb())
		}
		return v
	}
	if m.Expired(now, 0) {
		return verdict{state: reaper.StateExpired, reason: fmt.Sprintf("lease expired at %s; grace until %s", stamp(m.ExpiresAt), stamp(m.ExpiresAt.Add(p.grace)))}
	}
	if m.WarnDue(now, p.warnBefore) {
		return verdict{state: reaper.StateExpiring, reason: fmt.Sprintf("lease expires at %s (warn_before %s)", stamp(m.ExpiresAt), p.warnBefore)}
	}
	return verdict{state: reaper.StateActive, reason: fmt.Sprintf("lease valid until %s", stamp(m.ExpiresAt))}
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }
