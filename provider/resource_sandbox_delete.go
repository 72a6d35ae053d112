package provider

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/hashicorp/terraform-plugin-framework/resource"

	"github.com/agentlab/terraform-provider-agentlab/internal/lease"
	"github.com/agentlab/terraform-provider-agentlab/internal/pve"
	"github.com/agentlab/terraform-provider-agentlab/internal/volume"
)

// Delete destroys the sandbox's VM (stopping it first, purging its disks) and
// removes its cloud-init ISO. A VM that is already gone is success; a VM at
// the same VMID that is not this sandbox (see identify) is left alone. The
// placeholder of a clone that never finished is destroyed like the sandbox;
// when its lock forbids that, the error says how to remove the lock.
func (r *sandboxResource) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	if !r.configured(&resp.Diagnostics) {
		return
	}
	var state sandboxModel
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() {
		return
	}
	timeout, diags := state.Timeouts.Delete(ctx, defaultDeleteTimeout)
	resp.Diagnostics.Append(diags...)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c := r.data.client

	ref, err := stateRef(state)
	if err != nil {
		resp.Diagnostics.AddError("Invalid sandbox ID", err.Error()+". Remove it with terraform state rm.")
		return
	}
	isoStorage := state.ISOStorage.ValueString()
	if isoStorage == "" {
		isoStorage = defaultISOStorage
	}

	cfg, err := c.Config(ctx, ref)
	switch {
	case pve.IsNotFound(err):
		// Gone already (e.g. reaped); no other VM has this VMID, so its ISO
		// name is free to clean up.
		if err := deleteISO(ctx, c, ref.Node, volume.SeedISOVolid(isoStorage, ref.VMID)); err != nil {
			resp.Diagnostics.AddWarning("Cloud-init ISO left behind",
				fmt.Sprintf("The sandbox's VM is gone, but deleting its ISO failed: %s. Delete %s by hand.",
					err, volume.SeedISOVolid(isoStorage, ref.VMID)))
		}
		return
	case err != nil:
		resp.Diagnostics.AddError("Cannot read the sandbox", fmt.Sprintf("Reading VM %s failed: %s.", ref, err))
		return
	}
	// An empty CD-ROM on a sandbox whose create completed had its seed
	// retired after first boot (seed_retire.go): the ISO is deleted already.
	// A half-made sandbox's ISO may exist unattached, so it is deleted.
	seedRetired := false
	if d, ok := cfg.Drive(isoDrive); ok {
		if d.Storage != "" && d.Volume == volume.SeedISOVolid(d.Storage, ref.VMID) {
			isoStorage = d.Storage
		}
		st := state.Status.ValueString()
		seedRetired = d.Volume == "none" && (st == "running" || st == "stopped")
	}
	priv, diags := privateMeta(ctx, req.Private)
	resp.Diagnostics.Append(diags...)
	inFlight, diags := cloneInFlight(ctx, req.Private)
	resp.Diagnostics.Append(diags...)
	// Terraform drops the private state when it replaces a tainted resource;
	// the status in the prior state still tells.
	inFlight = inFlight || state.Status.ValueString() == statusCloneUnfinished
	if identify(cfg, priv, inFlight) == vmOther {
		if !lease.Owned(cfg.Tags()) {
			resp.Diagnostics.AddWarning("Sandbox already gone",
				fmt.Sprintf("VM %s no longer carries the %q tag: the sandbox was deleted outside Terraform and its "+
					"VMID reused. The other VM is left alone.", ref, lease.TagOwned))
		} else {
			resp.Diagnostics.AddWarning("Sandbox already gone",
				fmt.Sprintf("VM %s is another sandbox now (its VMID was reused after this one was deleted). "+
					"It is left alone.", ref))
		}
		return
	}

	// A sandbox the refresh just saw running is stopped without reading
	// its status again.
	destroy := c.Destroy
	if state.Status.ValueString() == "running" {
		destroy = c.DestroyRunning
	}
	if err := destroy(ctx, ref); err != nil {
		if errors.Is(err, pve.ErrLocked) {
			resp.Diagnostics.AddError("The sandbox's VM is locked",
				fmt.Sprintf("Destroying VM %s failed: %s.\n\n%s", ref, err, unlockHint(ref, cfg.Lock())))
			return
		}
		resp.Diagnostics.AddError("Destroying the sandbox failed",
			fmt.Sprintf("Destroying VM %s failed: %s. Run terraform destroy again.", ref, err))
		return
	}
	if seedRetired {
		return
	}
	if err := deleteISO(ctx, c, ref.Node, volume.SeedISOVolid(isoStorage, ref.VMID)); err != nil {
		resp.Diagnostics.AddError("Deleting the cloud-init ISO failed",
			fmt.Sprintf("VM %s is destroyed, but deleting its ISO %s failed: %s. Run terraform destroy again, or "+
				"delete the ISO by hand.", ref, volume.SeedISOVolid(isoStorage, ref.VMID), err))
	}
}

// deleteISO removes a sandbox's seed ISO. A volume that is already gone is
// success, whatever words the storage uses to say so: after a failed delete
// the storage's content list decides.
func deleteISO(ctx context.Context, c *pve.Client, node, volid string) error {
	err := c.DeleteVolume(ctx, node, volid)
	if err == nil {
		return nil
	}
	storage, _, _ := strings.Cut(volid, ":")
	vols, lerr := c.StorageContent(ctx, node, storage, "iso", 0)
	if lerr != nil {
		return err
	}
	for _, v := range vols {
		if v.VolID == volid {
			return err
		}
	}
	return nil
}
