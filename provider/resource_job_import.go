package provider

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/int64planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/listplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/mapplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/agentlab/terraform-provider-agentlab/internal/job"
)

// Importing a job: the reaper records repo, ref, task, timeout, artifacts,
// the names of env and keep_sandbox, which the import reads back. The rest
// (the sandbox's template, profile, sizes, keys, workspace, egress, the env
// values, secrets settings) only the configuration knows: the import leaves
// them null, and the first apply after it records the configuration's
// values in place, without running the job again, once the env names match.

var _ resource.ResourceWithImportState = (*jobResource)(nil)

// jobPrivateImported is the key of the job's private state that marks a
// job imported and not yet applied; its value is an importRecord.
const jobPrivateImported = "imported"

// importRecord is what an import keeps in private state for the first plan.
type importRecord struct {
	// EnvKeys are the names of the job's env, sorted, as the reaper has them.
	EnvKeys []string `json:"env_keys"`
}

// jobImport returns the job's import record, nil when the job was not
// imported (or has been applied since).
func jobImport(ctx context.Context, p privateGetter) (*importRecord, diag.Diagnostics) {
	if p == nil {
		return nil, nil
	}
	b, diags := p.GetKey(ctx, jobPrivateImported)
	if diags.HasError() || len(b) == 0 {
		return nil, diags
	}
	var rec importRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return &importRecord{}, diags
	}
	return &rec, diags
}

// setJobImport stores rec in private state; nil removes it.
func setJobImport(ctx context.Context, p privateSetter, rec *importRecord) diag.Diagnostics {
	if rec == nil {
		return p.SetKey(ctx, jobPrivateImported, nil)
	}
	b, _ := json.Marshal(rec) // a struct of strings always encodes
	return p.SetKey(ctx, jobPrivateImported, b)
}

// ImportState accepts a job ID; Read then fills what the reaper records.
func (r *jobResource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	if !job.ValidID(req.ID) {
		resp.Diagnostics.AddError("Invalid import ID",
			fmt.Sprintf("%q is %s. Import a job by its ID as agentlab-reaper jobs lists it, for example: "+
				"terraform import agentlab_job.example job-5f0c2a9e41d87b36", req.ID, job.ErrInvalidID))
		return
	}
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("id"), req.ID)...)
	resp.Diagnostics.Append(setJobImport(ctx, resp.Private, &importRecord{})...)
}

// applyImported fills m, a state just imported, with the arguments the
// reaper records for j, spelled as a configuration would write them.
func applyImported(m *jobModel, j job.Job) {
	m.Repo, m.Ref, m.Task = types.StringValue(j.Repo), types.StringValue(j.Ref), types.StringValue(j.Task)
	m.Timeout = types.StringValue(j.Timeout)
	if d, err := time.ParseDuration(j.Timeout); err == nil {
		m.Timeout = types.StringValue(formatDuration(d))
	}
	m.Artifacts = types.ListNull(types.StringType)
	if len(j.ArtifactsGlobs) > 0 {
		m.Artifacts = stringList(j.ArtifactsGlobs)
	}
	m.KeepSandbox = types.BoolValue(j.KeepSandbox)
	m.Wait = types.BoolValue(true)
	// Not recorded by the reaper: the first apply takes the configuration's.
	m.Env = types.MapNull(types.StringType)
	m.EgressAllow = types.ListNull(types.StringType)
	m.SSHAuthorizedKeys = types.ListNull(types.StringType)
}

// planImported plans the first apply after an import: the env names must be
// the job's (else a new job runs), and the attributes the import could not
// read take the configuration's values in place. It says which in a
// warning. It returns the paths that force a new job.
func (r *jobResource) planImported(ctx context.Context, rec importRecord, cfg jobModel, plan, st *jobModel) (path.Paths, diag.Diagnostics) {
	var diags diag.Diagnostics
	id := st.ID.ValueString()
	// UseStateForUnknown kept the import's null: plan egress as a new job's.
	if st.Egress.IsNull() && cfg.Egress.IsNull() {
		p := *plan
		p.Egress = cfg.Egress
		if sb, d := r.sandboxPlan(p); !d.HasError() {
			plan.Egress = sb.Egress
		}
	}
	if plan.Env.IsUnknown() {
		return nil, diags
	}
	env := map[string]string{}
	diags.Append(plan.Env.ElementsAs(ctx, &env, false)...)
	if keys := job.EnvKeys(env); !slices.Equal(keys, rec.EnvKeys) {
		diags.AddAttributeWarning(path.Root("env"), "Imported job ran with other env",
			fmt.Sprintf("Job %s ran with env names [%s]; the configuration sets [%s]. A new job runs with the configuration.",
				id, strings.Join(rec.EnvKeys, ", "), strings.Join(keys, ", ")))
		// No attribute of state differs where env does not: a new id
		// forces the new job.
		plan.ID = types.StringUnknown()
		return path.Paths{path.Root("id")}, diags
	}
	var adopted []string
	for _, a := range []struct {
		name        string
		state, plan interface{ IsNull() bool }
	}{
		{"template_vmid", st.TemplateVMID, plan.TemplateVMID}, {"profile", st.Profile, plan.Profile},
		{"node", st.Node, plan.Node}, {"cores", st.Cores, plan.Cores}, {"memory", st.Memory, plan.Memory},
		{"disk_size", st.DiskSize, plan.DiskSize}, {"ssh_authorized_keys", st.SSHAuthorizedKeys, plan.SSHAuthorizedKeys},
		{"workspace_id", st.WorkspaceID, plan.WorkspaceID}, {"env", st.Env, plan.Env}, {"egress", st.Egress, plan.Egress},
		{"egress_allow", st.EgressAllow, plan.EgressAllow}, {"secrets_recipient", st.SecretsRecipient, plan.SecretsRecipient},
		{"secrets_version", st.SecretsVersion, plan.SecretsVersion},
	} {
		if a.state.IsNull() && !a.plan.IsNull() {
			adopted = append(adopted, a.name)
		}
	}
	if len(adopted) > 0 {
		diags.AddWarning("Recording the configuration of an imported job",
			fmt.Sprintf("The reaper does not record %s of job %s, so the import could not read them. This apply "+
				"records the configuration's values in state without running the job again; the env names match "+
				"the job's, their values cannot be compared.", strings.Join(adopted, ", "), id))
	}
	return nil, diags
}

// adoptIfImported decides the replacement of an argument the import cannot
// read: an imported job takes the configuration's value in place; any
// other change runs a new job.
func adoptIfImported(ctx context.Context, p privateGetter, stateNull bool) (replace bool, diags diag.Diagnostics) {
	rec, diags := jobImport(ctx, p)
	return rec == nil || !stateNull, diags
}

// adoptString, adoptInt, adoptList and adoptMap are RequiresReplace for the
// arguments the import cannot read (see adoptIfImported).
func adoptString() planmodifier.String {
	return stringplanmodifier.RequiresReplaceIf(func(ctx context.Context, req planmodifier.StringRequest, resp *stringplanmodifier.RequiresReplaceIfFuncResponse) {
		resp.RequiresReplace, resp.Diagnostics = adoptIfImported(ctx, req.Private, req.StateValue.IsNull())
	}, adoptDescription, adoptDescription)
}

func adoptInt() planmodifier.Int64 {
	return int64planmodifier.RequiresReplaceIf(func(ctx context.Context, req planmodifier.Int64Request, resp *int64planmodifier.RequiresReplaceIfFuncResponse) {
		resp.RequiresReplace, resp.Diagnostics = adoptIfImported(ctx, req.Private, req.StateValue.IsNull())
	}, adoptDescription, adoptDescription)
}

func adoptList() planmodifier.List {
	return listplanmodifier.RequiresReplaceIf(func(ctx context.Context, req planmodifier.ListRequest, resp *listplanmodifier.RequiresReplaceIfFuncResponse) {
		resp.RequiresReplace, resp.Diagnostics = adoptIfImported(ctx, req.Private, req.StateValue.IsNull())
	}, adoptDescription, adoptDescription)
}

func adoptMap() planmodifier.Map {
	return mapplanmodifier.RequiresReplaceIf(func(ctx context.Context, req planmodifier.MapRequest, resp *mapplanmodifier.RequiresReplaceIfFuncResponse) {
		resp.RequiresReplace, resp.Diagnostics = adoptIfImported(ctx, req.Private, req.StateValue.IsNull())
	}, adoptDescription, adoptDescription)
}

const adoptDescription = "Changing it runs a new job; after an import, the first apply records the configured value in place."

// replaceTimeout runs a new job when timeout changes its duration; a new
// spelling of the same duration ("1800s" for "30m") is recorded in place.
func replaceTimeout() planmodifier.String {
	return stringplanmodifier.RequiresReplaceIf(func(_ context.Context, req planmodifier.StringRequest, resp *stringplanmodifier.RequiresReplaceIfFuncResponse) {
		a, err1 := time.ParseDuration(req.StateValue.ValueString())
		b, err2 := time.ParseDuration(req.PlanValue.ValueString())
		resp.RequiresReplace = err1 != nil || err2 != nil || a != b
	}, "Changing the duration runs a new job.", "Changing the duration runs a new job.")
}
