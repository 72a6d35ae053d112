package provider

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/terraform-plugin-framework-timeouts/resource/timeouts"
	"github.com/hashicorp/terraform-plugin-framework-validators/int64validator"
	"github.com/hashicorp/terraform-plugin-framework-validators/listvalidator"
	"github.com/hashicorp/terraform-plugin-framework-validators/setvalidator"
	"github.com/hashicorp/terraform-plugin-framework-validators/stringvalidator"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/int64planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/agentlab/terraform-provider-agentlab/internal/egressrule"
)

// Compile-time checks of the interfaces the sandbox resource implements.
var (
	_ resource.Resource                   = (*sandboxResource)(nil)
	_ resource.ResourceWithConfigure      = (*sandboxResource)(nil)
	_ resource.ResourceWithImportState    = (*sandboxResource)(nil)
	_ resource.ResourceWithModifyPlan     = (*sandboxResource)(nil)
	_ resource.ResourceWithValidateConfig = (*sandboxResource)(nil)
)

// Defaults of the sandbox attributes that neither the configuration nor the
// profile sets.
const (
	defaultCores      = 2
	defaultMemory     = 2048
	defaultBridge     = "vmbr0"
	defaultFirewall   = true
	defaultFullClone  = false
	defaultTTL        = "1h"
	defaultOnExpiry   = "destroy"
	defaultWaitForIP  = false
	defaultISOStorage = "local"
)

// Default operation timeouts; the timeouts block overrides them.
const (
	defaultCreateTimeout = 20 * time.Minute
	defaultReadTimeout   = 5 * time.Minute
	defaultUpdateTimeout = 20 * time.Minute
	defaultDeleteTimeout = 10 * time.Minute
)

// sandboxResource is the agentlab_sandbox resource: one Proxmox VE VM cloned
// from a template, with a lease.
type sandboxResource struct {
	data *providerData
}

// NewSandboxResource returns the agentlab_sandbox resource.
func NewSandboxResource() resource.Resource {
	return &sandboxResource{}
}

// sandboxModel is the agentlab_sandbox resource's data.
type sandboxModel struct {
	ID                types.String   `tfsdk:"id"`
	VMID              types.Int64    `tfsdk:"vmid"`
	Name              types.String   `tfsdk:"name"`
	TemplateVMID      types.Int64    `tfsdk:"template_vmid"`
	Node              types.String   `tfsdk:"node"`
	Cores             types.Int64    `tfsdk:"cores"`
	Memory            types.Int64    `tfsdk:"memory"`
	DiskSize          types.String   `tfsdk:"disk_size"`
	FullClone         types.Bool     `tfsdk:"full_clone"`
	Storage           types.String   `tfsdk:"storage"`
	Bridge            types.String   `tfsdk:"bridge"`
	Firewall          types.Bool     `tfsdk:"firewall"`
	Egress            types.String   `tfsdk:"egress"`
	EgressAllow       types.List     `tfsdk:"egress_allow"`
	SSHAuthorizedKeys types.List     `tfsdk:"ssh_authorized_keys"`
	TTL               types.String   `tfsdk:"ttl"`
	MaxTTL            types.String   `tfsdk:"max_ttl"`
	OnExpiry          types.String   `tfsdk:"on_expiry"`
	RenewOnApply      types.Bool     `tfsdk:"renew_on_apply"`
	RebootOnChange    types.Bool     `tfsdk:"reboot_on_change"`
	WaitForIP         types.Bool     `tfsdk:"wait_for_ip"`
	Profile           types.String   `tfsdk:"profile"`
	Owner             types.String   `tfsdk:"owner"`
	Tags              types.Set      `tfsdk:"tags"`
	ISOStorage        types.String   `tfsdk:"iso_storage"`
	IPAddress         types.String   `tfsdk:"ip_address"`
	LeaseExpiresAt    types.String   `tfsdk:"lease_expires_at"`
	Status            types.String   `tfsdk:"status"`
	WorkspaceID       types.String   `tfsdk:"workspace_id"`
	SSHUser           types.String   `tfsdk:"ssh_user"`
	SSHCommand        types.String   `tfsdk:"ssh_command"`
	Secrets           types.Map      `tfsdk:"secrets"`
	SecretsRecipient  types.String   `tfsdk:"secrets_recipient"`
	SecretsVersion    types.String   `tfsdk:"secrets_version"`
	Timeouts          timeouts.Value `tfsdk:"timeouts"`
}

// Metadata sets the resource's type name.
func (r *sandboxResource) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_sandbox"
}

// Configure receives the provider's client and settings. It is also called
// before the provider is configured, with nil data.
func (r *sandboxResource) Configure(_ context.Context, req resource.ConfigureRequest, resp *resource.ConfigureResponse) {
	if req.ProviderData == nil {
		return
	}
	data, ok := req.ProviderData.(*providerData)
	if !ok {
		resp.Diagnostics.AddError("Unexpected provider data",
			fmt.Sprintf("The agentlab_sandbox resource expected *providerData but got %T. This is a bug in the provider; please report it.", req.ProviderData))
		return
	}
	r.data = data
}

// Schema describes agentlab_sandbox.
func (r *sandboxResource) Schema(ctx context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	storageID := stringvalidator.RegexMatches(storageIDPattern,
		"must be a Proxmox VE storage ID such as \"local\" or \"local-lvm\"")
	resp.Schema = schema.Schema{
		MarkdownDescription: "A sandbox: a Proxmox VE VM cloned from a template (a linked clone unless " +
			"`full_clone` is set), sized, given a cloud-init NoCloud ISO with SSH keys, started, and given " +
			"a lease. The lease lives in the VM itself (a metadata block in its description and an " +
			"`agentlab-exp-<unix>` tag), so the AgentLab reaper can destroy or stop it once the lease ends " +
			"even if Terraform never runs again. Values not set on the resource come from its `profile`, " +
			"then from the defaults stated below; the plan always shows the values that will be applied.",
		Attributes: map[string]schema.Attribute{
			"id": schema.StringAttribute{
				MarkdownDescription: "The sandbox's ID, `<node>/<vmid>`, also the import ID.",
				Computed:            true,
				PlanModifiers:       []planmodifier.String{stringplanmodifier.UseStateForUnknown()},
			},
			"vmid": schema.Int64Attribute{
				MarkdownDescription: "The VMID the provider allocated for the sandbox.",
				Computed:            true,
				PlanModifiers:       []planmodifier.Int64{int64planmodifier.UseStateForUnknown()},
			},
			"name": schema.StringAttribute{
				MarkdownDescription: "The VM's name, a DNS name; it is also the guest's host name. Defaults to `agentlab-<vmid>`. " +
					"Changing it renames the VM in place (the guest keeps the host name it booted with).",
				Optional: true,
				Computed: true,
				Validators: []validator.String{
					stringvalidator.LengthBetween(1, 63),
					stringvalidator.RegexMatches(dnsNamePattern,
						"must be a DNS name: letters, digits and hyphens, not starting or ending with a hyphen"),
				},
			},
			"template_vmid": schema.Int64Attribute{
				MarkdownDescription: "The VMID of the template to clone. Defaults to the profile's `template_vmid`; one of " +
					"the two is required. Changing it forces a new sandbox.",
				Optional:   true,
				Computed:   true,
				Validators: []validator.Int64{int64validator.Between(100, 999999999)},
			},
			"node": schema.StringAttribute{
				MarkdownDescription: "The Proxmox VE node to create the sandbox on. Defaults to the profile's `node`, else the " +
					"provider's `node`, else the node that holds the template. Changing it forces a new sandbox.",
				Optional:   true,
				Computed:   true,
				Validators: []validator.String{stringvalidator.RegexMatches(dnsNamePattern, "must be a Proxmox VE node name")},
			},
			"cores": schema.Int64Attribute{
				MarkdownDescription: fmt.Sprintf("The number of CPU cores. Defaults to the profile's `resources.cores`, "+
					"else `%d`. Changed in place; on a running sandbox the change waits for the next reboot "+
					"unless `reboot_on_change` is set.", defaultCores),
				Optional:   true,
				Computed:   true,
				Validators: []validator.Int64{int64validator.Between(1, 512)},
			},
			"memory": schema.Int64Attribute{
				MarkdownDescription: fmt.Sprintf("The memory in MiB. Defaults to the profile's `resources.memory_mb`, else "+
					"`%d`. Changed in place; on a running sandbox the change waits for the next reboot unless "+
					"`reboot_on_change` is set.", defaultMemory),
				Optional:   true,
				Computed:   true,
				Validators: []validator.Int64{int64validator.Between(64, 4194304)},
			},
			"disk_size": schema.StringAttribute{
				MarkdownDescription: "The size of the boot disk, a number followed by `K`, `M`, `G` or `T` " +
					"(powers of 1024; see Sizes in the provider documentation), for example `\"20G\"`. Defaults to the profile's `storage.root_size_gb`, else the " +
					"template's disk size. Growing it resizes the disk in place; shrinking is refused at plan " +
					"time, since Proxmox VE cannot shrink disks.",
				Optional:   true,
				Computed:   true,
				Validators: []validator.String{isSize()},
			},
			"full_clone": schema.BoolAttribute{
				MarkdownDescription: "Whether to make a full clone (an independent copy of the template's " +
					"disks) instead of a linked clone. Defaults to `false`: " +
					"linked clones are created in seconds. Changing it forces a new sandbox.",
				Optional: true,
				Computed: true,
			},
			"storage": schema.StringAttribute{
				MarkdownDescription: "The storage for a full clone's disks. Defaults to the template's storage. Only valid with `full_clone = true` (Proxmox VE " +
					"refuses a target storage for linked clones). Changing it forces a new sandbox.",
				Optional:   true,
				Computed:   true,
				Validators: []validator.String{storageID},
			},
			"bridge": schema.StringAttribute{
				MarkdownDescription: fmt.Sprintf("The bridge the sandbox's first network interface (`net0`) is "+
					"attached to; the clone keeps its own MAC address, and its NIC model is the profile's "+
					"`network.model`, else the template's. Defaults to the profile's "+
					"`network.bridge`, else `%q`. Changed in place.", defaultBridge),
				Optional: true,
				Computed: true,
				Validators: []validator.String{stringvalidator.RegexMatches(bridgePattern,
					"must be a Linux bridge name such as \"vmbr0\" (at most 15 characters)")},
			},
			"firewall": schema.BoolAttribute{
				MarkdownDescription: fmt.Sprintf("Whether the Proxmox VE firewall filters `net0`. Defaults to "+
					"the profile's `network.firewall`, else `%t`. Changed in place.", defaultFirewall),
				Optional: true,
				Computed: true,
			},
			"egress": schema.StringAttribute{
				MarkdownDescription: "What the sandbox may reach, enforced by the reaper's egress filter on the " +
					"agent bridge (`egress.enabled` in the reaper's configuration): `\"open\"` (the internet, " +
					"minus private ranges and the Proxmox VE host), `\"allowlist\"` (only `egress_allow`, and DNS " +
					"through the configured resolver) or `\"none\"` (only the reaper's guest listener). Defaults to " +
					"the profile's `network.egress`, else `\"open\"`. Changing it forces a new sandbox.",
				Optional:   true,
				Computed:   true,
				Validators: []validator.String{stringvalidator.OneOf("open", "allowlist", "none")},
			},
			"egress_allow": schema.ListAttribute{
				MarkdownDescription: "Destinations the sandbox may reach beyond its `egress` policy: CIDRs or " +
					"addresses, optionally with a port or port range and a protocol, such as `\"192.0.2.0/24\"`, " +
					"`\"10.20.0.5:5432/tcp\"`, `\"203.0.113.0/24:8000-8100\"` or `\"[2001:db8::/32]:443\"`. An entry " +
					"inside a private range opens that part of it; a wider one (`\"0.0.0.0/0:443\"`) never opens " +
					"private ranges. At most 64 entries. Defaults to none. Changing it forces a new sandbox.",
				ElementType: types.StringType,
				Optional:    true,
				Computed:    true,
				Validators: []validator.List{listvalidator.SizeAtMost(egressrule.MaxEntries),
					listvalidator.ValueStringsAre(egressEntryValidator{})},
			},
			"ssh_authorized_keys": schema.ListAttribute{
				MarkdownDescription: "SSH public keys that cloud-init authorizes for the default user, written " +
					"to the sandbox's NoCloud ISO. Defaults to none. " +
					"Cloud-init applies them on first boot only, so changing them forces a new sandbox.",
				ElementType: types.StringType,
				Optional:    true,
				Computed:    true,
				Validators: []validator.List{listvalidator.ValueStringsAre(stringvalidator.RegexMatches(sshKeyPattern,
					"must be one OpenSSH public key line such as \"ssh-ed25519 AAAA... user@host\""))},
			},
			"ttl": schema.StringAttribute{
				MarkdownDescription: fmt.Sprintf("How long the lease lasts, as a Go duration such as `\"2h\"`. "+
					"`lease_expires_at` is set to now plus `ttl` at creation; changing `ttl` renews the lease "+
					"from the time of the apply, in place (`\"60m\"` and `\"1h\"` are the same ttl). Defaults to the profile's "+
					"`behavior.ttl_minutes_default`, else `%q`.", defaultTTL),
				Optional:   true,
				Computed:   true,
				Validators: []validator.String{isDuration(time.Minute)},
			},
			"max_ttl": schema.StringAttribute{
				MarkdownDescription: "The longest the sandbox may live, counted from its creation, as a Go " +
					"duration such as `\"24h\"`. A creation or renewal that would end the lease later is " +
					"refused at plan time. Defaults to the provider's `max_ttl` (`\"168h\"` unless the operator " +
					"sets another), which is also the longest `max_ttl` and `ttl` a sandbox may ask for.",
				Optional:   true,
				Computed:   true,
				Validators: []validator.String{isDuration(time.Minute)},
			},
			"on_expiry": schema.StringAttribute{
				MarkdownDescription: fmt.Sprintf("What the reaper does once the lease has expired: `\"destroy\"` "+
					"or `\"stop\"`. Defaults to `%q`. Changed in place.", defaultOnExpiry),
				Optional:   true,
				Computed:   true,
				Validators: []validator.String{stringvalidator.OneOf("destroy", "stop")},
			},
			"renew_on_apply": schema.BoolAttribute{
				MarkdownDescription: "Whether every apply renews the lease for `ttl` from the time of the apply. " +
					"When `true`, every plan shows `lease_expires_at` as changing. Defaults to the profile's " +
					"`behavior.keepalive_default`, else `false`.",
				Optional: true,
				Computed: true,
			},
			"reboot_on_change": schema.BoolAttribute{
				MarkdownDescription: "Whether to restart a running sandbox when `cores` or `memory` change, so the " +
					"change takes effect at once. When `false`, Proxmox VE keeps such changes pending until the " +
					"VM is next restarted, and the apply shows a warning. Defaults to `false`.",
				Optional: true,
				Computed: true,
			},
			"wait_for_ip": schema.BoolAttribute{
				MarkdownDescription: fmt.Sprintf("Whether creation waits until the QEMU guest agent reports an "+
					"IPv4 address, which then fills `ip_address` (each refresh reads it again). Defaults to `%t`.", defaultWaitForIP),
				Optional: true,
				Computed: true,
			},
			"profile": schema.StringAttribute{
				MarkdownDescription: "The name of a profile, read from `<profiles_dir>/<profile>.yaml` at plan time, " +
					"that supplies values for the attributes this resource does not set. Attributes set on the " +
					"resource override the profile. Defaults to no profile.",
				Optional: true,
				Validators: []validator.String{stringvalidator.RegexMatches(profileNamePattern,
					"must be a profile name such as \"yolo-ephemeral\": letters, digits, '.', '_' and '-', "+
						"without a path")},
			},
			"owner": schema.StringAttribute{
				MarkdownDescription: "Who the sandbox belongs to, recorded in its metadata for the reaper's " +
					"events. Defaults to the user of the provider's API token, e.g. `terraform@pve`.",
				Optional:   true,
				Computed:   true,
				Validators: []validator.String{stringvalidator.LengthBetween(1, 128)},
			},
			"tags": schema.SetAttribute{
				MarkdownDescription: "Extra Proxmox VE tags for the VM, lower-case. The provider always adds " +
					"`agentlab` and `agentlab-exp-<unix>` itself, and they cannot be set here. `agentlab-keep` " +
					"keeps the reaper away only if the operator allows it (the reaper's `policy.user_keep: true`; " +
					"the default is no), so the plan warns when it is set; operators keep a sandbox with " +
					"`agentlab-reaper keep VMID`. Defaults to none. Changed in place.",
				ElementType: types.StringType,
				Optional:    true,
				Computed:    true,
				Validators:  []validator.Set{setvalidator.ValueStringsAre(userTagValidator{})},
			},
			"iso_storage": schema.StringAttribute{
				MarkdownDescription: fmt.Sprintf("The storage, with `iso` content enabled, that receives the "+
					"sandbox's cloud-init NoCloud ISO. Defaults to `%q`. "+
					"Changing it forces a new sandbox.", defaultISOStorage),
				Optional:   true,
				Computed:   true,
				Validators: []validator.String{storageID},
			},
			"ip_address": schema.StringAttribute{
				MarkdownDescription: "The sandbox's first IPv4 address as the guest agent reports it; set when " +
					"`wait_for_ip` is `true`, else null.",
				Computed: true,
			},
			"lease_expires_at": schema.StringAttribute{
				MarkdownDescription: "When the lease ends, in RFC 3339 (UTC). Known after creation and after " +
					"each renewal.",
				Computed: true,
			},
			"status": schema.StringAttribute{
				MarkdownDescription: "The VM's power state as Proxmox VE reports it: `running` or `stopped`. " +
					"A sandbox whose creation failed half-way is `unknown`, or `clone-unfinished` when Proxmox VE " +
					"did not finish its clone; such a sandbox is tainted and the next apply destroys it.",
				Computed:      true,
				PlanModifiers: []planmodifier.String{stringplanmodifier.UseStateForUnknown()},
			},
			"workspace_id": workspaceIDAttribute(),
			"ssh_user":     sshUserAttribute(),
			"ssh_command":  sshCommandAttribute(),
			"secrets":      secretsAttribute("sandbox"),
			"secrets_recipient": schema.StringAttribute{
				MarkdownDescription: secretsRecipientDescription + " Changing it forces a new sandbox.",
				Optional:            true,
				Computed:            true,
			},
			"secrets_version": secretsVersionAttribute("for a sandbox means a new sandbox (cloud-init delivers them at first boot only)"),
		},
		Blocks: map[string]schema.Block{
			"timeouts": timeouts.Block(ctx, timeouts.Opts{Create: true, Read: true, Update: true, Delete: true}),
		},
	}
	refuseControlCharsInResource(resp.Schema.Attributes)
}

// ImportState accepts the ID `<node>/<vmid>`; Read then fills the rest from
// the VM and refuses VMs AgentLab does not manage.
func (r *sandboxResource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	node, vmid, err := parseSandboxID(req.ID)
	if err != nil {
		resp.Diagnostics.AddError("Invalid import ID",
			fmt.Sprintf("%s. Import a sandbox with its node and VMID, for example: "+
				"terraform import agentlab_sandbox.example pve/123", err))
		return
	}
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("id"), sandboxID(node, vmid))...)
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("node"), node)...)
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("vmid"), vmid)...)
	resp.Diagnostics.Append(resp.Private.SetKey(ctx, privateImported, []byte(`true`))...)
}
