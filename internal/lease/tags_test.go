package lease

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseAndJoinTags(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"", []string{}},
		{"agentlab", []string{"agentlab"}},
		{"B;a,c d;;A", []string{"a", "b", "c", "d"}},
		{" agentlab ; Agentlab-Keep ", []string{"agentlab", "agentlab-keep"}},
	}
	for _, tt := range tests {
		got := ParseTags(tt.in)
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseTags(%q) = %q; want %q", tt.in, got, tt.want)
		}
		if joined, want := JoinTags(got), strings.Join(tt.want, ";"); joined != want {
			t.Errorf("JoinTags(%q) = %q; want %q", got, joined, want)
		}
	}
}

func TestSandboxTags(t *testing.T) {
	exp := time.Unix(1777636800, 0)
	tests := []struct {
		name    string
		user    []string
		want    string
		wantErr string
	}{
		{"no user tags", nil, "agentlab;agentlab-exp-1777636800", ""},
		{"merged and sorted", []string{"Zeta", "dev", "dev", "agentlab"}, "agentlab;agentlab-exp-1777636800;dev;zeta", ""},
		{"keep allowed", []string{"agentlab-keep"}, "agentlab;agentlab-exp-1777636800;agentlab-keep", ""},
		{"spoofed expiry", []string{"agentlab-exp-99999999999"}, "", "reserved"},
		{"spoofed expiry upper-case", []string{"AGENTLAB-EXP-1"}, "", "reserved"},
		{"separator inside a tag", []string{"a;b"}, "", "not a valid"},
		{"bad first character", []string{"-x"}, "", "not a valid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := SandboxTags(tt.user, exp)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("SandboxTags(%q) error = %v; want one containing %q", tt.user, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("SandboxTags(%q): %v", tt.user, err)
			}
			if got != tt.want {
				t.Errorf("SandboxTags(%q) = %q; want %q", tt.user, got, tt.want)
			}
			// PVE normalises tags on write; ours must already be normal.
			if again := JoinTags(ParseTags(got)); again != got {
				t.Errorf("PVE would store %q as %q", got, again)
			}
		})
	}
	_, err := SandboxTags([]string{"agentlab-exp-1"}, exp)
	if !errors.Is(err, ErrReservedTag) {
		t.Errorf("error %v; want ErrReservedTag", err)
	}
}

func TestExpiryFromTags(t *testing.T) {
	tests := []struct {
		name    string
		tags    string
		want    int64
		wantErr string
	}{
		{"present", "agentlab;agentlab-exp-1777636800;dev", 1777636800, ""},
		{"upper-case", "AGENTLAB-EXP-5", 5, ""},
		{"same value twice", "agentlab-exp-100;agentlab-exp-0100", 100, ""},
		{"missing", "agentlab;dev", 0, ErrNoExpiryTag.Error()},
		{"not a number", "agentlab-exp-soon", 0, "want agentlab-exp-<unix seconds>"},
		{"negative", "agentlab-exp--5", 0, "want agentlab-exp-<unix seconds>"},
		{"two values", "agentlab-exp-5;agentlab-exp-6", 0, "2 different"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ExpiryFromTags(ParseTags(tt.tags))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ExpiryFromTags(%q) error = %v; want one containing %q", tt.tags, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ExpiryFromTags(%q): %v", tt.tags, err)
			}
			if got.Unix() != tt.want || got.Location() != time.UTC {
				t.Errorf("ExpiryFromTags(%q) = %s; want unix %d in UTC", tt.tags, got, tt.want)
			}
		})
	}
	if _, err := ExpiryFromTags(nil); !errors.Is(err, ErrNoExpiryTag) {
		t.Errorf("ExpiryFromTags(nil) error = %v; want ErrNoExpiryTag", err)
	}
}

func TestExpiryTagRoundTrip(t *testing.T) {
	l, err := New(t0, 90*time.Minute, 0, Destroy)
	if err != nil {
		t.Fatal(err)
	}
	tags, err := SandboxTags([]string{"ci"}, l.ExpiresAt)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ExpiryFromTags(ParseTags(tags))
	if err != nil || !got.Equal(l.ExpiresAt) {
		t.Errorf("ExpiryFromTags(%q) = %s, %v; want %s", tags, got, err, l.ExpiresAt)
	}
}

func TestWithExpiryAndUserTags(t *testing.T) {
	old := ParseTags("agentlab;agentlab-exp-100;agentlab-keep;dev")
	if got, want := WithExpiry(old, time.Unix(200, 0)), "agentlab;agentlab-exp-200;agentlab-keep;dev"; got != want {
		t.Errorf("WithExpiry = %q; want %q", got, want)
	}
	if got, want := UserTags(old), []string{"agentlab-keep", "dev"}; !reflect.DeepEqual(got, want) {
		t.Errorf("UserTags = %q; want %q", got, want)
	}
	if old[1] != "agentlab-exp-100" {
		t.Errorf("WithExpiry or UserTags modified its argument: %q", old)
	}
}

func TestOwnedKept(t *testing.T) {
	tests := []struct {
		tags        string
		owned, kept bool
	}{
		{"", false, false},
		{"agentlab", true, false},
		{"agentlab;agentlab-keep", true, true},
		{"agentlab-keep", false, true},
		{"agentlabx;my-agentlab", false, false},
		{"AgentLab", true, false},
	}
	for _, tt := range tests {
		tags := ParseTags(tt.tags)
		if got := Owned(tags); got != tt.owned {
			t.Errorf("Owned(%q) = %v; want %v", tt.tags, got, tt.owned)
		}
		if got := Kept(tags); got != tt.kept {
			t.Errorf("Kept(%q) = %v; want %v", tt.tags, got, tt.kept)
		}
	}
}
