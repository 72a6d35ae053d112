package provider

import (
	"context"
	"errors"
	"fmt"

	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/agentlab/terraform-provider-agentlab/internal/cloudinit"
	"github.com/agentlab/terraform-provider-agentlab/internal/pve"
	"github.com/agentlab/terraform-provider-agentlab/internal/volume"
	"github.com/agentlab/terraform-provider-agentlab/internal/workspace"
)

// workspaceIDAttribute is the workspace_id attribute of sandboxes and jobs.
func workspaceIDAttribute() schema.StringAttribute {
	return schema.StringAttribute{
		MarkdownDescription: "The `id` of an `agentlab_workspace` to attach as the sandbox's second disk (`" +
			workspace.Drive + "`); the guest formats it once and mounts it at `/workspace`. The workspace must be " +
			"on the sandbox's node, and only one sandbox holds a workspace at a time: attaching one that another " +
			"sandbox holds is an error naming that sandbox. Changing or removing it detaches the old workspace " +
			"(its data stays) and attaches the new one in place; a running sandbox is stopped for the change and " +
			"started again. The guest formats and mounts a workspace at first boot, so a sandbox created " +
			"without one mounts one attached later only if it already holds the `agentlab-ws` file system. " +
			"Defaults to none.",
		Optional:   true,
		Validators: []validator.String{workspaceIDValidator{}},
	}
}

// sshUserAttribute is the computed ssh_user attribute.
func sshUserAttribute() schema.StringAttribute {
	return schema.StringAttribute{
		MarkdownDescription: "The guest account to log in as with the keys in `ssh_authorized_keys`: `" +
			cloudinit.DefaultUser + "`, with password-less sudo.",
		Computed:      true,
		PlanModifiers: []planmodifier.String{stringplanmodifier.UseStateForUnknown()},
	}
}

// sshCommandAttribute is the computed ssh_command attribute.
func sshCommandAttribute() schema.StringAttribute {
	return schema.StringAttribute{
		MarkdownDescription: "A command that opens a shell in the sandbox, `ssh " + cloudinit.DefaultUser +
			"@<ip_address>`; null while `ip_address` is unknown (set `wait_for_ip = true`). " +
			"`agentlab-reaper ssh VMID` does the same on the Proxmox VE host.",
		Computed: true,
	}
}

// sshCommand returns the ssh command for a guest at ip.
func sshCommand(ip string) string { return "ssh " + cloudinit.DefaultUser + "@" + ip }

// planSSH plans ssh_user and ssh_command from the planned ip_address.
func planSSH(p *sandboxModel) {
	p.SSHUser = types.StringValue(cloudinit.DefaultUser)
	p.SSHCommand = sshCommandOf(p.IPAddress)
}

// sshCommandOf derives ssh_command from an ip_address value.
func sshCommandOf(ip types.String) types.String {
	switch {
	case ip.IsUnknown():
		return types.StringUnknown()
	case ip.IsNull():
		return types.StringNull()
	}
	return types.StringValue(sshCommand(ip.ValueString()))
}

// setSSH fills ssh_user and ssh_command from the state's ip_address.
func setSSH(m *sandboxModel) {
	m.SSHUser = types.StringValue(cloudinit.DefaultUser)
	m.SSHCommand = sshCommandOf(m.IPAddress)
}

// sandboxWorkspace returns the workspace that id names, for attaching to a
// sandbox; the error says what to do.
func sandboxWorkspace(ctx context.Context, c *pve.Client, id string) (workspace.Workspace, error) {
	node, volid, err := parseWorkspaceID(id)
	if err != nil {
		return workspace.Workspace{}, err
	}
	ws, err := workspace.Read(ctx, c, node, volid)
	if pve.IsNotFound(err) {
		return ws, fmt.Errorf("workspace %s does not exist (deleted outside Terraform?); run terraform apply again to recreate it: %w", id, err)
	}
	return ws, err
}

// attachWorkspace attaches workspace id to the VM ref, stopping and
// starting it again when it runs. An AttachedError names the sandbox that
// holds it.
func attachWorkspace(ctx context.Context, c *pve.Client, ref pve.VMRef, id string) error {
	ws, err := sandboxWorkspace(ctx, c, id)
	if err != nil {
		return err
	}
	return whileStopped(ctx, c, ref, func() error {
		err := workspace.Attach(ctx, c, ref, ws)
		var ae *workspace.AttachedError
		if errors.As(err, &ae) {
			held := "is attached to"
			if ae.Pending {
				held = "is being attached to"
			}
			return &heldError{ae: ae, msg: fmt.Sprintf("workspace %s %s sandbox %s (%q); two sandboxes never hold a workspace "+
				"at once: remove workspace_id from that sandbox (or destroy it) first, then apply again", id, held, ae.VM, ae.Name)}
		}
		return err
	})
}

// heldError is an attach refused because another sandbox holds the
// workspace: msg says what to do, and it unwraps to the AttachedError.
type heldError struct {
	ae  *workspace.AttachedError
	msg string
}

func (e *heldError) Error() string { return e.msg }
func (e *heldError) Unwrap() error { return e.ae }

// whileStopped runs fn with the VM stopped, starting it again afterwards
// when it was running.
func whileStopped(ctx context.Context, c *pve.Client, ref pve.VMRef, fn func() error) error {
	st, err := c.Status(ctx, ref)
	if err != nil {
		return err
	}
	if st.Running() {
		if err := c.Stop(ctx, ref); err != nil {
			return fmt.Errorf("stopping %s: %w", ref, err)
		}
	}
	ferr := fn()
	if st.Running() {
		if err := c.Start(ctx, ref); err != nil {
			return errors.Join(ferr, fmt.Errorf("starting %s again: %w", ref, err))
		}
	}
	return ferr
}

// changeWorkspace moves the VM ref from workspace from to workspace to
// (either may be null): detach first, so that the data is never on two VMs.
func changeWorkspace(ctx context.Context, c *pve.Client, ref pve.VMRef, from, to types.String) error {
	if from.Equal(to) {
		return nil
	}
	if !from.IsNull() && !from.IsUnknown() {
		if _, volid, err := parseWorkspaceID(from.ValueString()); err == nil {
			if err := workspace.Detach(ctx, c, ref, volid); err != nil {
				return fmt.Errorf("detaching workspace %s: %w", from.ValueString(), err)
			}
		}
	}
	if to.IsNull() || to.IsUnknown() {
		return nil
	}
	return attachWorkspace(ctx, c, ref, to.ValueString())
}

// observedWorkspaceID returns the workspace_id a VM's config shows: its
// workspace drive when that holds a volume the VM does not own, else null.
func observedWorkspaceID(cfg pve.VMConfig, ref pve.VMRef) types.String {
	d, ok := cfg.Drive(workspace.Drive)
	if !ok || d.CDROM() || d.Storage == "" {
		return types.StringNull()
	}
	if owner, ok := volume.Owner(d.Volume); !ok || owner == ref.VMID {
		return types.StringNull()
	}
	return types.StringValue(workspaceID(ref.Node, d.Volume))
}

// workspaceVolume is the volume a workspace_id names, "" for none; the
// sandbox's metadata block records it for the reaper.
func workspaceVolume(id types.String) string {
	if id.IsNull() || id.IsUnknown() {
		return ""
	}
	_, volid, err := parseWorkspaceID(id.ValueString())
	if err != nil {
		return ""
	}
	return volid
}

// cloudinitWorkspace is the seed's workspace setting for a sandbox with
// workspace_id set, nil without.
func cloudinitWorkspace(id types.String) *cloudinit.Workspace {
	if id.IsNull() || id.IsUnknown() {
		return nil
	}
	return &cloudinit.Workspace{Disk: workspace.Drive}
}

// workspaceIDValidator checks that a workspace_id is "<node>/<volume>".
type workspaceIDValidator struct{}

func (workspaceIDValidator) Description(context.Context) string {
	return "must be an agentlab_workspace id, <node>/<volume>"
}

func (v workspaceIDValidator) MarkdownDescription(ctx context.Context) string {
	return v.Description(ctx)
}

func (workspaceIDValidator) ValidateString(_ context.Context, req validator.StringRequest, resp *validator.StringResponse) {
	if req.ConfigValue.IsNull() || req.ConfigValue.IsUnknown() {
		return
	}
	if _, _, err := parseWorkspaceID(req.ConfigValue.ValueString()); err != nil {
		resp.Diagnostics.AddAttributeError(req.Path, "Invalid workspace_id",
			err.Error()+". Use the id of an agentlab_workspace, e.g. workspace_id = agentlab_workspace.data.id.")
	}
}
