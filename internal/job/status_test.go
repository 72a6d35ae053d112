package job

import (
	"errors"
	"testing"
)

func TestCanTransition(t *testing.T) {
	tests := []struct {
		from, to Status
		want     bool
	}{
		{StatusRequested, StatusProvisioning, true},
		{StatusRequested, StatusRunning, true},
		{StatusProvisioning, StatusBooting, true},
		{StatusBooting, StatusBooting, true},
		{StatusBooting, StatusProvisioning, false},
		{StatusRunning, StatusBooting, false},
		{StatusRunning, StatusSucceeded, true},
		{StatusRequested, StatusFailed, true},
		{StatusBooting, StatusLost, true},
		{StatusRunning, StatusTimedOut, true},
		{StatusSucceeded, StatusFailed, false},
		{StatusLost, StatusRunning, false},
		{StatusFailed, StatusFailed, false},
		{Status("pending"), StatusRunning, false},
		{StatusRunning, Status("done"), false},
	}
	for _, tt := range tests {
		if got := CanTransition(tt.from, tt.to); got != tt.want {
			t.Errorf("CanTransition(%s, %s) = %v; want %v", tt.from, tt.to, got, tt.want)
		}
		err := Transition(tt.from, tt.to)
		if (err == nil) != tt.want || (err != nil && !errors.Is(err, ErrTransition)) {
			t.Errorf("Transition(%s, %s) = %v; want allowed %v", tt.from, tt.to, err, tt.want)
		}
	}
}

func TestEnded(t *testing.T) {
	ended := map[Status]bool{StatusSucceeded: true, StatusFailed: true, StatusTimedOut: true, StatusLost: true}
	for _, s := range Statuses() {
		if got := s.Ended(); got != ended[s] {
			t.Errorf("%s.Ended() = %v; want %v", s, got, ended[s])
		}
	}
}

func TestIDs(t *testing.T) {
	a, b := NewID(), NewID()
	if a == b || !ValidID(a) || !ValidID(b) {
		t.Fatalf("NewID gave %q and %q; want two different valid IDs", a, b)
	}
	for _, bad := range []string{"", "job-", "job-0123456789abcdeF", "job-0123456789abcde", "jab-0123456789abcdef", "job-0123456789abcdef0", "../etc/passwd"} {
		if ValidID(bad) {
			t.Errorf("ValidID(%q) = true; want false", bad)
		}
	}
	if tok := NewToken(); len(tok) != 64 {
		t.Errorf("NewToken() has %d characters; want 64", len(tok))
	}
}
