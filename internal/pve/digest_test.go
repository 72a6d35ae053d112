package pve_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/agentlab/terraform-provider-agentlab/internal/pve"
	"github.com/agentlab/terraform-provider-agentlab/internal/pvesim/pvesimtest"
)

func TestIsDigestMismatch(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"config update", &pve.APIError{Method: "PUT", Status: 500, Message: "checksum mismatch (file change by other user?)"}, true},
		{"assert_if_modified", &pve.APIError{Method: "PUT", Status: 500, Message: "detected modified configuration - file changed by other user? Try again."}, true},
		{"wrapped", fmt.Errorf("update config of pve/101: %w", &pve.APIError{Status: 500, Message: "checksum mismatch (file change by other user?)"}), true},
		{"per-parameter", &pve.APIError{Status: 400, Message: "Parameter verification failed.", Errors: map[string]string{"digest": "detected modified configuration - file changed by other user? Try again."}}, true},
		{"task", &pve.TaskError{Type: "qmconfig", ExitStatus: "checksum mismatch (file change by other user?)"}, true},
		{"upload checksum", &pve.APIError{Status: 500, Message: "checksum mismatch: got 'a' != expect 'b'"}, false},
		{"lock", &pve.APIError{Status: 500, Message: "VM is locked (clone)"}, false},
		{"other", errors.New("file changed by other user"), false},
		{"nil", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := pve.IsDigestMismatch(tt.err); got != tt.want {
				t.Errorf("IsDigestMismatch(%v) = %v; want %v", tt.err, got, tt.want)
			}
		})
	}
}

func TestIsDigestMismatchAgainstSimulator(t *testing.T) {
	sim := pvesimtest.Start(t)
	c := simClient(t, sim)
	ctx := testCtx(t)
	ref, err := c.Clone(ctx, sandboxReq("digest"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := c.Config(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.UpdateConfig(ctx, ref, pve.ConfigUpdate{Set: map[string]string{"cores": "2"}, Digest: cfg.Digest()}); err != nil {
		t.Fatalf("update with a fresh digest: %v", err)
	}
	err = c.UpdateConfig(ctx, ref, pve.ConfigUpdate{Set: map[string]string{"cores": "3"}, Digest: cfg.Digest()})
	if !pve.IsDigestMismatch(err) {
		t.Errorf("update with a stale digest: got %v; want IsDigestMismatch", err)
	}
	if pve.IsTransient(err) || pve.IsNotFound(err) {
		t.Errorf("stale digest: IsTransient %v, IsNotFound %v; want neither", pve.IsTransient(err), pve.IsNotFound(err))
	}
}
