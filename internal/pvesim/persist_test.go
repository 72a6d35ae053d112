package pvesim_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/agentlab/terraform-provider-agentlab/internal/pvesim"
	"github.com/agentlab/terraform-provider-agentlab/internal/pvesim/pvesimtest"
)

// TestUploadedBytesSurviveRestart: uploaded bytes are written once to
// volumes/, outside state.json, and come back after a restart.
func TestUploadedBytesSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	sim := pvesimtest.Start(t, func(o *pvesim.Options) { o.StateDir = dir })
	uploadISO(t, sim, "seed.iso", []byte("hello iso"))
	if err := sim.Server.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	blobs, err := os.ReadDir(filepath.Join(dir, "volumes"))
	if err != nil || len(blobs) != 1 {
		t.Fatalf("volumes/ = %v, %v; want one file", blobs, err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "state.json"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte("aGVsbG8gaXNv")) { // base64("hello iso")
		t.Errorf("state.json holds the uploaded bytes; want them only under volumes/")
	}
	s2 := newServer(t, pvesim.Options{StateDir: dir})
	defer s2.Close()
	if b, ok := s2.Volume("local", "iso/seed.iso"); !ok || string(b) != "hello iso" {
		t.Errorf("ISO after restart = %q, %v; want hello iso", b, ok)
	}
}

// TestOldStateWithInlineBytes reads a state.json written before volumes/
// existed, which held uploaded bytes inline.
func TestOldStateWithInlineBytes(t *testing.T) {
	dir := t.TempDir()
	old := `{"vms":{},"volumes":{"pve\u0000local:iso/old.iso":{"node":"pve","storage":"local","volid":"local:iso/old.iso",` +
		`"content":"iso","format":"iso","size":3,"ctime":1,"data":"b2xk"}},"tasks":[],"next_pid":4096}`
	if err := os.WriteFile(filepath.Join(dir, "state.json"), []byte(old), 0o600); err != nil {
		t.Fatal(err)
	}
	s := newServer(t, pvesim.Options{StateDir: dir})
	defer s.Close()
	if b, ok := s.Volume("local", "iso/old.iso"); !ok || string(b) != "old" {
		t.Errorf("inline ISO = %q, %v; want old", b, ok)
	}
}
