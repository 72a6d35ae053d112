package provider

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/hashicorp/terraform-plugin-framework-validators/stringvalidator"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/agentlab/terraform-provider-agentlab/internal/pve"
	"github.com/agentlab/terraform-provider-agentlab/internal/workspace"
)

// Compile-time checks of the interfaces the workspace resource implements.
var (
	_ resource.Resource                = (*workspaceResource)(nil)
	_ resource.ResourceWithConfigure   = (*workspaceResource)(nil)
	_ resource.ResourceWithImportState = (*workspaceResource)(nil)
	_ resource.ResourceWithModifyPlan  = (*workspaceResource)(nil)
)

// defaultWorkspaceStorage is where workspaces are allocated by default.
const defaultWorkspaceStorage = "local-lvm"

// workspaceResource is the agentlab_workspace resource: a volume that keeps
// an agent's files between sandboxes.
type workspaceResource struct {
	data *providerData
}

// NewWorkspaceResource returns the agentlab_workspace resource.
func NewWorkspaceResource() resource.Resource { return &workspaceResource{} }

// workspaceModel is the agentlab_workspace resource's data.
type workspaceModel struct {
	ID      types.String `tfsdk:"id"`
	Name    types.String `tfsdk:"name"`
	Node    types.String `tfsdk:"node"`
	Storage types.String `tfsdk:"storage"`
	Size    types.String `tfsdk:"size"`
	Volume  types.String `tfsdk:"volume"`
}

// Metadata sets the resource's type name.
func (r *workspaceResource) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_workspace"
}

// Configure receives the provider's client and settings.
func (r *workspaceResource) Configure(_ context.Context, req resource.ConfigureRequest, resp *resource.ConfigureResponse) {
	r.data = configureData(req.ProviderData, "agentlab_workspace", &resp.Diagnostics)
}

// Schema describes agentlab_workspace.
func (r *workspaceResource) Schema(_ context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	resp.Schema = schema.Schema{
		MarkdownDescription: "A workspace: a Proxmox VE volume that keeps an agent's files between sandboxes. " +
			"Attach it to a sandbox or job with `workspace_id`; the guest formats it once (ext4, label " +
			"`agentlab-ws`) and mounts it at `/workspace`. The volume is allocated through the storage API and " +
			"owned by a small holder VM (`agentlab-ws-<name>`, tagged `agentlab-workspace`, no disks, never " +
			"started) that reserves its VMID, so destroying a sandbox never frees it and no sandbox is ever " +
			"created at its owner's VMID. Destroying the workspace frees the volume and the holder; it is refused " +
			"while a sandbox has the workspace attached.",
		Attributes: map[string]schema.Attribute{
			"id": schema.StringAttribute{
				MarkdownDescription: "The workspace's ID, `<node>/<volume>`, also the import ID; sandboxes and jobs refer to it in `workspace_id`.",
				Computed:            true,
				PlanModifiers:       []planmodifier.String{stringplanmodifier.UseStateForUnknown()},
			},
			"name": schema.StringAttribute{
				MarkdownDescription: "The workspace's name: lower-case letters, digits and hyphens, at most 42 " +
					"characters. Its holder VM is named `agentlab-ws-<name>`. Changing it forces a new workspace (and " +
					"loses its data).",
				Required:      true,
				PlanModifiers: []planmodifier.String{stringplanmodifier.RequiresReplace()},
				Validators: []validator.String{stringvalidator.RegexMatches(workspaceNamePattern,
					"must be lower-case letters, digits and hyphens, at most 42 characters, not starting or ending with a hyphen")},
			},
			"node": schema.StringAttribute{
				MarkdownDescription: "The node whose storage holds the volume; sandboxes using the workspace must " +
					"run there. Defaults to the provider's `node`; one of the two is required. Changing it forces a " +
					"new workspace.",
				Optional:      true,
				Computed:      true,
				PlanModifiers: []planmodifier.String{stringplanmodifier.RequiresReplaceIfConfigured(), stringplanmodifier.UseStateForUnknown()},
				Validators:    []validator.String{stringvalidator.RegexMatches(dnsNamePattern, "must be a Proxmox VE node name")},
			},
			"storage": schema.StringAttribute{
				MarkdownDescription: fmt.Sprintf("The storage, with `images` content enabled, that holds the volume. "+
					"Defaults to `%q`. Changing it forces a new workspace.", defaultWorkspaceStorage),
				Optional:      true,
				Computed:      true,
				PlanModifiers: []planmodifier.String{stringplanmodifier.RequiresReplaceIfConfigured(), stringplanmodifier.UseStateForUnknown()},
				Validators: []validator.String{stringvalidator.RegexMatches(storageIDPattern,
					"must be a Proxmox VE storage ID such as \"local-lvm\"")},
			},
			"size": schema.StringAttribute{
				MarkdownDescription: "The volume's size, a number followed by `K`, `M`, `G` or `T` (powers of " +
					"1024), for example `\"10G\"`. Growing it resizes the volume in place (the guest grows the file " +
					"system on its next boot); shrinking is refused at plan time, since Proxmox VE cannot shrink volumes.",
				Required:   true,
				Validators: []validator.String{isSize()},
			},
			"volume": schema.StringAttribute{
				MarkdownDescription: "The volume's ID in Proxmox VE, e.g. `local-lvm:vm-104-disk-0`, where `104` is the holder VM's VMID.",
				Computed:            true,
				PlanModifiers:       []planmodifier.String{stringplanmodifier.UseStateForUnknown()},
			},
		},
	}
	refuseControlCharsInResource(resp.Schema.Attributes)
}

// ModifyPlan fills node and storage defaults and refuses to shrink.
func (r *workspaceResource) ModifyPlan(ctx context.Context, req resource.ModifyPlanRequest, resp *resource.ModifyPlanResponse) {
	if req.Plan.Raw.IsNull() {
		return
	}
	var plan workspaceModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	if resp.Diagnostics.HasError() {
		return
	}
	if plan.Storage.IsUnknown() && req.State.Raw.IsNull() {
		plan.Storage = types.StringValue(defaultWorkspaceStorage)
	}
	if plan.Node.IsUnknown() && req.State.Raw.IsNull() && r.data != nil {
		if r.data.settings.Node == "" {
			resp.Diagnostics.AddAttributeError(path.Root("node"), "Missing node",
				"A workspace lives on one node's storage. Set node on the workspace, or node in the provider block.")
			return
		}
		plan.Node = types.StringValue(r.data.settings.Node)
	}
	if !req.State.Raw.IsNull() {
		var st workspaceModel
		resp.Diagnostics.Append(req.State.Get(ctx, &st)...)
		if known(plan.Size) && known(st.Size) {
			want, err1 := parseSize(plan.Size.ValueString())
			have, err2 := parseSize(st.Size.ValueString())
			if err1 == nil && err2 == nil && want < have {
				resp.Diagnostics.AddAttributeError(path.Root("size"), "Workspace cannot shrink",
					fmt.Sprintf("size would shrink the workspace from %s to %s, and Proxmox VE cannot shrink volumes. "+
						"Set size to %s or more, or replace the workspace (losing its data) with terraform apply -replace.",
						st.Size.ValueString(), plan.Size.ValueString(), st.Size.ValueString()))
				return
			}
		}
	}
	resp.Diagnostics.Append(resp.Plan.Set(ctx, &plan)...)
}

// Create allocates the holder VM and the volume.
func (r *workspaceResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	if !configuredData(r.data, &resp.Diagnostics) {
		return
	}
	var plan workspaceModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	if resp.Diagnostics.HasError() {
		return
	}
	size, err := parseSize(plan.Size.ValueString())
	if err != nil {
		resp.Diagnostics.AddAttributeError(path.Root("size"), "Invalid size", err.Error()+".")
		return
	}
	ws, err := workspace.Create(ctx, r.data.client, plan.Node.ValueString(), plan.Storage.ValueString(), plan.Name.ValueString(), size)
	if err != nil {
		resp.Diagnostics.AddError("Creating the workspace failed",
			fmt.Sprintf("Allocating workspace %q on %s/%s failed: %s.", plan.Name.ValueString(),
				plan.Node.ValueString(), plan.Storage.ValueString(), err))
		return
	}
	plan.Volume = types.StringValue(ws.Volume)
	plan.ID = types.StringValue(workspaceID(ws.Node, ws.Volume))
	resp.Diagnostics.Append(resp.State.Set(ctx, &plan)...)
}

// Read refreshes the workspace; a volume deleted outside Terraform leaves
// state.
func (r *workspaceResource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	if !configuredData(r.data, &resp.Diagnostics) {
		return
	}
	var st workspaceModel
	resp.Diagnostics.Append(req.State.Get(ctx, &st)...)
	if resp.Diagnostics.HasError() {
		return
	}
	node, volid, err := parseWorkspaceID(st.ID.ValueString())
	if err != nil {
		resp.Diagnostics.AddError("Invalid workspace ID", err.Error()+".")
		return
	}
	ws, err := workspace.Read(ctx, r.data.client, node, volid)
	switch {
	case pve.IsNotFound(err) && !st.Size.IsNull():
		resp.State.RemoveResource(ctx)
		return
	case errors.Is(err, workspace.ErrNotWorkspace), pve.IsNotFound(err):
		resp.Diagnostics.AddError("Not an AgentLab workspace",
			fmt.Sprintf("%s. Import a volume that agentlab_workspace created, as <node>/<volume>, e.g. pve/local-lvm:vm-104-disk-0.", err))
		return
	case err != nil:
		resp.Diagnostics.AddError("Cannot read the workspace", fmt.Sprintf("Reading workspace %s failed: %s.", volid, err))
		return
	}
	st.Name = types.StringValue(ws.Name)
	st.Node = types.StringValue(ws.Node)
	st.Storage = types.StringValue(ws.Storage)
	st.Volume = types.StringValue(ws.Volume)
	if have, err := parseSize(st.Size.ValueString()); st.Size.IsNull() || err != nil || have != ws.SizeBytes {
		st.Size = types.StringValue(formatSize(ws.SizeBytes))
	}
	resp.Diagnostics.Append(resp.State.Set(ctx, &st)...)
}

// Update grows the volume.
func (r *workspaceResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	if !configuredData(r.data, &resp.Diagnostics) {
		return
	}
	var plan, st workspaceModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	resp.Diagnostics.Append(req.State.Get(ctx, &st)...)
	if resp.Diagnostics.HasError() {
		return
	}
	size, err := parseSize(plan.Size.ValueString())
	if err != nil {
		resp.Diagnostics.AddAttributeError(path.Root("size"), "Invalid size", err.Error()+".")
		return
	}
	ws, err := workspace.Read(ctx, r.data.client, st.Node.ValueString(), st.Volume.ValueString())
	if err != nil {
		resp.Diagnostics.AddError("Cannot read the workspace", fmt.Sprintf("Reading workspace %s failed: %s.", st.Volume.ValueString(), err))
		return
	}
	if err := workspace.Grow(ctx, r.data.client, ws, size); err != nil {
		resp.Diagnostics.AddAttributeError(path.Root("size"), "Growing the workspace failed",
			fmt.Sprintf("Resizing %s to %s failed: %s.", ws.Volume, plan.Size.ValueString(), err))
		return
	}
	resp.Diagnostics.Append(resp.State.Set(ctx, &plan)...)
}

// Delete frees the volume and its holder, refusing while a sandbox has it
// attached.
func (r *workspaceResource) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	if !configuredData(r.data, &resp.Diagnostics) {
		return
	}
	var st workspaceModel
	resp.Diagnostics.Append(req.State.Get(ctx, &st)...)
	if resp.Diagnostics.HasError() {
		return
	}
	ws, err := workspace.Read(ctx, r.data.client, st.Node.ValueString(), st.Volume.ValueString())
	if pve.IsNotFound(err) {
		return
	}
	if err != nil {
		resp.Diagnostics.AddError("Cannot read the workspace", fmt.Sprintf("Reading workspace %s failed: %s.", st.Volume.ValueString(), err))
		return
	}
	var ae *workspace.AttachedError
	err = workspace.Delete(ctx, r.data.client, ws)
	switch {
	case errors.As(err, &ae):
		resp.Diagnostics.AddError("Workspace is attached",
			fmt.Sprintf("Workspace %q (%s) is attached to sandbox %s (%q), so destroying it would pull the disk out "+
				"from under the sandbox. Remove workspace_id from that sandbox (or destroy the sandbox) first.",
				ws.Name, ws.Volume, ae.VM, ae.Name))
	case err != nil:
		resp.Diagnostics.AddError("Destroying the workspace failed",
			fmt.Sprintf("Deleting workspace %s and its holder VM %d failed: %s. Run terraform destroy again.", ws.Volume, ws.Holder, err))
	}
}

// ImportState takes "<node>/<volume>".
func (r *workspaceResource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	node, volid, err := parseWorkspaceID(req.ID)
	if err != nil {
		resp.Diagnostics.AddError("Invalid import ID", err.Error()+".")
		return
	}
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("id"), workspaceID(node, volid))...)
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("node"), node)...)
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("volume"), volid)...)
}

// workspaceID is a workspace's ID: "<node>/<volid>".
func workspaceID(node, volid string) string { return node + "/" + volid }

// parseWorkspaceID splits "<node>/<volid>".
func parseWorkspaceID(id string) (node, volid string, err error) {
	node, volid, ok := strings.Cut(id, "/")
	if !ok || !dnsNamePattern.MatchString(node) || !strings.Contains(volid, ":") {
		return "", "", fmt.Errorf("workspace ID %q is not <node>/<volume>, e.g. pve/local-lvm:vm-104-disk-0", id)
	}
	return node, volid, nil
}

// workspaceNamePattern is a workspace name (see workspace.ValidName).
var workspaceNamePattern = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,40}[a-z0-9])?$`)
