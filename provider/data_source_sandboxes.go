package provider

import (
	"context"
	"fmt"
	"regexp"
	"time"

	"github.com/hashicorp/terraform-plugin-framework-validators/stringvalidator"
	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/datasource/schema"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/agentlab/terraform-provider-agentlab/internal/lease"
	"github.com/agentlab/terraform-provider-agentlab/internal/pve"
)

// Compile-time checks of the interfaces the data source implements.
var (
	_ datasource.DataSource                   = (*sandboxesDataSource)(nil)
	_ datasource.DataSourceWithConfigure      = (*sandboxesDataSource)(nil)
	_ datasource.DataSourceWithValidateConfig = (*sandboxesDataSource)(nil)
)

// sandboxesDataSource is the agentlab_sandboxes data source: the sandboxes
// that exist, whoever created them.
type sandboxesDataSource struct {
	data *providerData
}

// NewSandboxesDataSource returns the agentlab_sandboxes data source.
func NewSandboxesDataSource() datasource.DataSource {
	return &sandboxesDataSource{}
}

// sandboxesModel is the data source's data.
type sandboxesModel struct {
	Node      types.String       `tfsdk:"node"`
	NameRegex types.String       `tfsdk:"name_regex"`
	Sandboxes []sandboxEntryData `tfsdk:"sandboxes"`
}

// sandboxEntryData is one listed sandbox.
type sandboxEntryData struct {
	VMID           types.Int64  `tfsdk:"vmid"`
	Node           types.String `tfsdk:"node"`
	Name           types.String `tfsdk:"name"`
	Status         types.String `tfsdk:"status"`
	LeaseExpiresAt types.String `tfsdk:"lease_expires_at"`
	Tags           types.List   `tfsdk:"tags"`
}

// Metadata sets the data source's type name.
func (d *sandboxesDataSource) Metadata(_ context.Context, req datasource.MetadataRequest, resp *datasource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_sandboxes"
}

// Schema describes agentlab_sandboxes.
func (d *sandboxesDataSource) Schema(_ context.Context, _ datasource.SchemaRequest, resp *datasource.SchemaResponse) {
	resp.Schema = schema.Schema{
		MarkdownDescription: "Lists the sandboxes AgentLab manages: the VMs tagged `agentlab` (templates excluded), " +
			"whoever created them, with their lease expiry as mirrored in their `agentlab-exp-<unix>` tag. " +
			"One API call (`/cluster/resources`) answers it, whatever the number of sandboxes.",
		Attributes: map[string]schema.Attribute{
			"node": schema.StringAttribute{
				MarkdownDescription: "Only list sandboxes on this node. Defaults to all nodes.",
				Optional:            true,
				Validators:          []validator.String{stringvalidator.RegexMatches(dnsNamePattern, "must be a Proxmox VE node name")},
			},
			"name_regex": schema.StringAttribute{
				MarkdownDescription: "Only list sandboxes whose name matches this regular expression (Go RE2 syntax, " +
					"unanchored: use `^agent-` for a prefix). Defaults to all names.",
				Optional: true,
			},
			"sandboxes": schema.ListNestedAttribute{
				MarkdownDescription: "The matching sandboxes, ordered by VMID.",
				Computed:            true,
				NestedObject: schema.NestedAttributeObject{
					Attributes: map[string]schema.Attribute{
						"vmid": schema.Int64Attribute{MarkdownDescription: "The sandbox's VMID.", Computed: true},
						"node": schema.StringAttribute{MarkdownDescription: "The node the sandbox runs on.", Computed: true},
						"name": schema.StringAttribute{MarkdownDescription: "The VM's name.", Computed: true},
						"status": schema.StringAttribute{
							MarkdownDescription: "The VM's power state, e.g. `running` or `stopped`.",
							Computed:            true,
						},
						"lease_expires_at": schema.StringAttribute{
							MarkdownDescription: "When the lease ends, in RFC 3339 (UTC), from the expiry tag; null " +
								"when the VM has no valid expiry tag.",
							Computed: true,
						},
						"tags": schema.ListAttribute{
							MarkdownDescription: "The VM's user tags, sorted, without `agentlab` and the expiry tag " +
								"(the same as agentlab_sandbox's `tags`).",
							ElementType: types.StringType,
							Computed:    true,
						},
					},
				},
			},
		},
	}
	refuseControlCharsInDataSource(resp.Schema.Attributes)
}

// Configure receives the provider's client.
func (d *sandboxesDataSource) Configure(_ context.Context, req datasource.ConfigureRequest, resp *datasource.ConfigureResponse) {
	if req.ProviderData == nil {
		return
	}
	data, ok := req.ProviderData.(*providerData)
	if !ok {
		resp.Diagnostics.AddError("Unexpected provider data",
			fmt.Sprintf("The agentlab_sandboxes data source expected *providerData but got %T. This is a bug in the provider; please report it.", req.ProviderData))
		return
	}
	d.data = data
}

// ValidateConfig checks that name_regex compiles.
func (d *sandboxesDataSource) ValidateConfig(ctx context.Context, req datasource.ValidateConfigRequest, resp *datasource.ValidateConfigResponse) {
	var m sandboxesModel
	resp.Diagnostics.Append(req.Config.GetAttribute(ctx, path.Root("name_regex"), &m.NameRegex)...)
	if m.NameRegex.IsNull() || m.NameRegex.IsUnknown() {
		return
	}
	if _, err := regexp.Compile(m.NameRegex.ValueString()); err != nil {
		resp.Diagnostics.AddAttributeError(path.Root("name_regex"), "Invalid regular expression",
			fmt.Sprintf("name_regex %q does not compile: %s. Use Go RE2 syntax, e.g. \"^agent-\".", m.NameRegex.ValueString(), err))
	}
}

// Read lists the sandboxes.
func (d *sandboxesDataSource) Read(ctx context.Context, req datasource.ReadRequest, resp *datasource.ReadResponse) {
	if d.data == nil {
		resp.Diagnostics.AddError("Provider not configured",
			"The agentlab provider was not configured before agentlab_sandboxes was read; set its settings to known values.")
		return
	}
	var m sandboxesModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	var nameRE *regexp.Regexp
	if !m.NameRegex.IsNull() {
		re, err := regexp.Compile(m.NameRegex.ValueString())
		if err != nil {
			resp.Diagnostics.AddAttributeError(path.Root("name_regex"), "Invalid regular expression", err.Error())
			return
		}
		nameRE = re
	}
	vms, err := d.data.client.ListVMs(ctx)
	if err != nil {
		resp.Diagnostics.AddError("Cannot list sandboxes", fmt.Sprintf("Listing the cluster's VMs failed: %s.", err))
		return
	}
	m.Sandboxes = make([]sandboxEntryData, 0)
	for _, vm := range filterSandboxes(vms, m.Node.ValueString(), nameRE) {
		e := sandboxEntryData{
			VMID:           types.Int64Value(int64(vm.VMID)),
			Node:           types.StringValue(vm.Node),
			Name:           types.StringValue(vm.Name),
			Status:         types.StringValue(vm.Status),
			LeaseExpiresAt: types.StringNull(),
			Tags:           stringList(lease.UserTags(vm.Tags)),
		}
		if exp, err := lease.ExpiryFromTags(vm.Tags); err == nil {
			e.LeaseExpiresAt = types.StringValue(exp.UTC().Format(time.RFC3339))
		}
		m.Sandboxes = append(m.Sandboxes, e)
	}
	resp.Diagnostics.Append(resp.State.Set(ctx, &m)...)
}

// filterSandboxes keeps the QEMU guests tagged agentlab that are not
// templates, on node (all when empty) and named to match nameRE (all when
// nil), in the order given.
func filterSandboxes(vms []pve.VMEntry, node string, nameRE *regexp.Regexp) []pve.VMEntry {
	var out []pve.VMEntry
	for _, vm := range vms {
		if vm.Type != "" && vm.Type != "qemu" {
			continue
		}
		if vm.Template || !lease.Owned(vm.Tags) {
			continue
		}
		if node != "" && vm.Node != node {
			continue
		}
		if nameRE != nil && !nameRE.MatchString(vm.Name) {
			continue
		}
		out = append(out, vm)
	}
	return out
}
