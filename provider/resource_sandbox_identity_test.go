package provider

import (
	"testing"
	"time"

	"github.com/agentlab/terraform-provider-agentlab/internal/lease"
	"github.com/agentlab/terraform-provider-agentlab/internal/pve"
)

func TestIdentify(t *testing.T) {
	now := time.Date(2030, 1, 2, 3, 0, 0, 0, time.UTC)
	l, err := lease.New(now, time.Hour, 0, lease.Destroy)
	if err != nil {
		t.Fatal(err)
	}
	ours := lease.Metadata{Nonce: "nonce-ours", Lease: l}
	theirs := lease.Metadata{Nonce: "nonce-theirs", Lease: l}
	describe := func(m lease.Metadata) string {
		d, err := lease.Encode("", m)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	cfg := func(kv ...string) pve.VMConfig {
		raw := map[string]any{}
		for i := 0; i < len(kv); i += 2 {
			raw[kv[i]] = kv[i+1]
		}
		return pve.VMConfig{Raw: raw}
	}
	tests := []struct {
		name     string
		cfg      pve.VMConfig
		priv     *lease.Metadata
		inFlight bool
		want     vmIdentity
	}{
		{"finished sandbox", cfg("name", "s", "tags", "agentlab", "description", describe(ours)), &ours, false, vmOurs},
		{"half-made: nonce but no tag yet", cfg("name", "s", "description", describe(ours)), &ours, false, vmOurs},
		{"another sandbox at the VMID", cfg("name", "s", "tags", "agentlab", "description", describe(theirs)), &ours, false, vmOther},
		{"another VM at the VMID", cfg("name", "web"), &ours, false, vmOther},
		{"state from an older provider", cfg("name", "s", "tags", "agentlab", "description", describe(theirs)), nil, false, vmOurs},
		{"clone placeholder, clone in flight", cfg("lock", "clone"), &ours, true, vmPlaceholder},
		{"unlocked placeholder, clone in flight", cfg(), &ours, true, vmPlaceholder},
		{"create placeholder, clone in flight", cfg("lock", "create"), &ours, true, vmPlaceholder},
		{"clone placeholder, no clone of ours in flight", cfg("lock", "clone"), &ours, false, vmOther},
		{"someone's named VM, clone in flight", cfg("name", "web"), &ours, true, vmOther},
		{"someone's locked backup, clone in flight", cfg("lock", "backup"), &ours, true, vmOther},
		{"another sandbox's clone, clone in flight", cfg("lock", "clone", "tags", "agentlab", "description", describe(theirs)), &ours, true, vmOther},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := identify(tt.cfg, tt.priv, tt.inFlight); got != tt.want {
				t.Errorf("identify = %v; want %v", got, tt.want)
			}
		})
	}
}
