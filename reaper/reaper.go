// Package reaper holds the domain types of agentlab-reaper, the daemon that
// destroys (or stops) AgentLab sandboxes whose lease has expired, accepts
// heartbeats from inside sandboxes and keeps an audit log of every decision.
//
// The VM's own Proxmox config is the source of truth for a lease; what this
// package describes is the reaper's view of it, as last seen. The components
// live in sub-packages: config (the YAML file), sqlite (the store), reconcile
// (the loop, renewals and heartbeats), jobs (the job registry and its
// watchdog), api (the control API and its client), guest (the listener
// sandboxes reach) and metrics (Prometheus).
package reaper

import (
	"errors"
	"fmt"
	"time"

	"github.com/agentlab/terraform-provider-agentlab/internal/lease"
)

// State is where a sandbox stands, as the reaper last saw it.
type State string

// The states of a sandbox.
const (
	// StateActive is a valid lease that has not expired.
	StateActive State = "active"
	// StateExpiring is a valid lease within warn_before of its expiry.
	StateExpiring State = "expiring"
	// StateExpired is a lease past its expiry, waiting for grace to pass (or,
	// in dry-run, for nothing), or whose action failed and will be retried.
	StateExpired State = "expired"
	// StateDestroying is a sandbox the reaper has decided to destroy or stop;
	// the intent is recorded and the action is under way.
	StateDestroying State = "destroying"
	// StateStopped is an expired sandbox with on_expiry "stop", stopped.
	StateStopped State = "stopped"
	// StateProtected is a sandbox the reaper never touches: tagged
	// agentlab-keep, or a template.
	StateProtected State = "protected"
	// StateInvalid is a sandbox the reaper refuses to touch because its
	// contract is broken: no ownership tag, missing or malformed metadata, or
	// an expiry tag that disagrees with the metadata (fail closed).
	StateInvalid State = "invalid"
	// StateUnknown is a sandbox whose config could not be read yet.
	StateUnknown State = "unknown"
	// StateDestroyed is a sandbox the reaper destroyed.
	StateDestroyed State = "destroyed"
	// StateGone is a sandbox that disappeared from Proxmox without the reaper.
	StateGone State = "gone"
)

// States returns every state, in display order.
func States() []State {
	return []State{StateActive, StateExpiring, StateExpired, StateDestroying, StateStopped,
		StateProtected, StateInvalid, StateUnknown, StateDestroyed, StateGone}
}

// Present reports whether a sandbox in state s still exists in Proxmox.
func (s State) Present() bool { return s != StateDestroyed && s != StateGone }

// Lease is the reaper's view of one sandbox and its lease.
type Lease struct {
	// VMID is the Proxmox VM ID.
	VMID int `json:"vmid"`
	// Node is the Proxmox node the VM is on.
	Node string `json:"node"`
	// Name is the VM name.
	Name string `json:"name"`
	// Status is the Proxmox VM status: running, stopped, ...
	Status string `json:"status"`
	// Tags are the VM tags, sorted, as Proxmox lists them.
	Tags []string `json:"tags,omitempty"`
	// State is what the reaper makes of it.
	State State `json:"state"`
	// Reason says why the sandbox is in State (for protected, invalid,
	// unknown and failed actions).
	Reason string `json:"reason,omitempty"`
	// CreatedAt, ExpiresAt and MaxExpiresAt come from the metadata block;
	// zero when unknown. MaxExpiresAt is zero when there is no cap.
	CreatedAt    time.Time `json:"created_at,omitzero"`
	ExpiresAt    time.Time `json:"expires_at,omitzero"`
	MaxExpiresAt time.Time `json:"max_expires_at,omitzero"`
	// PolicyExpiresAt is the expiry policy.max_lease imposes when it is
	// earlier than ExpiresAt (the metadata's); zero when the lease is not
	// capped by policy. The reaper acts on the earlier of the two.
	PolicyExpiresAt time.Time `json:"policy_expires_at,omitzero"`
	// TTL is the lease's TTL, by which heartbeats extend it.
	TTL time.Duration `json:"ttl,omitempty"`
	// OnExpiry is "destroy" or "stop".
	OnExpiry string `json:"on_expiry,omitempty"`
	// Owner, Profile and JobID come from the metadata block.
	Owner   string `json:"owner,omitempty"`
	Profile string `json:"profile,omitempty"`
	JobID   string `json:"job_id,omitempty"`
	// Workspace is the config key of an attached workspace disk, if any.
	Workspace string `json:"workspace,omitempty"`
	// TokenSHA256 is the hex sha256 of the sandbox's heartbeat token.
	TokenSHA256 string `json:"-"`
	// BootTokenSHA256 is the hex sha256 of the token its seed carried, while
	// that may still ask for a heartbeat token (lease.Metadata).
	BootTokenSHA256 string `json:"-"`
	// WarnedFor is the expiry a warning event was recorded for (warn once per lease).
	WarnedFor time.Time `json:"-"`
	// FirstSeen and LastSeen are when the reaper first and last saw the VM.
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
}

// MinRenewal is the shortest renewal the control API accepts without force:
// a shorter one has the sandbox reaped at the next tick, which is seldom what
// an operator means.
const MinRenewal = time.Minute

// Renewal is the result of a renewal or a heartbeat.
type Renewal struct {
	// Lease is the sandbox's lease after the renewal.
	Lease Lease `json:"lease"`
	// Previous is the expiry before the renewal.
	Previous time.Time `json:"previous_expires_at"`
	// Capped is set when max_ttl cut the renewal short: the lease now ends
	// at its cap (Lease.MaxExpiresAt) and cannot be extended further.
	Capped bool `json:"capped"`
	// CappedBy says what capped it: "max_ttl" (the VM's metadata) or
	// "policy.max_lease" (the operator's ceiling).
	CappedBy string `json:"capped_by,omitempty"`
	// DryRun is set when dry_run kept the reaper from writing the new expiry.
	DryRun bool `json:"dry_run,omitempty"`
}

// EventKind says what an event is about.
type EventKind string

// The kinds of event.
const (
	// KindObserve records a sandbox the reaper sees for the first time or
	// whose state changed (protected, invalid, unknown, ...).
	KindObserve EventKind = "observe"
	// KindWarn records a lease within warn_before of its expiry.
	KindWarn EventKind = "warn"
	// KindExpire records a lease the reaper found past its expiry.
	KindExpire EventKind = "expire"
	// KindDestroy records the destruction of a sandbox (intent, then outcome).
	KindDestroy EventKind = "destroy"
	// KindStop records the stop of a sandbox whose on_expiry is "stop".
	KindStop EventKind = "stop"
	// KindRenew records a renewal through the control API.
	KindRenew EventKind = "renew"
	// KindHeartbeat records a heartbeat from inside a sandbox.
	KindHeartbeat EventKind = "heartbeat"
	// KindGone records a sandbox that disappeared from Proxmox.
	KindGone EventKind = "gone"
	// KindKeep records `agentlab-reaper keep` (and its undo) and agentlab-keep
	// tags the reaper does not honour.
	KindKeep EventKind = "keep"
	// KindOrphan records an orphan found, pruned or left to the operator.
	KindOrphan EventKind = "orphan"
	// KindVolume records the deletion of a sandbox's seed ISO: with a reaped
	// sandbox, or at its guest's first contact (intent, then outcome).
	KindVolume EventKind = "volume"
	// KindEgress records a change of a sandbox's egress rules in the
	// nftables filter (added, changed, removed).
	KindEgress EventKind = "egress"
)

// Decision is what the reaper did or will do about an event.
type Decision string

// The decisions.
const (
	// DecisionIntent is recorded before a destructive action.
	DecisionIntent Decision = "intent"
	// DecisionDone is the successful outcome of an action.
	DecisionDone Decision = "done"
	// DecisionFailed is a failed action; it will be retried.
	DecisionFailed Decision = "failed"
	// DecisionDryRun is an action dry_run kept the reaper from taking.
	DecisionDryRun Decision = "dry-run"
	// DecisionSkip is a sandbox the reaper leaves alone, with the reason.
	DecisionSkip Decision = "skip"
	// DecisionWait is an expired lease still within its grace period.
	DecisionWait Decision = "wait"
	// DecisionTrack is a sandbox the reaper now watches.
	DecisionTrack Decision = "track"
	// DecisionRejected is a renewal or heartbeat refused, with the reason.
	DecisionRejected Decision = "rejected"
)

// Event is one entry of the audit log.
type Event struct {
	// ID orders events; it is assigned by the store.
	ID int64 `json:"id"`
	// Time is when the event happened.
	Time time.Time `json:"time"`
	// VMID is the sandbox concerned.
	VMID int `json:"vmid"`
	// Node is the sandbox's node, when known.
	Node string `json:"node,omitempty"`
	// Kind says what happened.
	Kind EventKind `json:"kind"`
	// Decision says what the reaper did about it.
	Decision Decision `json:"decision"`
	// Reason explains the decision.
	Reason string `json:"reason"`
	// Actor is who caused it: "reaper", "guest", "operator@unix", "operator@tcp".
	Actor string `json:"actor"`
	// DryRun is set when dry_run was on.
	DryRun bool `json:"dry_run,omitempty"`
	// Count is how many times this outcome happened in a row (identical
	// events of a VM are stored once); LastTime is when it last did.
	Count    int       `json:"count,omitempty"`
	LastTime time.Time `json:"last_time,omitzero"`
}

// OrphanKind says what kind of orphan a resource is.
type OrphanKind string

// The kinds of orphan.
const (
	// OrphanUntagged is a VM whose description holds AgentLab metadata but
	// which lacks the agentlab tag (a provider killed between the clone's
	// configuration and its tag): the reaper would otherwise never see it.
	OrphanUntagged OrphanKind = "untagged"
	// OrphanPlaceholder is a clone placeholder: a config holding only
	// "lock: clone", left by an interrupted clone.
	OrphanPlaceholder OrphanKind = "placeholder"
	// OrphanISO is an AgentLab seed ISO whose VM no longer exists.
	OrphanISO OrphanKind = "iso"
)

// OrphanKinds returns every kind, in display order.
func OrphanKinds() []OrphanKind {
	return []OrphanKind{OrphanUntagged, OrphanPlaceholder, OrphanISO}
}

// Orphan is a resource AgentLab made that nothing owns any more.
type Orphan struct {
	// ID is "vm/<vmid>" or "iso/<volid>".
	ID string `json:"id"`
	// Kind says what it is.
	Kind OrphanKind `json:"kind"`
	// VMID is the VM, or the VM a seed ISO was made for.
	VMID int `json:"vmid"`
	// Node is where it is.
	Node string `json:"node,omitempty"`
	// Volid is a seed ISO's volume.
	Volid string `json:"volid,omitempty"`
	// Reason says why it is an orphan.
	Reason string `json:"reason"`
	// Action says what prune does about it, or the command an operator runs.
	Action string `json:"action"`
	// FirstSeen and LastSeen are when the reaper first and last found it.
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
}

// Actors of events.
const (
	// ActorReaper is the reconcile loop.
	ActorReaper = "reaper"
	// ActorGuest is a sandbox sending a heartbeat.
	ActorGuest = "guest"
)

// EventFilter selects events; zero fields match everything.
type EventFilter struct {
	// VMID keeps the events of one sandbox.
	VMID int
	// Since keeps events at or after this time.
	Since time.Time
	// Limit keeps the latest Limit events (0: DefaultEventLimit).
	Limit int
}

// DefaultEventLimit is the number of events returned when a filter sets none.
const DefaultEventLimit = 100

// Errors the components share.
var (
	// ErrNotFound is a sandbox the reaper does not know or that no longer exists.
	ErrNotFound = errors.New("sandbox not found")
	// ErrUnauthorized is a heartbeat or request whose token matches nothing.
	ErrUnauthorized = errors.New("unauthorized")
	// ErrConflict is a renewal refused because of the lease's state, such as
	// an expired lease or one the reaper is destroying.
	ErrConflict = errors.New("conflict")
	// ErrProtected is a renewal of a sandbox the reaper refuses to touch.
	ErrProtected = errors.New("sandbox is not managed by the reaper")
)

// VolumeDeletion is a sandbox's seed ISO to delete, recorded before the
// action that makes it garbage: before a reaped sandbox's destroy (deleted
// once the VM is gone) or, with Retire, at its guest's first contact
// (ejected from the living VM and deleted at once).
type VolumeDeletion struct {
	// Volid is the volume, e.g. "local:iso/agentlab-101-cidata.iso".
	Volid string
	// Node is where it is.
	Node string
	// VMID is the VM it belonged to.
	VMID int
	// Since is when the deletion was decided.
	Since time.Time
	// Retire is set when the guest has booted: the ISO is ejected from the
	// VM's CD-ROM and deleted while the VM lives on, not when it is gone.
	Retire bool
}

// PolicyCapError is a renewal or heartbeat that policy.max_lease cut short:
// the lease now ends at Cap, MaxLease after its creation. It matches
// lease.ErrPastMaxTTL with errors.Is, as the cap a VM's own max_ttl sets does.
type PolicyCapError struct {
	// MaxLease is the operator's ceiling.
	MaxLease time.Duration
	// Cap is when the lease ends.
	Cap time.Time
}

// Error says where the lease ends and why.
func (e *PolicyCapError) Error() string {
	return fmt.Sprintf("capped by policy.max_lease (%s from creation): the lease ends at %s; only the operator can raise the ceiling",
		e.MaxLease, e.Cap.UTC().Format(time.RFC3339))
}

// Is makes errors.Is(err, lease.ErrPastMaxTTL) true.
func (e *PolicyCapError) Is(target error) bool { return target == lease.ErrPastMaxTTL }

// PolicyExpiry returns the expiry policy.max_lease imposes on a lease created
// at created and expiring at expires, and whether it is earlier than
// expires. maxLease <= 0 imposes nothing.
func PolicyExpiry(created, expires time.Time, maxLease time.Duration) (time.Time, bool) {
	if maxLease <= 0 || created.IsZero() {
		return time.Time{}, false
	}
	limit := created.Add(maxLease)
	return limit, limit.Before(expires)
}
