package provider

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/terraform-plugin-framework-validators/int64validator"
	"github.com/hashicorp/terraform-plugin-framework-validators/listvalidator"
	"github.com/hashicorp/terraform-plugin-framework-validators/stringvalidator"
	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/booldefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/boolplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/int64planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/listplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringdefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/agentlab/terraform-provider-agentlab/internal/cloudinit"
	"github.com/agentlab/terraform-provider-agentlab/internal/egressrule"
	"github.com/agentlab/terraform-provider-agentlab/internal/job"
)

// Compile-time checks of the interfaces the job resource implements.
var (
	_ resource.Resource                   = (*jobResource)(nil)
	_ resource.ResourceWithConfigure      = (*jobResource)(nil)
	_ resource.ResourceWithValidateConfig = (*jobResource)(nil)
	_ resource.ResourceWithModifyPlan     = (*jobResource)(nil)
)

// jobResource is the agentlab_job resource: one run of a task in a fresh
// sandbox, registered with the reaper.
type jobResource struct {
	data *providerData
}

// NewJobResource returns the agentlab_job resource.
func NewJobResource() resource.Resource { return &jobResource{} }

// jobModel is the agentlab_job resource's data.
type jobModel struct {
	ID                types.String `tfsdk:"id"`
	Repo              types.String `tfsdk:"repo"`
	Ref               types.String `tfsdk:"ref"`
	Task              types.String `tfsdk:"task"`
	TemplateVMID      types.Int64  `tfsdk:"template_vmid"`
	Profile           types.String `tfsdk:"profile"`
	Node              types.String `tfsdk:"node"`
	Cores             types.Int64  `tfsdk:"cores"`
	Memory            types.Int64  `tfsdk:"memory"`
	DiskSize          types.String `tfsdk:"disk_size"`
	SSHAuthorizedKeys types.List   `tfsdk:"ssh_authorized_keys"`
	Egress            types.String `tfsdk:"egress"`
	EgressAllow       types.List   `tfsdk:"egress_allow"`
	WorkspaceID       types.String `tfsdk:"workspace_id"`
	Timeout           types.String `tfsdk:"timeout"`
	Artifacts         types.List   `tfsdk:"artifacts"`
	Env               types.Map    `tfsdk:"env"`
	Wait              types.Bool   `tfsdk:"wait"`
	KeepSandbox       types.Bool   `tfsdk:"keep_sandbox"`
	VMID              types.Int64  `tfsdk:"vmid"`
	Status            types.String `tfsdk:"status"`
	Reason            types.String `tfsdk:"reason"`
	ExitCode          types.Int64  `tfsdk:"exit_code"`
	StartedAt         types.String `tfsdk:"started_at"`
	FinishedAt        types.String `tfsdk:"finished_at"`
	LogTail           types.String `tfsdk:"log_tail"`
	ArtifactList      types.List   `tfsdk:"artifact_list"`
	SSHUser           types.String `tfsdk:"ssh_user"`
	SSHCommand        types.String `tfsdk:"ssh_command"`
	Secrets           types.Map    `tfsdk:"secrets"`
	SecretsRecipient  types.String `tfsdk:"secrets_recipient"`
	SecretsVersion    types.String `tfsdk:"secrets_version"`
}

// defaultJobTimeout is the timeout of a job that sets none.
const defaultJobTimeout = "30m"

// Metadata sets the resource's type name.
func (r *jobResource) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_job"
}

// Configure receives the provider's clients and settings.
func (r *jobResource) Configure(_ context.Context, req resource.ConfigureRequest, resp *resource.ConfigureResponse) {
	r.data = configureData(req.ProviderData, "agentlab_job", &resp.Diagnostics)
}

// Schema describes agentlab_job.
func (r *jobResource) Schema(_ context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	replaceStr := []planmodifier.String{stringplanmodifier.RequiresReplace()}
	adoptS := []planmodifier.String{adoptString()}
	adoptI := []planmodifier.Int64{adoptInt()}
	keepStr := []planmodifier.String{stringplanmodifier.UseStateForUnknown()}
	resp.Schema = schema.Schema{
		MarkdownDescription: "A job: one run of `task` on a checkout of `repo` at `ref`, in a fresh sandbox. " +
			"The provider registers the job with the AgentLab reaper (`reaper_url`), creates a sandbox whose " +
			"cloud-init starts the job runner with a one-time bootstrap token, and, unless `wait = false`, waits " +
			"until the job ends. The runner clones the repository, runs the task under `timeout` (in `/workspace` " +
			"when a workspace is attached), streams its log, uploads the files matching `artifacts` and reports " +
			"the exit code. Unless `keep_sandbox` is set, the reaper destroys the sandbox when the job ends, even " +
			"if Terraform never runs again. A job is a record of one run: changing any argument but `wait` runs " +
			"a new job. Refreshing reads the job's current status from the reaper. Import a job by its ID.",
		Attributes: map[string]schema.Attribute{
			"id": schema.StringAttribute{
				MarkdownDescription: "The job's ID in the reaper, `job-` and 16 hex digits.",
				Computed:            true, PlanModifiers: keepStr,
			},
			"repo": schema.StringAttribute{
				MarkdownDescription: "The git repository to clone, any URL `git clone` accepts from inside the sandbox.",
				Required:            true, PlanModifiers: replaceStr,
			},
			"ref": schema.StringAttribute{
				MarkdownDescription: "The branch, tag or commit to check out.",
				Required:            true, PlanModifiers: replaceStr,
			},
			"task": schema.StringAttribute{
				MarkdownDescription: "The shell command to run (with `sh -c`) in the checkout. Its exit code is the job's `exit_code`.",
				Required:            true, PlanModifiers: replaceStr,
			},
			"template_vmid": schema.Int64Attribute{
				MarkdownDescription: "The template to clone the job's sandbox from. Defaults to the profile's `template_vmid`; one of the two is required.",
				Optional:            true, PlanModifiers: adoptI,
				Validators: []validator.Int64{int64validator.Between(100, 999999999)},
			},
			"profile": schema.StringAttribute{
				MarkdownDescription: "A sandbox profile (see `agentlab_sandbox`) that supplies the sandbox's values the job does not set.",
				Optional:            true, PlanModifiers: adoptS,
				Validators: []validator.String{stringvalidator.RegexMatches(profileNamePattern, "must be a profile name")},
			},
			"node": schema.StringAttribute{
				MarkdownDescription: "The node to run the sandbox on. Defaults to the provider's `node`, else the template's node.",
				Optional:            true, PlanModifiers: adoptS,
				Validators: []validator.String{stringvalidator.RegexMatches(dnsNamePattern, "must be a Proxmox VE node name")},
			},
			"cores": schema.Int64Attribute{
				MarkdownDescription: fmt.Sprintf("CPU cores of the sandbox. Defaults to the profile's, else `%d`.", defaultCores),
				Optional:            true, PlanModifiers: adoptI,
				Validators: []validator.Int64{int64validator.Between(1, 512)},
			},
			"memory": schema.Int64Attribute{
				MarkdownDescription: fmt.Sprintf("Memory of the sandbox in MiB. Defaults to the profile's, else `%d`.", defaultMemory),
				Optional:            true, PlanModifiers: adoptI,
				Validators: []validator.Int64{int64validator.Between(64, 4194304)},
			},
			"disk_size": schema.StringAttribute{
				MarkdownDescription: "The sandbox's boot disk size, e.g. `\"20G\"`. Defaults to the profile's, else the template's.",
				Optional:            true, PlanModifiers: adoptS,
				Validators: []validator.String{isSize()},
			},
			"ssh_authorized_keys": schema.ListAttribute{
				MarkdownDescription: "SSH public keys for the sandbox's default user, to look inside while the job runs (or after, with `keep_sandbox`).",
				ElementType:         types.StringType,
				Optional:            true,
				PlanModifiers:       []planmodifier.List{adoptList()},
				Validators: []validator.List{listvalidator.ValueStringsAre(stringvalidator.RegexMatches(sshKeyPattern,
					"must be one OpenSSH public key line"))},
			},
			"egress": schema.StringAttribute{
				MarkdownDescription: "What the job's sandbox may reach, enforced by the reaper's egress filter " +
					"(`egress.enabled` in the reaper's configuration): `\"open\"` (the internet, minus private ranges " +
					"and the Proxmox VE host), `\"allowlist\"` (only `egress_allow`, and DNS through the configured " +
					"resolver) or `\"none\"` (only the reaper's guest listener, which the runner needs). The runner " +
					"clones `repo` from inside the sandbox, so the repository's host must be reachable. Defaults to " +
					"the profile's `network.egress`, else `\"open\"`.",
				Optional: true, Computed: true,
				PlanModifiers: []planmodifier.String{adoptString(), stringplanmodifier.UseStateForUnknown()},
				Validators:    []validator.String{stringvalidator.OneOf("open", "allowlist", "none")},
			},
			"egress_allow": schema.ListAttribute{
				MarkdownDescription: "Destinations the job's sandbox may reach beyond its `egress` policy, in the " +
					"grammar of `agentlab_sandbox`'s `egress_allow`: CIDRs or addresses, optionally with a port or " +
					"port range and a protocol, such as `\"192.0.2.0/24\"`, `\"10.20.0.5:5432/tcp\"` or " +
					"`\"[2001:db8::/32]:443\"`. An entry inside a private range opens that part of it. At most 64 " +
					"entries. Defaults to none.",
				ElementType:   types.StringType,
				Optional:      true,
				PlanModifiers: []planmodifier.List{adoptList()},
				Validators: []validator.List{listvalidator.SizeAtMost(egressrule.MaxEntries),
					listvalidator.ValueStringsAre(egressEntryValidator{})},
			},
			"workspace_id": func() schema.StringAttribute {
				a := workspaceIDAttribute()
				a.MarkdownDescription = "The `id` of an `agentlab_workspace` to attach to the job's sandbox; the runner " +
					"clones and runs the task inside `/workspace`, so its files stay for the next job. The reaper " +
					"detaches it when it destroys the sandbox. Only one sandbox holds a workspace at a time."
				a.PlanModifiers = adoptS
				return a
			}(),
			"timeout": schema.StringAttribute{
				MarkdownDescription: fmt.Sprintf("How long the task may run, a Go duration such as `\"45m\"` (at most %s). "+
					"A task still running then is stopped and the job ends `timed_out`. Defaults to `%q`.", job.MaxTimeout, defaultJobTimeout),
				Optional: true, Computed: true, Default: stringdefault.StaticString(defaultJobTimeout),
				PlanModifiers: []planmodifier.String{replaceTimeout()},
				Validators:    []validator.String{isDuration(time.Second)},
			},
			"artifacts": schema.ListAttribute{
				MarkdownDescription: "Globs of the files to upload when the task ends, relative to the checkout, e.g. `[\"out/**\", \"report.json\"]`. Defaults to none.",
				ElementType:         types.StringType,
				Optional:            true,
				PlanModifiers:       []planmodifier.List{listplanmodifier.RequiresReplace()},
			},
			"env": schema.MapAttribute{
				MarkdownDescription: "Environment variables for the task. They are plain settings, not secrets: the reaper stores them and the plan shows them.",
				ElementType:         types.StringType,
				Optional:            true,
				PlanModifiers:       []planmodifier.Map{adoptMap()},
			},
			"wait": schema.BoolAttribute{
				MarkdownDescription: "Whether `terraform apply` waits until the job ends (at most `timeout` plus the sandbox's boot). " +
					"With `false` the apply returns once the sandbox boots, and a later refresh shows the outcome. Defaults to `true`.",
				Optional: true, Computed: true, Default: booldefault.StaticBool(true),
			},
			"keep_sandbox": schema.BoolAttribute{
				MarkdownDescription: "Whether the sandbox stays when the job ends (it then lives until its lease ends, or until the job is destroyed). Defaults to `false`.",
				Optional:            true, Computed: true, Default: booldefault.StaticBool(false),
				PlanModifiers: []planmodifier.Bool{boolplanmodifier.RequiresReplace()},
			},
			"vmid":   schema.Int64Attribute{MarkdownDescription: "The VMID of the job's sandbox.", Computed: true, PlanModifiers: []planmodifier.Int64{int64planmodifier.UseStateForUnknown()}},
			"status": schema.StringAttribute{MarkdownDescription: "Where the job stands: `requested`, `provisioning`, `booting`, `running`, then `succeeded`, `failed`, `timed_out` or `lost` (the sandbox vanished or its runner stopped reporting).", Computed: true, PlanModifiers: keepStr},
			"reason": schema.StringAttribute{MarkdownDescription: "Why a job `failed`, `timed_out` or was `lost`, as the reaper recorded it; empty otherwise.", Computed: true, PlanModifiers: keepStr},
			"exit_code": schema.Int64Attribute{
				MarkdownDescription: "The task's exit code once the job ended; null before, and for jobs that ended without one (lost, cancelled, or a task that never ran because the checkout failed).",
				Computed:            true, PlanModifiers: []planmodifier.Int64{int64planmodifier.UseStateForUnknown()},
			},
			"started_at":  schema.StringAttribute{MarkdownDescription: "When the runner started the task (RFC 3339); null before.", Computed: true, PlanModifiers: keepStr},
			"finished_at": schema.StringAttribute{MarkdownDescription: "When the job ended (RFC 3339); null before.", Computed: true, PlanModifiers: keepStr},
			"log_tail":    schema.StringAttribute{MarkdownDescription: fmt.Sprintf("The last %d bytes of the job's log. `agentlab-reaper logs JOB` shows all of it.", job.LogTailBytes), Computed: true, PlanModifiers: keepStr},
			"artifact_list": schema.ListNestedAttribute{
				MarkdownDescription: "The files the runner uploaded, by name. The `agentlab_job_artifacts` data source downloads them.",
				Computed:            true,
				PlanModifiers:       []planmodifier.List{listplanmodifier.UseStateForUnknown()},
				NestedObject: schema.NestedAttributeObject{Attributes: map[string]schema.Attribute{
					"name":   schema.StringAttribute{MarkdownDescription: "The file's path relative to the checkout.", Computed: true},
					"size":   schema.Int64Attribute{MarkdownDescription: "Its size in bytes.", Computed: true},
					"sha256": schema.StringAttribute{MarkdownDescription: "The hex SHA-256 of its content.", Computed: true},
				}},
			},
			"ssh_user": func() schema.StringAttribute {
				a := sshUserAttribute()
				return a
			}(),
			"secrets": secretsAttribute("job's task"),
			"secrets_recipient": schema.StringAttribute{
				MarkdownDescription: secretsRecipientDescription + " Changing it runs a new job.",
				Optional:            true, PlanModifiers: adoptS,
			},
			"secrets_version": func() schema.StringAttribute {
				a := secretsVersionAttribute("for a job means a new run")
				a.PlanModifiers = adoptS
				return a
			}(),
			"ssh_command": schema.StringAttribute{
				MarkdownDescription: "A command that opens a shell in the job's sandbox while it exists: `ssh " + cloudinit.DefaultUser +
					"@<address>` once the guest agent reports an address, else null (also once the job ended, unless `keep_sandbox`). `agentlab-reaper ssh VMID` does the same on the Proxmox VE host.",
				Computed: true,
			},
		},
	}
	// task is a shell script: newlines and tabs belong in it (the reaper
	// refuses NUL bytes and invalid UTF-8). Every other string refuses
	// control characters.
	task := resp.Schema.Attributes["task"]
	refuseControlCharsInResource(resp.Schema.Attributes)
	resp.Schema.Attributes["task"] = task
}

// artifactObjectType is the element type of artifact_list.
var artifactObjectType = types.ObjectType{AttrTypes: map[string]attr.Type{
	"name": types.StringType, "size": types.Int64Type, "sha256": types.StringType,
}}

// registerRequest is the job's registration as the reaper takes it.
func (m jobModel) registerRequest(ctx context.Context, owner string) (job.RegisterRequest, error) {
	req := job.RegisterRequest{
		Repo: m.Repo.ValueString(), Ref: m.Ref.ValueString(), Task: m.Task.ValueString(),
		Timeout: m.Timeout.ValueString(), KeepSandbox: m.KeepSandbox.ValueBool(), Owner: owner,
	}
	if d := m.Artifacts.ElementsAs(ctx, &req.Artifacts, false); d.HasError() {
		return req, fmt.Errorf("reading artifacts: %v", d)
	}
	if d := m.Env.ElementsAs(ctx, &req.Env, false); d.HasError() {
		return req, fmt.Errorf("reading env: %v", d)
	}
	return req, nil
}

// ValidateConfig checks the job's registration as the reaper would, so a
// bad repo, ref, glob or variable name fails the plan, naming the attribute.
func (r *jobResource) ValidateConfig(ctx context.Context, req resource.ValidateConfigRequest, resp *resource.ValidateConfigResponse) {
	var m jobModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() || !known(m.Repo) || !known(m.Ref) || !known(m.Task) || !known(m.Timeout) ||
		!known(m.Artifacts) || !known(m.Env) {
		return
	}
	if m.Timeout.IsNull() {
		m.Timeout = types.StringValue(defaultJobTimeout)
	}
	rr, err := m.registerRequest(ctx, "")
	if err != nil {
		return // unknown elements
	}
	_, _, err = rr.Normalize()
	fields := job.FieldErrors(err)
	if err != nil && len(fields) == 0 {
		resp.Diagnostics.AddError("Invalid job", err.Error()+".")
	}
	for _, fe := range fields {
		if _, perr := time.ParseDuration(rr.Timeout); fe.Field == "timeout" && perr != nil {
			continue // the attribute's own validator says it is no duration
		}
		resp.Diagnostics.AddAttributeError(fieldPath(fe.Field), "Invalid job", fe.Error()+".")
	}
}

// fieldPath maps a registration field ("env.FOO", "artifacts[2]") to the
// attribute it comes from.
func fieldPath(field string) path.Path {
	for _, name := range []string{"repo", "ref", "task", "timeout", "artifacts", "env"} {
		if len(field) >= len(name) && field[:len(name)] == name {
			return path.Root(name)
		}
	}
	return path.Root("repo")
}

// ModifyPlan checks, while planning a new job, that its sandbox can be
// planned (template or profile, sizes), and that the reaper is configured.
func (r *jobResource) ModifyPlan(ctx context.Context, req resource.ModifyPlanRequest, resp *resource.ModifyPlanResponse) {
	if req.Plan.Raw.IsNull() || r.data == nil {
		return
	}
	var plan jobModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	if resp.Diagnostics.HasError() {
		return
	}
	if req.State.Raw.IsNull() {
		r.data.reaperClient(&resp.Diagnostics)
		// egress is planned from the configuration, else the profile.
		var cfg jobModel
		if d := req.Config.Get(ctx, &cfg); d.HasError() {
			resp.Diagnostics.Append(d...)
			return
		}
		plan.Egress = cfg.Egress
		sb, diags := r.sandboxPlan(plan)
		resp.Diagnostics.Append(diags...)
		if diags.HasError() {
			return
		}
		resp.Diagnostics.Append(checkSecrets(ctx, req.Config, sb.SecretsRecipient)...)
		plan.Egress = sb.Egress
		resp.Diagnostics.Append(resp.Plan.Set(ctx, &plan)...)
		return
	}
	// wait is the only argument changed in place (and, after an import,
	// those the import could not read); the rest replace.
	var st jobModel
	resp.Diagnostics.Append(req.State.Get(ctx, &st)...)
	plan.SSHCommand = st.SSHCommand
	rec, diags := jobImport(ctx, req.Private)
	resp.Diagnostics.Append(diags...)
	if rec != nil {
		var cfg jobModel
		resp.Diagnostics.Append(req.Config.Get(ctx, &cfg)...)
		if resp.Diagnostics.HasError() {
			return
		}
		replace, diags := r.planImported(ctx, *rec, cfg, &plan, &st)
		resp.Diagnostics.Append(diags...)
		resp.RequiresReplace = append(resp.RequiresReplace, replace...)
	}
	resp.Diagnostics.Append(resp.Plan.Set(ctx, &plan)...)
}

// Update records what changes in place: wait, which only matters while
// creating, a new spelling of timeout, and after an import the arguments
// the import could not read. The job itself is not touched.
func (r *jobResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	var plan, st jobModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	resp.Diagnostics.Append(req.State.Get(ctx, &st)...)
	if resp.Diagnostics.HasError() {
		return
	}
	st.Wait, st.Timeout = plan.Wait, plan.Timeout
	// Outside an import these equal the state's: a change replaces the job.
	st.TemplateVMID, st.Profile, st.Node = plan.TemplateVMID, plan.Profile, plan.Node
	st.Cores, st.Memory, st.DiskSize = plan.Cores, plan.Memory, plan.DiskSize
	st.SSHAuthorizedKeys, st.WorkspaceID, st.Env = plan.SSHAuthorizedKeys, plan.WorkspaceID, plan.Env
	st.Egress, st.EgressAllow = plan.Egress, plan.EgressAllow
	st.SecretsRecipient, st.SecretsVersion = plan.SecretsRecipient, plan.SecretsVersion
	resp.Diagnostics.Append(setJobImport(ctx, resp.Private, nil)...)
	resp.Diagnostics.Append(resp.State.Set(ctx, &st)...)
}
