package provider

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/agentlab/terraform-provider-agentlab/internal/lease"
	"github.com/agentlab/terraform-provider-agentlab/internal/pve"
)

// Update changes a sandbox in place: name, cores, memory, net0's bridge and
// firewall, tags, disk growth, and the lease (renewal, max_ttl, on_expiry,
// owner). The metadata block and the expiry tag are rewritten together, in
// the same config change, on every update.
func (r *sandboxResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	if !r.configured(&resp.Diagnostics) {
		return
	}
	var plan, state sandboxModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() {
		return
	}
	timeout, diags := plan.Timeouts.Update(ctx, defaultUpdateTimeout)
	resp.Diagnostics.Append(diags...)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c := r.data.client

	ref, err := stateRef(state)
	if err != nil {
		resp.Diagnostics.AddError("Invalid sandbox ID", err.Error()+".")
		return
	}
	cfg, err := c.Config(ctx, ref)
	if pve.IsNotFound(err) {
		resp.Diagnostics.AddError("The sandbox no longer exists",
			fmt.Sprintf("VM %s was deleted after the plan was made (perhaps its lease ended). Run terraform apply "+
				"again: the refresh notices and a new sandbox is created.", ref))
		return
	}
	if err != nil {
		resp.Diagnostics.AddError("Cannot read the sandbox", fmt.Sprintf("Reading VM %s failed: %s.", ref, err))
		return
	}
	priv, diags := privateMeta(ctx, req.Private)
	resp.Diagnostics.Append(diags...)
	meta, err := lease.Decode(cfg.Description())
	switch {
	case !lease.Owned(cfg.Tags()):
		resp.Diagnostics.AddError("Not an AgentLab sandbox any more",
			fmt.Sprintf("VM %s has no %q tag: the sandbox was replaced by another VM outside Terraform. Refresh "+
				"(terraform apply -refresh-only) to drop it from state.", ref, lease.TagOwned))
		return
	case err != nil && priv == nil:
		resp.Diagnostics.AddError("Sandbox metadata unreadable",
			fmt.Sprintf("The metadata block in VM %s's description cannot be read: %s. Fix or remove the block "+
				"by hand (between %s and %s), or replace the sandbox.", ref, err, lease.BeginMarker, lease.EndMarker))
		return
	case err != nil:
		meta = *priv // rewrite the block from what this provider last wrote
	case priv != nil && priv.Nonce != meta.Nonce:
		resp.Diagnostics.AddError("The sandbox was replaced outside Terraform",
			fmt.Sprintf("VM %s carries another sandbox's metadata (its VMID was reused). Refresh "+
				"(terraform apply -refresh-only) to drop the old sandbox from state.", ref))
		return
	}

	// The lease, renewed at apply time when asked for.
	ttl, _ := time.ParseDuration(plan.TTL.ValueString())
	var maxTTL time.Duration
	if !plan.MaxTTL.IsNull() {
		maxTTL, _ = time.ParseDuration(plan.MaxTTL.ValueString())
	}
	newMeta := meta
	newMeta.Owner = plan.Owner.ValueString()
	newMeta.Profile = plan.Profile.ValueString()
	newMeta.OnExpiry = lease.Action(plan.OnExpiry.ValueString())
	newMeta.MaxTTL = maxTTL
	newMeta.Workspace = workspaceVolume(plan.WorkspaceID)
	if plan.LeaseExpiresAt.IsUnknown() {
		renewed, err := newMeta.Lease.Renew(r.data.clock.Now(), ttl)
		if err != nil {
			resp.Diagnostics.AddAttributeError(path.Root("ttl"), "Lease renewal refused", leaseErrorText(err)+".")
			return
		}
		newMeta.Lease = renewed
	}
	if err := newMeta.Validate(); err != nil {
		resp.Diagnostics.AddAttributeError(path.Root("max_ttl"), "Invalid lease", leaseErrorText(err)+".")
		return
	}
	description, err := lease.Encode(cfg.Description(), newMeta)
	if err != nil {
		resp.Diagnostics.AddError("Cannot write the sandbox's metadata", err.Error()+".")
		return
	}
	if newMeta.Version == 0 {
		newMeta.Version = lease.Version
	}

	var userTags []string
	resp.Diagnostics.Append(plan.Tags.ElementsAs(ctx, &userTags, false)...)
	if resp.Diagnostics.HasError() {
		return
	}
	tags, err := lease.SandboxTags(userTags, newMeta.ExpiresAt)
	if err != nil {
		resp.Diagnostics.AddAttributeError(path.Root("tags"), "Invalid tags", err.Error()+".")
		return
	}

	set := map[string]string{}
	setIf := func(key, want string) {
		if cfg.Value(key) != want {
			set[key] = want
		}
	}
	setIf("description", description)
	setIf("name", plan.Name.ValueString())
	setIf("cores", strconv.FormatInt(plan.Cores.ValueInt64(), 10))
	setIf("memory", strconv.FormatInt(plan.Memory.ValueInt64(), 10))
	if pve.JoinTags(cfg.Tags()) != tags {
		set["tags"] = tags
	}
	if nic, ok := cfg.NIC("net0"); ok {
		nic.Bridge = plan.Bridge.ValueString()
		nic.Firewall = plan.Firewall.ValueBool()
		setIf("net0", nic.String())
	}
	hardwareChange := set["cores"] != "" || set["memory"] != ""
	if err := c.UpdateConfig(ctx, ref, pve.ConfigUpdate{Set: set, Digest: cfg.Digest()}); err != nil {
		resp.Diagnostics.AddError("Updating the sandbox failed", fmt.Sprintf("Changing VM %s's config failed: %s.", ref, err))
		return
	}

	resp.Diagnostics.Append(setPrivateMeta(ctx, resp.Private, newMeta)...)

	if err := changeWorkspace(ctx, c, ref, state.WorkspaceID, plan.WorkspaceID); err != nil {
		resp.Diagnostics.AddAttributeError(path.Root("workspace_id"), "Changing the workspace failed", err.Error()+".")
		prior := plan
		prior.WorkspaceID = types.StringNull()
		if ws, cerr := c.Config(ctx, ref); cerr == nil {
			prior.WorkspaceID = observedWorkspaceID(ws, ref)
		}
		r.saveProgress(ctx, resp, prior, state, newMeta)
		return
	}

	if diskGrows(cfg, plan.DiskSize) {
		if err := c.Resize(ctx, ref, cfg.BootDisk(), plan.DiskSize.ValueString()); err != nil {
			msg := err.Error()
			if errors.Is(err, pve.ErrShrink) {
				msg += "; Proxmox VE cannot shrink disks"
			}
			resp.Diagnostics.AddAttributeError(path.Root("disk_size"), "Resizing the disk failed", msg+".")
			r.saveProgress(ctx, resp, plan, state, newMeta)
			return
		}
	}

	st, err := c.Status(ctx, ref)
	if err != nil {
		resp.Diagnostics.AddError("Cannot read the sandbox's status", fmt.Sprintf("Reading VM %s's status failed: %s.", ref, err))
		r.saveProgress(ctx, resp, plan, state, newMeta)
		return
	}
	restarted := false
	if hardwareChange && st.Running() {
		if plan.RebootOnChange.ValueBool() {
			if err := restart(ctx, c, ref); err != nil {
				resp.Diagnostics.AddError("Restarting the sandbox failed",
					fmt.Sprintf("VM %s got new cores/memory but restarting it failed: %s. Start it by hand or apply again.", ref, err))
				r.saveProgress(ctx, resp, plan, state, newMeta)
				return
			}
			restarted = true
		} else {
			resp.Diagnostics.AddWarning("Changes wait for a restart",
				fmt.Sprintf("VM %s is running, so Proxmox VE keeps the new cores/memory pending until it is next "+
					"restarted. Set reboot_on_change = true to restart sandboxes on such changes.", ref))
		}
	}

	out := plan
	out.LeaseExpiresAt = types.StringValue(newMeta.ExpiresAt.UTC().Format(time.RFC3339))
	if !known(out.Status) || restarted {
		if restarted {
			out.Status = types.StringValue("running")
		} else {
			out.Status = types.StringValue(st.Status)
		}
	}
	if out.IPAddress.IsUnknown() {
		out.IPAddress = types.StringNull()
		if st.Running() || restarted {
			ip, err := c.WaitForIP(ctx, ref)
			if err != nil {
				resp.Diagnostics.AddError("No IP address",
					fmt.Sprintf("Waiting for VM %s's guest agent to report an IPv4 address failed: %s.", ref, err))
				r.saveProgress(ctx, resp, plan, state, newMeta)
				return
			}
			out.IPAddress = types.StringValue(ip.String())
		}
	}
	setSSH(&out)
	resp.Diagnostics.Append(resp.State.Set(ctx, &out)...)
}

// saveProgress records a partly applied update: the config change has been
// made, so the state takes the plan's values with the new lease, keeping the
// prior computed values where the plan left them unknown.
func (r *sandboxResource) saveProgress(ctx context.Context, resp *resource.UpdateResponse, plan, prior sandboxModel, meta lease.Metadata) {
	s := plan
	s.LeaseExpiresAt = types.StringValue(meta.ExpiresAt.UTC().Format(time.RFC3339))
	if !known(s.IPAddress) {
		s.IPAddress = prior.IPAddress
	}
	if !known(s.Status) {
		s.Status = prior.Status
	}
	s.DiskSize = prior.DiskSize
	setSSH(&s)
	resp.Diagnostics.Append(resp.State.Set(ctx, &s)...)
}

// restart stops and starts a guest, so pending hardware changes apply.
func restart(ctx context.Context, c *pve.Client, ref pve.VMRef) error {
	if err := c.Stop(ctx, ref); err != nil {
		return fmt.Errorf("stop: %w", err)
	}
	if err := c.Start(ctx, ref); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	return nil
}

// diskGrows reports whether size asks for a boot disk of another size than
// cfg's (Resize refuses a shrink with a clear error).
func diskGrows(cfg pve.VMConfig, size types.String) bool {
	if !known(size) || size.IsNull() {
		return false
	}
	want, err := parseSize(size.ValueString())
	if err != nil {
		return true // let Resize report it
	}
	d, ok := cfg.Drive(cfg.BootDisk())
	return !ok || d.SizeBytes != want
}
