package provider

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/hashicorp/terraform-plugin-framework-timeouts/resource/timeouts"
	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-log/tflog"

	"github.com/agentlab/terraform-provider-agentlab/internal/cloudinit"
	"github.com/agentlab/terraform-provider-agentlab/internal/job"
	"github.com/agentlab/terraform-provider-agentlab/internal/lease"
	"github.com/agentlab/terraform-provider-agentlab/internal/profile"
	"github.com/agentlab/terraform-provider-agentlab/internal/pve"
	"github.com/agentlab/terraform-provider-agentlab/internal/workspace"
	"github.com/agentlab/terraform-provider-agentlab/reaper/api"
)

// jobBootAllowance is how long waiting for a job allows beyond its timeout,
// for the sandbox to boot and the runner to clone and upload.
const jobBootAllowance = 15 * time.Minute

// jobLeaseMargin is how much longer than its timeout a job's sandbox lease
// lasts: the reaper ends the sandbox when the job ends, the lease only
// catches a job the reaper lost track of.
const jobLeaseMargin = time.Hour

// sandboxPlan is the sandbox a job runs in, planned exactly as an
// agentlab_sandbox with the job's sizing attributes would be.
func (r *jobResource) sandboxPlan(m jobModel) (sandboxModel, diag.Diagnostics) {
	var diags diag.Diagnostics
	timeout, err := time.ParseDuration(m.Timeout.ValueString())
	if err != nil {
		timeout = job.DefaultTimeout
	}
	cfg := sandboxModel{
		Name: types.StringNull(), TemplateVMID: m.TemplateVMID, Node: m.Node, Cores: m.Cores, Memory: m.Memory,
		DiskSize: m.DiskSize, FullClone: types.BoolNull(), Storage: types.StringNull(), Bridge: types.StringNull(),
		Firewall: types.BoolNull(), SSHAuthorizedKeys: m.SSHAuthorizedKeys,
		Egress: m.Egress, EgressAllow: m.EgressAllow,
		TTL: types.StringValue(formatDuration(timeout + jobLeaseMargin)), MaxTTL: types.StringNull(),
		OnExpiry: types.StringNull(), RenewOnApply: types.BoolValue(false), RebootOnChange: types.BoolNull(),
		WaitForIP: types.BoolValue(false), Profile: m.Profile, Owner: types.StringNull(),
		Tags: types.SetNull(types.StringType), ISOStorage: types.StringNull(), WorkspaceID: m.WorkspaceID,
		ID: types.StringUnknown(), VMID: types.Int64Unknown(), IPAddress: types.StringUnknown(),
		LeaseExpiresAt: types.StringUnknown(), Status: types.StringUnknown(),
		SSHUser: types.StringUnknown(), SSHCommand: types.StringUnknown(),
		Secrets: types.MapNull(types.StringType), SecretsRecipient: m.SecretsRecipient, SecretsVersion: types.StringNull(),
		Timeouts: timeouts.Value{Object: types.ObjectNull(map[string]attr.Type{
			"create": types.StringType, "read": types.StringType, "update": types.StringType, "delete": types.StringType})},
	}
	in := planInput{Config: cfg, Proposed: cfg, DefaultNode: r.data.settings.Node,
		DefaultOwner: r.data.settings.TokenUser, Now: r.data.clock.Now()}
	switch {
	case m.Profile.IsUnknown():
		in.ProfileUnknown = true
	case !m.Profile.IsNull():
		p, err := profile.Load(r.data.settings.ProfilesDir, m.Profile.ValueString())
		if err != nil {
			diags.Append(profileDiagnostic(r.data.settings.ProfilesDir, m.Profile.ValueString(), err))
			return sandboxModel{}, diags
		}
		in.Profile = &p
	}
	out, d := planSandbox(in)
	diags.Append(d...)
	return out.Plan, diags
}

// Create registers the job, creates its sandbox, tells the reaper the VM
// and, unless wait is false, waits for the job to end.
func (r *jobResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	if !configuredData(r.data, &resp.Diagnostics) {
		return
	}
	rc := r.data.reaperClient(&resp.Diagnostics)
	var plan jobModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	if resp.Diagnostics.HasError() {
		return
	}
	sb, diags := r.sandboxPlan(plan)
	resp.Diagnostics.Append(diags...)
	if resp.Diagnostics.HasError() {
		return
	}
	// Sealed before the job is registered: a job whose secrets cannot be
	// encrypted never starts.
	secretSeed, diags := sealedSeed(ctx, req.Config, sb.SecretsRecipient)
	resp.Diagnostics.Append(diags...)
	if resp.Diagnostics.HasError() {
		return
	}
	rr, err := plan.registerRequest(ctx, r.data.settings.TokenUser)
	if err != nil {
		resp.Diagnostics.AddError("Invalid job", err.Error()+".")
		return
	}
	reg, err := rc.RegisterJob(ctx, rr)
	if err != nil {
		resp.Diagnostics.AddError("Registering the job with the reaper failed", reaperErrorText(err))
		return
	}
	id := reg.Job.ID
	sb.Name = types.StringValue(id) // the VM is named after its job
	wsVolume := workspaceVolume(plan.WorkspaceID)
	guestURL := r.data.settings.ReaperGuestURL
	extras := sandboxExtras{
		JobID:       id,
		Seed:        chainSeed(secretSeed, func(c *cloudinit.Config) { jobSeed(c, guestURL, reg.BootstrapToken) }),
		AwaitHolder: func(ctx context.Context, holder pve.VMRef) error { return r.awaitHolder(ctx, rc, holder) },
		Cloned: func(ctx context.Context, ref pve.VMRef) error {
			if _, err := rc.SetJobStatus(ctx, id, job.StatusProvisioning); err != nil {
				return fmt.Errorf("telling the reaper job %s is provisioning: %w", id, err)
			}
			if _, err := rc.SetJobSandbox(ctx, id, job.SandboxRequest{Node: ref.Node, VMID: ref.VMID, Workspace: wsVolume}); err != nil {
				return fmt.Errorf("telling the reaper job %s runs in VM %s: %w", id, ref, err)
			}
			return nil
		},
	}
	if !plan.WorkspaceID.IsNull() {
		r.waitWorkspaceFree(ctx, rc, plan.WorkspaceID.ValueString())
	}
	sr := &sandboxResource{data: r.data}
	out, diags := sr.create(ctx, sb, extras)
	resp.Diagnostics.Append(diags...)
	if diags.HasError() {
		// The job cannot run: end it, so the reaper also removes a VM the
		// cleanup could not.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		defer cancel()
		why := "its sandbox could not be made"
		if errs := diags.Errors(); len(errs) > 0 {
			why += ": " + errs[0].Summary()
		}
		if _, err := rc.CancelJob(cctx, id, why); err != nil && !errors.Is(err, job.ErrNotFound) {
			resp.Diagnostics.AddWarning("Job left registered",
				fmt.Sprintf("Cancelling job %s after its sandbox failed did not work: %s. The reaper ends it as lost "+
					"once it misses its heartbeats.", id, err))
		}
		return
	}
	// The VM is started: the job boots. The seed, which holds the bootstrap
	// and heartbeat tokens and the sealed secrets, is the reaper's to
	// retire: it ejects and deletes it at the runner's first call, at the
	// end of the guest's first boot (or with the VM, should the guest never
	// call), so the apply neither polls the guest agent for it nor races
	// the reaper to the same volume.
	j, err := rc.SetJobStatus(ctx, id, job.StatusBooting)
	if err != nil && !errors.Is(err, job.ErrTransition) {
		resp.Diagnostics.AddWarning("Job status not updated",
			fmt.Sprintf("Telling the reaper that job %s is booting failed: %s. The job runs anyway.", id, err))
	}
	state := plan
	state.ID = types.StringValue(id)
	state.VMID = out.State.VMID
	if err == nil {
		applyJob(&state, j)
	} else {
		applyJob(&state, reg.Job)
	}
	if plan.Wait.ValueBool() {
		timeout, _ := time.ParseDuration(plan.Timeout.ValueString())
		j, err := r.waitJob(ctx, rc, id, timeout+jobBootAllowance)
		switch {
		case err == nil:
			applyJob(&state, j)
		case errors.Is(err, job.ErrWaitExpired), ctx.Err() != nil:
			resp.Diagnostics.AddWarning("Job still running",
				fmt.Sprintf("Job %s had not ended after its timeout plus %s (or the apply was interrupted): %s. It is "+
					"saved in state as it stands; a refresh shows its outcome.", id, jobBootAllowance, err))
			if j.ID != "" {
				applyJob(&state, j)
			}
		default:
			resp.Diagnostics.AddWarning("Job status unknown",
				fmt.Sprintf("Reading job %s from the reaper failed: %s. A refresh shows its outcome.", id, reaperErrorText(err)))
		}
	}
	r.setJobSSH(ctx, &state, out.State.Node.ValueString())
	resp.Diagnostics.Append(resp.State.Set(ctx, &state)...)
}

// workspaceFreeWait bounds how long a job waits for the sandbox of an ended
// job to let go of its workspace.
const workspaceFreeWait = 3 * time.Minute

// Jobs that share a workspace run one after the other, in whatever order
// Terraform starts them: a job whose workspace another job's sandbox holds
// waits until that job has ended and the reaper has destroyed its sandbox
// (before it clones its own, and again when two jobs reach the attach at
// once). Any other holder, a sandbox that is not a job's or one kept with
// keep_sandbox, is left for the attach to report.

// waitWorkspaceFree waits while workspace id is held by another job's
// sandbox (see awaitHolder).
func (r *jobResource) waitWorkspaceFree(ctx context.Context, rc *api.Client, id string) {
	c := r.data.client
	ws, err := sandboxWorkspace(ctx, c, id)
	if err != nil {
		return
	}
	atts, err := workspace.Attachments(ctx, c, ws)
	if err != nil {
		return
	}
	for _, a := range atts {
		if pve.IsDriveKey(a.Key) && r.awaitJobSandbox(ctx, rc, a.VM, a.Config) != nil {
			return
		}
	}
}

// errNotJobHolder: the VM that holds the workspace is not the sandbox of a
// job that will let it go.
var errNotJobHolder = errors.New("the workspace's holder is not the sandbox of a job that ends")

// awaitHolder waits until holder, a VM that holds a workspace this job
// needs, is gone: it must be the sandbox of a job (its metadata says which)
// not kept with keep_sandbox; the wait lasts until that job ends (at most
// its timeout and the boot allowance) and the reaper destroys its sandbox
// (at most workspaceFreeWait more). It returns nil once the VM is gone.
func (r *jobResource) awaitHolder(ctx context.Context, rc *api.Client, holder pve.VMRef) error {
	cfg, err := r.data.client.Config(ctx, holder)
	if pve.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	return r.awaitJobSandbox(ctx, rc, holder, cfg)
}

// awaitJobSandbox is awaitHolder with the holder's config already read
// (cfg), as listing the workspace's attachments reads it.
func (r *jobResource) awaitJobSandbox(ctx context.Context, rc *api.Client, holder pve.VMRef, cfg pve.VMConfig) error {
	c := r.data.client
	m, err := lease.Decode(cfg.Description())
	if err != nil || m.JobID == "" {
		return errNotJobHolder
	}
	j, err := rc.Job(ctx, m.JobID)
	if err != nil {
		return err
	}
	if !j.Status.Ended() {
		limit, err := time.ParseDuration(j.Timeout)
		if err != nil {
			limit = job.MaxTimeout
		}
		tflog.Info(ctx, "waiting for the job whose sandbox holds the workspace", map[string]any{"job": j.ID, "vmid": holder.VMID})
		if j, err = r.waitJob(ctx, rc, j.ID, limit+jobBootAllowance); err != nil {
			return err
		}
	}
	if j.KeepSandbox {
		return errNotJobHolder
	}
	clk := r.data.waitClock()
	deadline := clk.Now().Add(workspaceFreeWait)
	for {
		_, err := c.Config(ctx, holder)
		switch {
		case pve.IsNotFound(err):
			return nil
		case err != nil:
			return err
		}
		remaining := deadline.Sub(clk.Now())
		if remaining <= 0 {
			return fmt.Errorf("the sandbox of job %s still holds the workspace %s after the job ended", j.ID, workspaceFreeWait)
		}
		t := clk.NewTimer(min(time.Second, remaining))
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

func (r *jobResource) waitJob(ctx context.Context, rc *api.Client, id string, limit time.Duration) (job.Job, error) {
	return job.Wait(ctx, rc, id, job.WaitOptions{Limit: limit, Clock: r.data.waitClock(),
		OnChange: func(j job.Job) {
			tflog.Info(ctx, "job status", map[string]any{"job": id, "status": string(j.Status), "reason": j.Reason})
		},
		// An unreachable reaper or a 5xx may pass; a refused token or a bad
		// request will not.
		Retry: func(err error) bool {
			var ae *api.Error
			return !errors.As(err, &ae) || ae.Status >= 500 || ae.Status == http.StatusTooManyRequests
		},
	})
}

// Read refreshes the job from the reaper. A job the reaper no longer knows
// (its retention removed it) leaves state, so the next apply runs it again.
func (r *jobResource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	if !configuredData(r.data, &resp.Diagnostics) {
		return
	}
	rc := r.data.reaperClient(&resp.Diagnostics)
	if rc == nil {
		return
	}
	var st jobModel
	resp.Diagnostics.Append(req.State.Get(ctx, &st)...)
	if resp.Diagnostics.HasError() {
		return
	}
	rec, diags := jobImport(ctx, req.Private)
	resp.Diagnostics.Append(diags...)
	j, err := rc.Job(ctx, st.ID.ValueString())
	if errors.Is(err, job.ErrNotFound) && rec != nil {
		resp.Diagnostics.AddError("Cannot import: no such job",
			fmt.Sprintf("The reaper has no job %s: check the ID with agentlab-reaper jobs (jobs past the reaper's "+
				"jobs.retention are removed).", st.ID.ValueString()))
		return
	}
	if errors.Is(err, job.ErrNotFound) {
		resp.State.RemoveResource(ctx)
		return
	}
	if err != nil {
		resp.Diagnostics.AddError("Cannot read the job", fmt.Sprintf("Reading job %s from the reaper failed: %s", st.ID.ValueString(), reaperErrorText(err)))
		return
	}
	if rec != nil && st.Repo.IsNull() {
		applyImported(&st, j)
		keys := slices.Clone(j.EnvKeys)
		slices.Sort(keys)
		resp.Diagnostics.Append(setJobImport(ctx, resp.Private, &importRecord{EnvKeys: keys})...)
	}
	applyJob(&st, j)
	r.setJobSSH(ctx, &st, j.Node)
	resp.Diagnostics.Append(resp.State.Set(ctx, &st)...)
}

// Delete cancels a job still running (the reaper then destroys its sandbox)
// and destroys a sandbox kept with keep_sandbox.
func (r *jobResource) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	if !configuredData(r.data, &resp.Diagnostics) {
		return
	}
	rc := r.data.reaperClient(&resp.Diagnostics)
	if rc == nil {
		return
	}
	var st jobModel
	resp.Diagnostics.Append(req.State.Get(ctx, &st)...)
	if resp.Diagnostics.HasError() {
		return
	}
	id := st.ID.ValueString()
	j, err := rc.CancelJob(ctx, id, "the agentlab_job was destroyed or replaced")
	switch {
	case errors.Is(err, job.ErrNotFound):
		j = job.Job{Node: st.nodeOf(), VMID: int(st.VMID.ValueInt64()), ID: id}
	case err != nil:
		resp.Diagnostics.AddError("Cancelling the job failed", fmt.Sprintf("Cancelling job %s failed: %s", id, reaperErrorText(err)))
		return
	}
	if j.VMID == 0 || j.Node == "" {
		return
	}
	// A kept (or left) sandbox of this job goes with it; a VMID reused by
	// something else is left alone.
	ref := pve.VMRef{Node: j.Node, VMID: j.VMID}
	c := r.data.client
	cfg, err := c.Config(ctx, ref)
	if pve.IsNotFound(err) {
		return
	}
	if err != nil {
		resp.Diagnostics.AddError("Cannot read the job's sandbox", fmt.Sprintf("Reading VM %s failed: %s.", ref, err))
		return
	}
	m, merr := lease.Decode(cfg.Description())
	if !lease.Owned(cfg.Tags()) || merr != nil || m.JobID != id {
		return
	}
	sr := &sandboxResource{data: r.data}
	isoStorage := defaultISOStorage
	if d, ok := cfg.Drive(isoDrive); ok && d.Storage != "" {
		isoStorage = d.Storage
	}
	if err := sr.cleanup(ctx, ref, isoStorage); err != nil {
		resp.Diagnostics.AddError("Destroying the job's sandbox failed",
			fmt.Sprintf("Job %s is cancelled, but destroying its sandbox %s failed: %s. Run terraform destroy again.", id, ref, err))
	}
}

// nodeOf is the job's node as far as state tells: none is recorded, so the
// reaper's answer is the only source; "" when unknown.
func (m jobModel) nodeOf() string {
	if m.Node.IsNull() || m.Node.IsUnknown() {
		return ""
	}
	return m.Node.ValueString()
}

// applyJob writes what the reaper says about a job into m.
func applyJob(m *jobModel, j job.Job) {
	m.Status = types.StringValue(string(j.Status))
	m.Reason = types.StringValue(j.Reason)
	m.ExitCode = types.Int64Null()
	if j.ExitCode != nil {
		m.ExitCode = types.Int64Value(int64(*j.ExitCode))
	}
	m.StartedAt = timeValue(j.StartedAt)
	m.FinishedAt = timeValue(j.FinishedAt)
	m.LogTail = types.StringValue(j.LogTail)
	if j.VMID != 0 {
		m.VMID = types.Int64Value(int64(j.VMID))
	}
	if m.VMID.IsUnknown() {
		m.VMID = types.Int64Null()
	}
	m.ArtifactList = artifactList(j.Artifacts)
	m.SSHUser = types.StringValue(cloudinit.DefaultUser)
}

// artifactList converts artifacts to the artifact_list value.
func artifactList(as []job.Artifact) types.List {
	vals := make([]attr.Value, 0, len(as))
	for _, a := range as {
		vals = append(vals, types.ObjectValueMust(artifactObjectType.AttrTypes, map[string]attr.Value{
			"name": types.StringValue(a.Name), "size": types.Int64Value(a.Size), "sha256": types.StringValue(a.SHA256),
		}))
	}
	return types.ListValueMust(artifactObjectType, vals)
}

// timeValue is t in RFC 3339 (UTC), null for the zero time.
func timeValue(t time.Time) types.String {
	if t.IsZero() {
		return types.StringNull()
	}
	return types.StringValue(t.UTC().Format(time.RFC3339))
}

// setJobSSH fills ssh_command from one look at the job sandbox's guest
// agent, when the sandbox exists and runs; null otherwise. node is the
// sandbox's node as the reaper or the create knows it ("" when unknown).
// A job that ended without keep_sandbox has no sandbox to look at: the
// reaper destroys it at once.
func (r *jobResource) setJobSSH(ctx context.Context, m *jobModel, node string) {
	m.SSHUser = types.StringValue(cloudinit.DefaultUser)
	m.SSHCommand = types.StringNull()
	if node == "" {
		node = m.nodeOf()
	}
	if m.VMID.IsNull() || m.VMID.IsUnknown() {
		return
	}
	if job.Status(m.Status.ValueString()).Ended() && !m.KeepSandbox.ValueBool() {
		return
	}
	ref := pve.VMRef{Node: node, VMID: int(m.VMID.ValueInt64())}
	if node == "" {
		e, err := r.data.client.FindVM(ctx, ref.VMID)
		if err != nil {
			return
		}
		ref = e.Ref()
	}
	cfg, err := r.data.client.Config(ctx, ref)
	if err != nil {
		return
	}
	if meta, err := lease.Decode(cfg.Description()); err != nil || meta.JobID != m.ID.ValueString() {
		return
	}
	ifaces, err := r.data.client.AgentInterfaces(ctx, ref)
	if err != nil {
		return
	}
	if ip := firstIPv4(ifaces, cfg); ip.IsValid() {
		m.SSHCommand = types.StringValue(sshCommand(ip.String()))
	}
}

// reaperErrorText explains a failed control API call.
func reaperErrorText(err error) string {
	var ae *api.Error
	switch {
	case errors.As(err, &ae) && ae.Status == 401:
		return fmt.Sprintf("the reaper refused the token (%s). Set reaper_token (or %s) to the contents of the "+
			"reaper's control.token_file.", err, envReaperToken)
	case errors.As(err, &ae):
		return fmt.Sprintf("the reaper answered %d: %s.", ae.Status, err)
	}
	return fmt.Sprintf("%s. Check reaper_url (or %s) and that agentlab-reaper runs.", err, envReaperURL)
}
