package provider

import (
	"context"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"

	"github.com/agentlab/terraform-provider-agentlab/internal/lease"
)

// ValidateConfig checks what the configuration alone can tell, before any
// profile is read: a target storage needs a full clone, and ttl must fit
// within max_ttl. The plan checks the same rules again once profile values
// are merged in.
func (r *sandboxResource) ValidateConfig(ctx context.Context, req resource.ValidateConfigRequest, resp *resource.ValidateConfigResponse) {
	var m sandboxModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	if known(m.Storage) && !m.Storage.IsNull() && known(m.FullClone) && !m.FullClone.IsNull() && !m.FullClone.ValueBool() {
		resp.Diagnostics.AddAttributeError(path.Root("storage"), "storage needs a full clone",
			"Proxmox VE places a linked clone's disks on the template's storage and refuses a target storage. "+
				"Set full_clone = true to copy the disks to "+m.Storage.ValueString()+", or remove storage.")
	}
	if known(m.TTL) && !m.TTL.IsNull() && known(m.MaxTTL) && !m.MaxTTL.IsNull() {
		ttl, err1 := time.ParseDuration(m.TTL.ValueString())
		maxTTL, err2 := time.ParseDuration(m.MaxTTL.ValueString())
		if err1 == nil && err2 == nil {
			if err := lease.ValidateTTL(ttl, maxTTL); err != nil {
				resp.Diagnostics.AddAttributeError(path.Root("ttl"), "ttl exceeds max_ttl", leaseErrorText(err)+".")
			}
		}
	}
}
