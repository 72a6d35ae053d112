package lease

import (
	"errors"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

func TestValidateTTL(t *testing.T) {
	tests := []struct {
		name      string
		ttl, max  time.Duration
		wantField string // "" means valid
	}{
		{"ttl only", time.Hour, 0, ""},
		{"ttl equals max", time.Hour, time.Hour, ""},
		{"ttl below max", time.Hour, 8 * time.Hour, ""},
		{"zero ttl", 0, 0, "ttl"},
		{"negative ttl", -time.Minute, 0, "ttl"},
		{"negative max", time.Hour, -time.Hour, "max_ttl"},
		{"ttl above max", 2 * time.Hour, time.Hour, "ttl"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateTTL(tt.ttl, tt.max)
			if tt.wantField == "" {
				if err != nil {
					t.Fatalf("ValidateTTL(%s, %s) = %v; want nil", tt.ttl, tt.max, err)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("ValidateTTL(%s, %s) = %v; want ErrInvalid", tt.ttl, tt.max, err)
			}
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != tt.wantField {
				t.Errorf("got error %#v; want a *FieldError for %q", err, tt.wantField)
			}
		})
	}
}

func TestNew(t *testing.T) {
	now := t0.Add(700 * time.Millisecond).In(time.FixedZone("CEST", 2*3600))
	l, err := New(now, 2*time.Hour, 8*time.Hour, "")
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	want := Lease{CreatedAt: t0, ExpiresAt: t0.Add(2 * time.Hour), TTL: 2 * time.Hour, MaxTTL: 8 * time.Hour, OnExpiry: Destroy}
	if l != want {
		t.Errorf("got %+v; want %+v", l, want)
	}
	if got := l.MaxExpiry(); !got.Equal(t0.Add(8 * time.Hour)) {
		t.Errorf("MaxExpiry() = %s; want %s", got, t0.Add(8*time.Hour))
	}
	if _, err := New(now, time.Hour, 0, "pause"); err == nil || !strings.HasPrefix(err.Error(), "on_expiry:") {
		t.Errorf("New with on_expiry pause: got %v; want an on_expiry error", err)
	}
	if _, err := New(now, 3*time.Hour, time.Hour, Stop); err == nil || !strings.Contains(err.Error(), "max_ttl") {
		t.Errorf("New with ttl > max_ttl: got %v; want an error naming max_ttl", err)
	}
	if got := (Lease{}).MaxExpiry(); !got.IsZero() {
		t.Errorf("MaxExpiry without cap = %s; want zero", got)
	}
}

func TestRenew(t *testing.T) {
	base, err := New(t0, 2*time.Hour, 8*time.Hour, Stop)
	if err != nil {
		t.Fatal(err)
	}
	uncapped, err := New(t0, 2*time.Hour, 0, Destroy)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		lease      Lease
		at         time.Duration // after t0
		ttl        time.Duration
		wantExpiry time.Duration // after t0
		wantErr    error
	}{
		{"extend", base, time.Hour, 2 * time.Hour, 3 * time.Hour, nil},
		{"shorten", base, time.Hour, 30 * time.Minute, 90 * time.Minute, nil},
		{"exactly to cap", base, 6 * time.Hour, 2 * time.Hour, 8 * time.Hour, nil},
		{"past cap", base, 7 * time.Hour, 2 * time.Hour, 8 * time.Hour, ErrPastMaxTTL},
		{"after cap reached", base, 9 * time.Hour, time.Hour, 8 * time.Hour, ErrPastMaxTTL},
		{"no cap", uncapped, 100 * time.Hour, 2 * time.Hour, 102 * time.Hour, nil},
		{"ttl above max_ttl", base, time.Hour, 9 * time.Hour, 2 * time.Hour, ErrInvalid},
		{"zero ttl", base, time.Hour, 0, 2 * time.Hour, ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.lease.Renew(t0.Add(tt.at), tt.ttl)
			if tt.wantErr == nil && err != nil {
				t.Fatalf("Renew: %v", err)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("Renew error = %v; want %v", err, tt.wantErr)
			}
			if want := t0.Add(tt.wantExpiry); !got.ExpiresAt.Equal(want) {
				t.Errorf("ExpiresAt = %s; want %s", got.ExpiresAt, want)
			}
			if !got.CreatedAt.Equal(tt.lease.CreatedAt) || got.MaxTTL != tt.lease.MaxTTL || got.OnExpiry != tt.lease.OnExpiry {
				t.Errorf("Renew changed fixed fields: got %+v from %+v", got, tt.lease)
			}
		})
	}
}

func TestPastMaxTTLErrorText(t *testing.T) {
	base, err := New(t0, 2*time.Hour, 8*time.Hour, Destroy)
	if err != nil {
		t.Fatal(err)
	}
	_, err = base.Renew(t0.Add(7*time.Hour), 2*time.Hour)
	var pe *PastMaxTTLError
	if !errors.As(err, &pe) {
		t.Fatalf("got %T %v; want *PastMaxTTLError", err, err)
	}
	if pe.MaxRenewal() != time.Hour {
		t.Errorf("MaxRenewal() = %s; want 1h0m0s", pe.MaxRenewal())
	}
	for _, want := range []string{"max_ttl 8h0m0s", "2026-05-01T20:00:00Z", "lower ttl to at most 1h0m0s", "raise max_ttl"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
	_, err = base.Renew(t0.Add(9*time.Hour), time.Hour)
	if !strings.Contains(err.Error(), "reached max_ttl") {
		t.Errorf("error after the cap %q; want it to say the lease reached max_ttl", err)
	}
}

func TestExpiredAndWarnDue(t *testing.T) {
	l := Lease{CreatedAt: t0, ExpiresAt: t0.Add(time.Hour), TTL: time.Hour, OnExpiry: Destroy}
	tests := []struct {
		name        string
		at          time.Duration
		grace, warn time.Duration
		wantExpired bool
		wantWarn    bool
	}{
		{"early", 0, 0, 5 * time.Minute, false, false},
		{"in warning window", 56 * time.Minute, 0, 5 * time.Minute, false, true},
		{"warning window start", 55 * time.Minute, 0, 5 * time.Minute, false, true},
		{"just before", 55*time.Minute - time.Second, 0, 5 * time.Minute, false, false},
		{"at expiry", time.Hour, 0, 5 * time.Minute, true, false},
		{"in grace", time.Hour + time.Minute, 2 * time.Minute, 5 * time.Minute, false, false},
		{"grace over", time.Hour + 2*time.Minute, 2 * time.Minute, 5 * time.Minute, true, false},
		{"warnings off", 59 * time.Minute, 0, 0, false, false},
		{"negative grace is zero", time.Hour, -time.Hour, 0, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := t0.Add(tt.at)
			if got := l.Expired(now, tt.grace); got != tt.wantExpired {
				t.Errorf("Expired(+%s, %s) = %v; want %v", tt.at, tt.grace, got, tt.wantExpired)
			}
			if got := l.WarnDue(now, tt.warn); got != tt.wantWarn {
				t.Errorf("WarnDue(+%s, %s) = %v; want %v", tt.at, tt.warn, got, tt.wantWarn)
			}
		})
	}
	var zero Lease
	if zero.Expired(t0.Add(1000*time.Hour), 0) || zero.WarnDue(t0, time.Hour) {
		t.Errorf("a zero lease expired or warned; want neither (fail closed)")
	}
	if got := l.Remaining(t0.Add(45 * time.Minute)); got != 15*time.Minute {
		t.Errorf("Remaining = %s; want 15m0s", got)
	}
}

func TestParseAction(t *testing.T) {
	for in, want := range map[string]Action{"": Destroy, "destroy": Destroy, "stop": Stop} {
		if got, err := ParseAction(in); err != nil || got != want {
			t.Errorf("ParseAction(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := ParseAction("Stop"); !errors.Is(err, ErrInvalid) {
		t.Errorf("ParseAction(\"Stop\") error = %v; want ErrInvalid", err)
	}
}
