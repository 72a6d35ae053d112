// Package lease is the contract a sandbox carries in its own Proxmox VE
// config: a metadata block in the VM's description, tags that mark ownership
// and mirror the lease expiry, and the lease arithmetic (TTL, renewal capped by
// a maximum TTL, expiry and warning windows).
//
// The provider writes this contract when it creates or renews a sandbox; the
// reaper reads it back from PVE and acts on it. Nothing here talks to PVE or
// Terraform, and no function reads the wall clock: every time-dependent
// function takes now as an argument.
package lease

import (
	"errors"
	"fmt"
	"time"
)

// Action is what the reaper does to a sandbox whose lease has expired.
type Action string

const (
	// Destroy removes the VM and the volumes it owns.
	Destroy Action = "destroy"
	// Stop powers the VM off and keeps it.
	Stop Action = "stop"
)

// ErrInvalid marks a lease setting that can never be valid, such as a
// negative TTL. The message names the field.
var ErrInvalid = errors.New("invalid lease")

// FieldError is an invalid lease setting: Field names it as the metadata
// block and the provider's attributes spell it ("ttl", "max_ttl",
// "on_expiry", "expires_at"), Reason says what is wrong and, where it can,
// how to fix it. errors.Is(err, ErrInvalid) is true for it.
type FieldError struct {
	Field  string
	Reason string
}

// Error implements error: "<field>: invalid lease: <reason>".
func (e *FieldError) Error() string { return e.Field + ": " + ErrInvalid.Error() + ": " + e.Reason }

// Is makes errors.Is(err, ErrInvalid) true.
func (e *FieldError) Is(target error) bool { return target == ErrInvalid }

// invalid returns a *FieldError for field.
func invalid(field, format string, args ...any) error {
	return &FieldError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// ErrPastMaxTTL marks a renewal that would end the lease after its max_ttl cap.
// The concrete error is a *PastMaxTTLError.
var ErrPastMaxTTL = errors.New("lease would pass max_ttl")

// ParseAction returns the Action named s ("destroy" or "stop"). The empty
// string means Destroy, the default.
func ParseAction(s string) (Action, error) {
	switch Action(s) {
	case "", Destroy:
		return Destroy, nil
	case Stop:
		return Stop, nil
	}
	return "", invalid("on_expiry", "%q is neither %q nor %q", s, Destroy, Stop)
}

// Lease is the life span of one sandbox. All times are UTC with whole
// seconds, the precision of the metadata and the expiry tag.
type Lease struct {
	// CreatedAt is when the sandbox was created; max_ttl counts from here.
	CreatedAt time.Time
	// ExpiresAt is when the reaper may act (after its grace period).
	ExpiresAt time.Time
	// TTL is the duration the last creation or renewal asked for.
	TTL time.Duration
	// MaxTTL caps ExpiresAt at CreatedAt+MaxTTL; zero means no cap.
	MaxTTL time.Duration
	// OnExpiry is what the reaper does once the lease has expired.
	OnExpiry Action
}

// ValidateTTL checks ttl and maxTTL as a user wrote them: ttl must be
// positive, maxTTL must be zero (no cap) or positive, and ttl must not exceed
// a non-zero maxTTL. Errors name the offending field and wrap ErrInvalid.
func ValidateTTL(ttl, maxTTL time.Duration) error {
	if ttl <= 0 {
		return invalid("ttl", "must be positive, got %s", ttl)
	}
	if maxTTL < 0 {
		return invalid("max_ttl", "must be positive (or unset for no cap), got %s", maxTTL)
	}
	if maxTTL > 0 && ttl > maxTTL {
		return invalid("ttl", "%s exceeds max_ttl %s; lower ttl or raise max_ttl", ttl, maxTTL)
	}
	return nil
}

// New starts a lease at now lasting ttl, capped by maxTTL (zero for no cap).
// An empty onExpiry means Destroy.
func New(now time.Time, ttl, maxTTL time.Duration, onExpiry Action) (Lease, error) {
	if err := ValidateTTL(ttl, maxTTL); err != nil {
		return Lease{}, err
	}
	action, err := ParseAction(string(onExpiry))
	if err != nil {
		return Lease{}, err
	}
	created := seconds(now)
	return Lease{
		CreatedAt: created,
		ExpiresAt: seconds(created.Add(ttl)),
		TTL:       ttl,
		MaxTTL:    maxTTL,
		OnExpiry:  action,
	}, nil
}

// MaxExpiry is the latest time the lease can ever reach,
// CreatedAt+MaxTTL, or the zero time when there is no cap.
func (l Lease) MaxExpiry() time.Time {
	if l.MaxTTL <= 0 {
		return time.Time{}
	}
	return seconds(l.CreatedAt.Add(l.MaxTTL))
}

// Renew computes the lease renewed at now for ttl: ExpiresAt becomes now+ttl,
// but never later than MaxExpiry.
//
// When now+ttl would pass the cap, Renew returns the lease capped at
// MaxExpiry together with a *PastMaxTTLError (errors.Is ErrPastMaxTTL) that
// says the cap and how to fix the request. A caller that must honour the
// request exactly treats the error as fatal; one that prefers to clamp (as
// Vault does) may use the returned lease and show the error as a warning.
// Any other error comes with the unchanged lease.
func (l Lease) Renew(now time.Time, ttl time.Duration) (Lease, error) {
	if err := ValidateTTL(ttl, l.MaxTTL); err != nil {
		return l, err
	}
	renewed := l
	renewed.TTL = ttl
	renewed.ExpiresAt = seconds(seconds(now).Add(ttl))
	if limit := l.MaxExpiry(); !limit.IsZero() && renewed.ExpiresAt.After(limit) {
		requested := renewed.ExpiresAt
		renewed.ExpiresAt = limit
		return renewed, &PastMaxTTLError{
			Now:       seconds(now),
			TTL:       ttl,
			MaxTTL:    l.MaxTTL,
			Requested: requested,
			Limit:     limit,
		}
	}
	return renewed, nil
}

// Validate checks that the lease is internally consistent: both times set,
// a valid TTL and action, ExpiresAt not before CreatedAt and not after
// MaxExpiry. Decode applies it to every metadata block it reads.
func (l Lease) Validate() error {
	if l.CreatedAt.IsZero() {
		return invalid("created_at", "missing")
	}
	if l.ExpiresAt.IsZero() {
		return invalid("expires_at", "missing")
	}
	if err := ValidateTTL(l.TTL, l.MaxTTL); err != nil {
		return err
	}
	if l.OnExpiry != Destroy && l.OnExpiry != Stop {
		return invalid("on_expiry", "%q is neither %q nor %q", l.OnExpiry, Destroy, Stop)
	}
	if l.ExpiresAt.Before(l.CreatedAt) {
		return invalid("expires_at", "%s is before created_at %s", stamp(l.ExpiresAt), stamp(l.CreatedAt))
	}
	if limit := l.MaxExpiry(); !limit.IsZero() && l.ExpiresAt.After(limit) {
		return invalid("expires_at", "%s is past created_at + max_ttl (%s)", stamp(l.ExpiresAt), stamp(limit))
	}
	return nil
}

// Remaining is the time left until ExpiresAt; negative once it has passed.
func (l Lease) Remaining(now time.Time) time.Duration {
	return l.ExpiresAt.Sub(now)
}

// Expired reports whether the lease has run out at now, allowing grace after
// ExpiresAt. A lease without an expiry time never expires: a caller that
// could not read the lease must not act on it (fail closed).
func (l Lease) Expired(now time.Time, grace time.Duration) bool {
	if l.ExpiresAt.IsZero() {
		return false
	}
	if grace < 0 {
		grace = 0
	}
	return !now.Before(l.ExpiresAt.Add(grace))
}

// WarnDue reports whether now falls in the warning window: at most
// warnBefore before ExpiresAt and not yet expired. A non-positive warnBefore
// disables warnings.
func (l Lease) WarnDue(now time.Time, warnBefore time.Duration) bool {
	if warnBefore <= 0 || l.ExpiresAt.IsZero() || l.Expired(now, 0) {
		return false
	}
	return !now.Before(l.ExpiresAt.Add(-warnBefore))
}

// PastMaxTTLError is returned by Renew when now+TTL would pass the max_ttl cap.
type PastMaxTTLError struct {
	// Now is the renewal time.
	Now time.Time
	// TTL is the requested ttl.
	TTL time.Duration
	// MaxTTL is the lease's cap, counted from creation.
	MaxTTL time.Duration
	// Requested is Now+TTL, the expiry that was asked for.
	Requested time.Time
	// Limit is CreatedAt+MaxTTL, the latest possible expiry.
	Limit time.Time
}

// MaxRenewal is the longest ttl that a renewal at Now could still ask for.
func (e *PastMaxTTLError) MaxRenewal() time.Duration {
	if d := e.Limit.Sub(e.Now); d > 0 {
		return d
	}
	return 0
}

// Error says the cap and how to fix the request.
func (e *PastMaxTTLError) Error() string {
	fix := fmt.Sprintf("lower ttl to at most %s or raise max_ttl", e.MaxRenewal())
	if e.MaxRenewal() == 0 {
		fix = "the lease has reached max_ttl: raise max_ttl to keep the sandbox longer"
	}
	return fmt.Sprintf("ttl %s would end the lease at %s, past max_ttl %s from creation (%s); %s",
		e.TTL, stamp(e.Requested), e.MaxTTL, stamp(e.Limit), fix)
}

// Is makes errors.Is(err, ErrPastMaxTTL) true.
func (e *PastMaxTTLError) Is(target error) bool { return target == ErrPastMaxTTL }

// seconds returns t in UTC, truncated to whole seconds.
func seconds(t time.Time) time.Time { return t.UTC().Truncate(time.Second) }

// stamp formats t as RFC 3339 in UTC.
func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }
