package provider

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/agentlab/terraform-provider-agentlab/internal/cloudinit"
	"github.com/agentlab/terraform-provider-agentlab/internal/egressrule"
	"github.com/agentlab/terraform-provider-agentlab/internal/lease"
	"github.com/agentlab/terraform-provider-agentlab/internal/profile"
	"github.com/agentlab/terraform-provider-agentlab/internal/pve"
	"github.com/agentlab/terraform-provider-agentlab/internal/volume"
	"github.com/agentlab/terraform-provider-agentlab/internal/workspace"
)

// cleanupTimeout bounds the removal of a half-made sandbox. It runs on a
// fresh context, since the request's may be cancelled or expired.
const cleanupTimeout = 3 * time.Minute

// isoDrive is the drive the cloud-init seed ISO is attached as.
const isoDrive = "ide2"

// Create clones the template and builds the sandbox: clone (with the
// metadata block in its description), cloud-init ISO, configure, resize,
// start, and optionally wait for the IP. A failure after the clone destroys
// the half-made VM and its ISO; when that fails too, the VM is saved to state
// so Terraform marks it tainted and destroys it on the next apply. A clone
// that failed without an answer always leaves its VMID in state (see
// identify): the provider never forgets a VMID whose VM may exist.
func (r *sandboxResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	if !r.configured(&resp.Diagnostics) {
		return
	}
	var plan sandboxModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	if resp.Diagnostics.HasError() {
		return
	}
	timeout, diags := plan.Timeouts.Create(ctx, defaultCreateTimeout)
	resp.Diagnostics.Append(diags...)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	seed, diags := sealedSeed(ctx, req.Config, plan.SecretsRecipient)
	resp.Diagnostics.Append(diags...)
	if resp.Diagnostics.HasError() {
		return
	}
	out, diags := r.create(ctx, plan, sandboxExtras{Seed: seed})
	resp.Diagnostics.Append(diags...)
	if diags.HasError() && !out.Tainted {
		return
	}
	// The seed does not outlive first boot. Sandboxes with secrets wait for
	// it; the others retire it when wait_for_ip has seen the guest boot.
	if !diags.HasError() && (seed != nil || plan.WaitForIP.ValueBool()) {
		ref := pve.VMRef{Node: out.State.Node.ValueString(), VMID: int(out.State.VMID.ValueInt64())}
		retire := retireSeedAfterBoot
		if plan.WaitForIP.ValueBool() {
			retire = retireKnownSeed // provision saw the address already
		}
		if err := retire(ctx, r.data.client, ref, plan.ISOStorage.ValueString()); err != nil {
			resp.Diagnostics.AddWarning("Seed ISO not removed",
				fmt.Sprintf("The sandbox runs, but its cloud-init ISO (with its sealed secrets and heartbeat token) "+
					"could not be removed after first boot: %s. The next refresh tries again; the reaper deletes it "+
					"with the sandbox.", err))
		}
	}
	resp.Diagnostics.Append(resp.State.Set(ctx, &out.State)...)
	resp.Diagnostics.Append(setPrivateMeta(ctx, resp.Private, out.Meta)...)
	if out.CloneInFlight {
		resp.Diagnostics.Append(resp.Private.SetKey(ctx, privateCloneInFlight, []byte(`true`))...)
	}
}

// sandboxExtras is what a job adds to the sandbox it creates.
type sandboxExtras struct {
	// JobID goes into the sandbox's metadata block.
	JobID string
	// Seed, when set, adds to the cloud-init config (the job's bootstrap).
	Seed func(*cloudinit.Config)
	// Cloned, when set, is called once the VM exists, before it is set up;
	// an error fails the creation (and removes the VM).
	Cloned func(ctx context.Context, ref pve.VMRef) error
	// AwaitHolder, when set, is called when the workspace is held by
	// another VM: nil once that VM let go of it (the attach is tried
	// again), an error when it will not (the attach's error stands).
	AwaitHolder func(ctx context.Context, holder pve.VMRef) error
}

// createOutcome is the result of creating a sandbox.
type createOutcome struct {
	State sandboxModel
	Meta  lease.Metadata
	// Tainted is set when the creation failed but left a VM that could not
	// be removed (or may yet appear): State must be saved so Terraform
	// destroys it next time.
	Tainted bool
	// CloneInFlight records that the clone itself failed, so the VM may be
	// the clone's placeholder (see identify).
	CloneInFlight bool
}

// create makes the sandbox that plan describes. Both agentlab_sandbox and
// agentlab_job create their VMs through it.
func (r *sandboxResource) create(ctx context.Context, plan sandboxModel, x sandboxExtras) (createOutcome, diag.Diagnostics) {
	var diags diag.Diagnostics
	c := r.data.client

	// The template decides the source node and, by default, the target.
	// Its lookup is shared by the sandboxes this process creates (see
	// pve.Client.FindTemplate), and forgotten when a clone from it fails.
	tmplID := int(plan.TemplateVMID.ValueInt64())
	tmpl, err := c.FindTemplate(ctx, tmplID)
	switch {
	case pve.IsNotFound(err):
		diags.AddAttributeError(path.Root("template_vmid"), "Template not found",
			fmt.Sprintf("Proxmox VE has no VM %d. Set template_vmid (or the profile's template_vmid) to the VMID of "+
				"an existing template.", tmplID))
		return createOutcome{}, diags
	case err != nil:
		diags.AddError("Cannot look up the template", fmt.Sprintf("Looking up VM %d failed: %s.", tmplID, err))
		return createOutcome{}, diags
	case !tmpl.Template:
		diags.AddAttributeError(path.Root("template_vmid"), "Not a template",
			fmt.Sprintf("VM %d (%q) is not a template. Convert it first (qm template %d, or More > Convert to "+
				"template in the web interface), or use the VMID of a template.", tmplID, tmpl.Name, tmplID))
		return createOutcome{}, diags
	}
	node := tmpl.Node
	if known(plan.Node) && !plan.Node.IsNull() && plan.Node.ValueString() != "" {
		node = plan.Node.ValueString()
	}

	// The lease and its metadata are written by the clone request itself;
	// the tags follow in provision's config update.
	ttl, _ := time.ParseDuration(plan.TTL.ValueString())
	var maxTTL time.Duration
	if !plan.MaxTTL.IsNull() {
		maxTTL, _ = time.ParseDuration(plan.MaxTTL.ValueString())
	}
	l, err := lease.New(r.data.clock.Now(), ttl, maxTTL, lease.Action(plan.OnExpiry.ValueString()))
	if err != nil {
		diags.Append(leaseDiagnostic(err))
		return createOutcome{}, diags
	}
	// The heartbeat token reaches only the guest; the VM keeps its sha256.
	heartbeatToken, heartbeatSum, err := lease.NewHeartbeatToken()
	if err != nil {
		diags.AddError("Cannot create the sandbox's heartbeat token", err.Error()+".")
		return createOutcome{}, diags
	}
	meta := lease.Metadata{
		Owner:                plan.Owner.ValueString(),
		Profile:              plan.Profile.ValueString(),
		Nonce:                lease.NewNonce(),
		Lease:                l,
		HeartbeatTokenSHA256: heartbeatSum,
		JobID:                x.JobID,
		Workspace:            workspaceVolume(plan.WorkspaceID),
		Egress:               egressrule.Policy(plan.Egress.ValueString()),
	}
	diags.Append(plan.EgressAllow.ElementsAs(ctx, &meta.EgressAllow, false)...)
	if diags.HasError() {
		return createOutcome{}, diags
	}
	description, err := lease.Encode("", meta)
	if err != nil {
		diags.AddError("Cannot write the sandbox's metadata", err.Error()+".")
		return createOutcome{}, diags
	}
	meta.Version = lease.Version

	cloneReq := pve.CloneRequest{
		Node:        tmpl.Node,
		SourceVMID:  tmplID,
		Description: description,
		Nonce:       meta.Nonce,
		Full:        plan.FullClone.ValueBool(),
		Storage:     plan.Storage.ValueString(),
	}
	if known(plan.Name) && !plan.Name.IsNull() {
		cloneReq.Name = plan.Name.ValueString()
	}
	if node != tmpl.Node {
		cloneReq.TargetNode = node
	}
	ref, err := c.Clone(ctx, cloneReq)
	if err != nil {
		c.ForgetTemplate(tmplID) // it may have moved or gone: look again next time
		if !ref.IsZero() {
			// The clone may exist although the call failed: until the VM is
			// proved gone, its VMID stays in state.
			if cerr := r.cleanup(ctx, ref, plan.ISOStorage.ValueString()); cerr != nil {
				out := createOutcome{State: taintedState(plan, ref, meta, true), Meta: meta, Tainted: true, CloneInFlight: true}
				hint := ""
				if errors.Is(cerr, pve.ErrLocked) {
					hint = "\n\n" + unlockHint(ref, "")
				}
				diags.AddError("Cloning failed and the clone could not be removed",
					fmt.Sprintf("Cloning template %d failed: %s.\n\nRemoving the possibly half-made VM %s failed too: %s. "+
						"It is saved in state as tainted, so the next apply destroys it.%s", tmplID, err, ref, cerr, hint))
				return out, diags
			}
			// Nothing was there to remove, or it is removed; but a clone
			// request whose answer was lost may still create the VM after
			// the look. The VMID stays in state until a refresh finds it
			// gone (the refresh then drops it) or destroys what appeared.
			out := createOutcome{State: taintedState(plan, ref, meta, true), Meta: meta, Tainted: true, CloneInFlight: true}
			diags.AddError("Cloning the template failed",
				fmt.Sprintf("Cloning template %d on %s failed: %s.\n\nVM %s, which the clone may have started, was "+
					"removed or never existed. Its VMID stays in state as tainted until the next refresh confirms "+
					"it gone; the next apply creates the sandbox.", tmplID, tmpl.Node, err, ref))
			return out, diags
		}
		diags.AddError("Cloning the template failed",
			fmt.Sprintf("Cloning template %d on %s failed: %s.", tmplID, tmpl.Node, err))
		return createOutcome{}, diags
	}

	if x.Cloned != nil {
		err = x.Cloned(ctx, ref)
	}
	var state sandboxModel
	if err == nil {
		state, err = r.provision(ctx, ref, plan, meta, heartbeatToken, x)
	}
	if err != nil {
		if cerr := r.cleanup(ctx, ref, plan.ISOStorage.ValueString()); cerr != nil {
			diags.AddError("Creating the sandbox failed and it could not be removed",
				fmt.Sprintf("Setting up VM %s failed: %s.\n\nRemoving it failed too: %s. It is saved in state as "+
					"tainted, so the next apply destroys it (or run terraform destroy).", ref, err, cerr))
			return createOutcome{State: taintedState(plan, ref, meta, false), Meta: meta, Tainted: true}, diags
		}
		diags.AddError("Creating the sandbox failed",
			fmt.Sprintf("Setting up VM %s failed: %s.\n\nThe half-made VM and its cloud-init ISO were removed.", ref, err))
		return createOutcome{}, diags
	}
	return createOutcome{State: state, Meta: meta}, diags
}

// provision turns a fresh clone into a running sandbox and returns its state.
func (r *sandboxResource) provision(ctx context.Context, ref pve.VMRef, plan sandboxModel, meta lease.Metadata, heartbeatToken string, x sandboxExtras) (sandboxModel, error) {
	c := r.data.client
	cfg, err := c.Config(ctx, ref)
	if err != nil {
		return plan, fmt.Errorf("reading the clone's config: %w", err)
	}
	name := plan.Name.ValueString()
	if !known(plan.Name) || plan.Name.IsNull() {
		name = "agentlab-" + strconv.Itoa(ref.VMID)
	}
	nic, ok := cfg.NIC("net0")
	if !ok {
		return plan, errors.New("the template has no net0 network device; give it one (the MAC is generated per clone)")
	}
	nic.Bridge = plan.Bridge.ValueString()
	nic.Firewall = plan.Firewall.ValueBool()
	if model := r.profileNICModel(plan); model != "" {
		nic.Model = model
	}

	// The cloud-init seed, uploaded through the API as ISO content.
	var keys []string
	resp := plan.SSHAuthorizedKeys.ElementsAs(ctx, &keys, false)
	if resp.HasError() {
		return plan, fmt.Errorf("reading ssh_authorized_keys: %v", resp)
	}
	seedCfg := cloudinit.Config{
		InstanceID: "agentlab-" + strconv.Itoa(ref.VMID) + "-" + meta.Nonce,
		Hostname:   name,
		User:       cloudinit.User{SSHAuthorizedKeys: keys, Sudo: true},
		NIC:        cloudinit.NIC{MAC: nic.MAC},
		Heartbeat:  &cloudinit.Heartbeat{URL: r.data.settings.ReaperGuestURL, Token: heartbeatToken, ReportBoot: true},
		Workspace:  cloudinitWorkspace(plan.WorkspaceID),
	}
	if x.Seed != nil {
		x.Seed(&seedCfg)
	}
	seed, err := seedCfg.Render()
	if err != nil {
		return plan, fmt.Errorf("rendering cloud-init: %w", err)
	}
	iso, err := seed.ISO()
	if err != nil {
		return plan, fmt.Errorf("building the cloud-init iso: %w", err)
	}
	volid, err := c.UploadISO(ctx, ref.Node, plan.ISOStorage.ValueString(), volume.SeedISOName(ref.VMID), bytes.NewReader(iso), int64(len(iso)))
	if err != nil {
		return plan, fmt.Errorf("uploading the cloud-init iso: %w", err)
	}

	var userTags []string
	resp = plan.Tags.ElementsAs(ctx, &userTags, false)
	if resp.HasError() {
		return plan, fmt.Errorf("reading tags: %v", resp)
	}
	tags, err := lease.SandboxTags(userTags, meta.ExpiresAt)
	if err != nil {
		return plan, err
	}
	err = c.UpdateConfig(ctx, ref, pve.ConfigUpdate{Set: map[string]string{
		"name":   name,
		"cores":  strconv.FormatInt(plan.Cores.ValueInt64(), 10),
		"memory": strconv.FormatInt(plan.Memory.ValueInt64(), 10),
		"net0":   nic.String(),
		"tags":   tags,
		"agent":  "1",
		isoDrive: volid + ",media=cdrom",
	}, Digest: cfg.Digest()})
	if err != nil {
		return plan, fmt.Errorf("configuring the clone: %w", err)
	}

	bootDisk := cfg.BootDisk()
	if known(plan.DiskSize) && !plan.DiskSize.IsNull() {
		if bootDisk == "" {
			return plan, errors.New("the template has no boot disk to resize; set its boot order or leave disk_size unset")
		}
		if err := c.Resize(ctx, ref, bootDisk, plan.DiskSize.ValueString()); err != nil {
			if errors.Is(err, pve.ErrShrink) {
				return plan, fmt.Errorf("disk_size %s is smaller than the template's disk; Proxmox VE cannot shrink disks, so set disk_size to at least the template's size: %w",
					plan.DiskSize.ValueString(), err)
			}
			return plan, fmt.Errorf("resizing %s: %w", bootDisk, err)
		}
	}

	if id := plan.WorkspaceID; !id.IsNull() && !id.IsUnknown() {
		for {
			err := attachWorkspace(ctx, c, ref, id.ValueString())
			if err == nil {
				break
			}
			var held *workspace.AttachedError
			if x.AwaitHolder == nil || !errors.As(err, &held) || held.VM == ref || x.AwaitHolder(ctx, held.VM) != nil {
				return plan, fmt.Errorf("attaching the workspace: %w", err)
			}
		}
	}

	if err := c.Start(ctx, ref); err != nil {
		return plan, fmt.Errorf("starting: %w", err)
	}
	state := plan
	state.ID = types.StringValue(sandboxID(ref.Node, int64(ref.VMID)))
	state.VMID = types.Int64Value(int64(ref.VMID))
	state.Node = types.StringValue(ref.Node)
	state.Name = types.StringValue(name)
	state.LeaseExpiresAt = types.StringValue(meta.ExpiresAt.UTC().Format(time.RFC3339))
	state.IPAddress = types.StringNull()
	if plan.WaitForIP.ValueBool() {
		ip, err := c.WaitForIP(ctx, ref)
		if err != nil {
			return plan, fmt.Errorf("waiting for the guest agent to report an IPv4 address: %w", err)
		}
		state.IPAddress = types.StringValue(ip.String())
	}
	// The start task succeeded: the guest runs (a refresh reads the status).
	state.Status = types.StringValue("running")
	if !known(plan.DiskSize) || plan.DiskSize.IsNull() {
		state.DiskSize = types.StringNull()
		if d, ok := cfg.Drive(bootDisk); ok && d.SizeBytes > 0 {
			state.DiskSize = types.StringValue(formatSize(d.SizeBytes))
		}
	}
	setSSH(&state)
	return state, nil
}

// cleanup removes a half-made sandbox and its ISO on a fresh, bounded
// context: the request's context may be the reason the creation failed.
func (r *sandboxResource) cleanup(ctx context.Context, ref pve.VMRef, isoStorage string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	c := r.data.client
	vmErr := c.Destroy(ctx, ref)
	var isoErr error
	if isoStorage != "" {
		isoErr = deleteISO(ctx, c, ref.Node, volume.SeedISOVolid(isoStorage, ref.VMID))
	}
	return errors.Join(vmErr, isoErr)
}

// taintedState is the state of a half-made sandbox: Terraform marks a
// resource whose create failed with a state as tainted, and destroys it on
// the next apply. Unknown values become null. cloneInFlight records that the
// clone itself failed, so the VM may be the clone's placeholder (see
// identify).
func taintedState(plan sandboxModel, ref pve.VMRef, meta lease.Metadata, cloneInFlight bool) sandboxModel {
	s := plan
	s.ID = types.StringValue(sandboxID(ref.Node, int64(ref.VMID)))
	s.VMID = types.Int64Value(int64(ref.VMID))
	s.Node = types.StringValue(ref.Node)
	if !known(s.Name) {
		s.Name = types.StringNull()
	}
	if !known(s.DiskSize) {
		s.DiskSize = types.StringNull()
	}
	if !known(s.Owner) {
		s.Owner = types.StringNull()
	}
	s.IPAddress = types.StringNull()
	s.Status = types.StringValue("unknown")
	if cloneInFlight {
		s.Status = types.StringValue(statusCloneUnfinished)
	}
	setSSH(&s)
	s.LeaseExpiresAt = types.StringValue(meta.ExpiresAt.UTC().Format(time.RFC3339))
	return s
}

// profileNICModel returns the NIC model the sandbox's profile asks for, ""
// for none (the clone keeps the template's model).
func (r *sandboxResource) profileNICModel(plan sandboxModel) string {
	if plan.Profile.IsNull() || plan.Profile.IsUnknown() {
		return ""
	}
	p, err := profile.Load(r.data.settings.ProfilesDir, plan.Profile.ValueString())
	if err != nil || p.Network.Model == nil {
		return "" // the plan has checked the profile
	}
	return *p.Network.Model
}
