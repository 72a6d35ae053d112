package provider

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/hashicorp/terraform-plugin-framework/diag"

	"github.com/agentlab/terraform-provider-agentlab/internal/lease"
)

// Keys of the sandbox's private state (kept in Terraform state, never shown).
const (
	// privateMetadata holds the sandbox's metadata block as last read or
	// written, so the plan can check a renewal against max_ttl.
	privateMetadata = "metadata"
	// privateImported marks a state that comes from terraform import and
	// has not been read yet.
	privateImported = "imported"
	// privateCloneInFlight marks a sandbox whose clone failed without proof
	// of its outcome (Proxmox VE died or the answer was lost): the VM at its
	// VMID may be the clone's placeholder, which is this sandbox's to
	// destroy. Cleared once a read finds the sandbox's own metadata.
	privateCloneInFlight = "clone_in_flight"
)

// privateGetter reads private state; the framework's request types provide it.
type privateGetter interface {
	GetKey(ctx context.Context, key string) ([]byte, diag.Diagnostics)
}

// privateSetter writes private state; the framework's response types provide it.
type privateSetter interface {
	SetKey(ctx context.Context, key string, value []byte) diag.Diagnostics
}

// privateMeta returns the sandbox's stored metadata, or nil when there is none.
func privateMeta(ctx context.Context, p privateGetter) (*lease.Metadata, diag.Diagnostics) {
	if p == nil {
		return nil, nil
	}
	b, diags := p.GetKey(ctx, privateMetadata)
	if diags.HasError() || len(b) == 0 {
		return nil, diags
	}
	var m lease.Metadata
	if err := json.Unmarshal(b, &m); err != nil {
		// Stale or foreign data: the next read replaces it.
		return nil, diags
	}
	return &m, diags
}

// privateLease returns the sandbox's stored lease, or nil when there is none.
func privateLease(ctx context.Context, p privateGetter) (*lease.Lease, diag.Diagnostics) {
	m, diags := privateMeta(ctx, p)
	if m == nil {
		return nil, diags
	}
	return &m.Lease, diags
}

// setPrivateMeta stores m in the private state.
func setPrivateMeta(ctx context.Context, p privateSetter, m lease.Metadata) diag.Diagnostics {
	b, err := json.Marshal(m)
	if err != nil {
		var diags diag.Diagnostics
		diags.AddError("Cannot store the sandbox's metadata", fmt.Sprintf("Encoding the metadata failed: %s. This is a bug in the provider; please report it.", err))
		return diags
	}
	return p.SetKey(ctx, privateMetadata, b)
}

// cloneInFlight reports whether the sandbox's private state says its clone
// may not have finished.
func cloneInFlight(ctx context.Context, p privateGetter) (bool, diag.Diagnostics) {
	if p == nil {
		return false, nil
	}
	b, diags := p.GetKey(ctx, privateCloneInFlight)
	return len(b) > 0, diags
}
