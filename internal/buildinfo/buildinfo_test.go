package buildinfo

import (
	"runtime"
	"testing"
)

func TestString(t *testing.T) {
	gov := runtime.Version()
	tests := []struct {
		name                  string
		version, commit, date string
		want                  string
	}{
		{"release", "1.2.3", "1a2b3c4", "2026-11-30T12:00:00Z", "agentlab-reaper 1.2.3 (commit 1a2b3c4, built 2026-11-30T12:00:00Z, " + gov + ")"},
		{"local build", "dev", "", "", "agentlab-reaper dev (" + gov + ")"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			i := New("agentlab-reaper", tt.version, tt.commit, tt.date)
			if got := i.String(); got != tt.want {
				t.Errorf("String() = %q; want %q", got, tt.want)
			}
			if got, want := i.UserAgent(), "agentlab-reaper/"+tt.version; got != want {
				t.Errorf("UserAgent() = %q; want %q", got, want)
			}
		})
	}
}
