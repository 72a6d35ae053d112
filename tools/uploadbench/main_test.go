package main

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestSmoke runs the bench small (1 MiB and 3 MiB, two rounds) with each
// client against the reaper built from this tree, so the tool cannot rot.
func TestSmoke(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "agentlab-reaper")
	build := exec.Command("go", "build", "-o", bin, "../../cmd/agentlab-reaper")
	build.Env = append(build.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build the reaper: %v\n%s", err, out)
	}
	clients := []string{"go"}
	if _, err := exec.LookPath("curl"); err == nil {
		clients = append(clients, "curl")
	} else {
		t.Log("no curl on PATH: only -client go runs")
	}
	for _, client := range clients {
		var out strings.Builder
		err := run([]string{"-reaper", bin, "-sizes", "1MiB,3MiB", "-rounds", "2", "-client", client, "-v",
			"-dir", t.TempDir()}, &out)
		if err != nil {
			t.Fatalf("-client %s: %v\n%s", client, err, out.String())
		}
		t.Log(out.String())
		for _, want := range []string{"client: " + client, "\n1MiB ", "\n3MiB ", "round 2:", "load average at end"} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("-client %s: the report lacks %q", client, want)
			}
		}
	}
}

func TestParseSizes(t *testing.T) {
	tests := []struct {
		in   string
		want []int64
		err  string
	}{
		{"64MiB,1GiB", []int64{64 << 20, 1 << 30}, ""},
		{" 1M , 2G", []int64{1 << 20, 2 << 30}, ""},
		{"1MB", nil, "-sizes"},
		{"0", nil, "more than 0"},
	}
	for _, tt := range tests {
		got, err := parseSizes(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("parseSizes(%q) = %v, %v; want an error about %q", tt.in, got, err, tt.err)
			}
			continue
		}
		if err != nil || len(got) != len(tt.want) || got[0] != tt.want[0] || got[1] != tt.want[1] {
			t.Errorf("parseSizes(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}
