package main

import "testing"

func TestErrorExcerpt(t *testing.T) {
	out := "agentlab_sandbox.chaos[0]: Creating...\n\nError: Sandbox clone failed\n\nVM 101 is locked: run qm unlock 101\n"
	got := errorExcerpt(out)
	if firstLine(got) != "Error: Sandbox clone failed" {
		t.Errorf("errorExcerpt first line = %q; want the Error: line", firstLine(got))
	}
	if m := reUnlock.FindStringSubmatch(got); m == nil || m[1] != "101" {
		t.Errorf("qm unlock VMID not found in %q", got)
	}
}
