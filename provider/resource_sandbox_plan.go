package provider

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/agentlab/terraform-provider-agentlab/internal/egressrule"
	"github.com/agentlab/terraform-provider-agentlab/internal/lease"
	"github.com/agentlab/terraform-provider-agentlab/internal/profile"
)

// planInput is everything the sandbox's plan is computed from.
type planInput struct {
	// Config is the resource's configuration.
	Config sandboxModel
	// Proposed is Terraform's proposed new state (it carries timeouts).
	Proposed sandboxModel
	// State is the prior state; nil when the sandbox is being created.
	State *sandboxModel
	// Profile is the loaded profile; nil when the resource names none.
	Profile *profile.Profile
	// ProfileUnknown is set when the profile name is not known yet, so no
	// value that a profile could supply is known either.
	ProfileUnknown bool
	// DefaultNode is the provider's node; "" when unset.
	DefaultNode string
	// DefaultOwner is the API token's user; "" when the provider is not
	// configured yet.
	DefaultOwner string
	// Now is the time the plan is made, from the provider's clock; zero
	// when the provider is not configured yet.
	Now time.Time
	// Lease is the lease the sandbox has now; nil when not known.
	Lease *lease.Lease
	// MaxTTLCeiling is the provider's max_ttl: the default of a sandbox's
	// max_ttl and the longest ttl or max_ttl a sandbox may ask for. Zero
	// when the provider is not configured yet.
	MaxTTLCeiling time.Duration
}

// planOutput is the planned sandbox and the attributes whose change forces a
// new sandbox.
type planOutput struct {
	Plan            sandboxModel
	RequiresReplace path.Paths
}

// ModifyPlan fills every attribute with the value that will be applied (the
// configuration's, else the profile's, else the default), so the plan shows
// profile values and a second plan is empty; it also decides replacement,
// lease renewal and the plan-time errors (unknown profile or key, disk
// shrink, lease past max_ttl).
func (r *sandboxResource) ModifyPlan(ctx context.Context, req resource.ModifyPlanRequest, resp *resource.ModifyPlanResponse) {
	if req.Plan.Raw.IsNull() {
		return // destroy
	}
	var in planInput
	resp.Diagnostics.Append(req.Config.Get(ctx, &in.Config)...)
	resp.Diagnostics.Append(req.Plan.Get(ctx, &in.Proposed)...)
	if !req.State.Raw.IsNull() {
		var state sandboxModel
		resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
		in.State = &state
		l, diags := privateLease(ctx, req.Private)
		resp.Diagnostics.Append(diags...)
		in.Lease = l
	}
	if resp.Diagnostics.HasError() {
		return
	}
	if r.data != nil {
		in.DefaultNode = r.data.settings.Node
		in.DefaultOwner = r.data.settings.TokenUser
		in.Now = r.data.clock.Now()
		in.MaxTTLCeiling = r.data.settings.MaxTTL
	}

	switch {
	case in.Config.Profile.IsUnknown():
		in.ProfileUnknown = true
	case !in.Config.Profile.IsNull():
		if r.data == nil {
			// The provider is not configured (its settings are unknown), so
			// profiles_dir is not known: leave profile values unknown.
			in.ProfileUnknown = true
			break
		}
		p, err := profile.Load(r.data.settings.ProfilesDir, in.Config.Profile.ValueString())
		if err != nil {
			resp.Diagnostics.Append(profileDiagnostic(r.data.settings.ProfilesDir, in.Config.Profile.ValueString(), err))
			return
		}
		for _, k := range p.Ignored {
			resp.Diagnostics.AddAttributeWarning(path.Root("profile"), "Profile key ignored",
				fmt.Sprintf("%s:%d sets %s, which AgentLab sandboxes do not use; it has no effect.", p.Path, k.Line, k.Key))
		}
		in.Profile = &p
	}

	out, diags := planSandbox(in)
	resp.Diagnostics.Append(diags...)
	resp.Diagnostics.Append(checkSecrets(ctx, req.Config, out.Plan.SecretsRecipient)...)
	if resp.Diagnostics.HasError() {
		return
	}
	resp.Diagnostics.Append(resp.Plan.Set(ctx, out.Plan)...)
	resp.RequiresReplace = append(resp.RequiresReplace, out.RequiresReplace...)
}

// profileDiagnostic explains why a profile could not be used.
func profileDiagnostic(dir, name string, err error) diag.Diagnostic {
	switch {
	case errors.Is(err, profile.ErrNotFound):
		return diag.NewAttributeErrorDiagnostic(path.Root("profile"), "Unknown profile",
			fmt.Sprintf("%s.\n\nCreate the file, fix the profile name, or point the provider's profiles_dir "+
				"(or %s) at the directory that holds it.", err, envProfilesDir))
	case errors.Is(err, profile.ErrInvalidName):
		return diag.NewAttributeErrorDiagnostic(path.Root("profile"), "Invalid profile name", err.Error()+".")
	}
	return diag.NewAttributeErrorDiagnostic(path.Root("profile"), "Invalid profile",
		fmt.Sprintf("The profile %q in %s cannot be used:\n\n%s\n\nFix the file; each line above names the "+
			"file, the line and the key.", name, dir, err))
}

// planSandbox computes the planned sandbox from in. It is the plan logic
// without the framework plumbing.
func planSandbox(in planInput) (planOutput, diag.Diagnostics) {
	var diags diag.Diagnostics
	c, st, prof := in.Config, in.State, in.Profile
	creating := st == nil
	if prof == nil {
		prof = &profile.Profile{}
	}
	p := in.Proposed

	// keep returns the prior state's value on update and unknown on create.
	keepString := func(v func(*sandboxModel) types.String) types.String {
		if creating {
			return types.StringUnknown()
		}
		return v(st)
	}

	// Values a profile can supply are unknown while the profile is.
	profString := func(v *string) *types.String {
		if in.ProfileUnknown {
			u := types.StringUnknown()
			return &u
		}
		if v == nil {
			return nil
		}
		s := types.StringValue(*v)
		return &s
	}
	profInt := func(v *int) *types.Int64 {
		if in.ProfileUnknown {
			u := types.Int64Unknown()
			return &u
		}
		if v == nil {
			return nil
		}
		i := types.Int64Value(int64(*v))
		return &i
	}
	profBool := func(v *bool) *types.Bool {
		if in.ProfileUnknown {
			u := types.BoolUnknown()
			return &u
		}
		if v == nil {
			return nil
		}
		b := types.BoolValue(*v)
		return &b
	}
	var profTTL *string
	if prof.Behavior.TTL != nil {
		s := formatDuration(*prof.Behavior.TTL)
		profTTL = &s
	}

	// Configurable attributes: configuration, else profile, else default.
	p.Name = pick(c.Name, nil, keepString(func(m *sandboxModel) types.String { return m.Name }))
	p.TemplateVMID = pick(c.TemplateVMID, profInt(prof.TemplateVMID), keepInt(st, func(m *sandboxModel) types.Int64 { return m.TemplateVMID }))
	if creating && p.TemplateVMID.IsUnknown() && c.TemplateVMID.IsNull() && !in.ProfileUnknown {
		diags.AddAttributeError(path.Root("template_vmid"), "Missing template_vmid",
			"The sandbox needs a template to clone. Set template_vmid, or set profile to a profile whose file sets template_vmid.")
	}
	nodeDefault := types.StringValue(in.DefaultNode)
	if in.DefaultNode == "" {
		nodeDefault = keepString(func(m *sandboxModel) types.String { return m.Node })
	}
	p.Node = pick(c.Node, profString(prof.Node), nodeDefault)
	p.Cores = pick(c.Cores, profInt(prof.Resources.Cores), types.Int64Value(defaultCores))
	p.Memory = pick(c.Memory, profInt(prof.Resources.MemoryMiB), types.Int64Value(defaultMemory))
	p.DiskSize = pick(c.DiskSize, profString(prof.Resources.DiskSize), keepString(func(m *sandboxModel) types.String { return m.DiskSize }))
	p.FullClone = pick(c.FullClone, nil, types.BoolValue(defaultFullClone))
	p.Storage = pick(c.Storage, nil, types.StringNull())
	p.Bridge = pick(c.Bridge, profString(prof.Network.Bridge), types.StringValue(defaultBridge))
	p.Firewall = pick(c.Firewall, profBool(prof.Network.Firewall), types.BoolValue(defaultFirewall))
	var profEgress *types.String
	if prof.Network.Egress != nil {
		v := types.StringValue(string(*prof.Network.Egress))
		profEgress = &v
	}
	p.Egress = pick(c.Egress, profEgress, types.StringValue(string(egressrule.Open)))
	p.EgressAllow = c.EgressAllow
	if c.EgressAllow.IsNull() {
		p.EgressAllow = types.ListValueMust(types.StringType, nil)
	}
	p.SSHAuthorizedKeys = c.SSHAuthorizedKeys
	if c.SSHAuthorizedKeys.IsNull() {
		p.SSHAuthorizedKeys = types.ListValueMust(types.StringType, nil)
	}
	p.TTL = pick(c.TTL, profString(profTTL), types.StringValue(defaultTTL))
	maxTTLDefault := types.StringUnknown()
	if in.MaxTTLCeiling > 0 {
		maxTTLDefault = types.StringValue(formatDuration(in.MaxTTLCeiling))
	}
	p.MaxTTL = pick(c.MaxTTL, nil, maxTTLDefault)
	p.OnExpiry = pick(c.OnExpiry, nil, types.StringValue(defaultOnExpiry))
	p.RenewOnApply = pick(c.RenewOnApply, profBool(prof.Behavior.KeepaliveDefault), types.BoolValue(false))
	p.RebootOnChange = pick(c.RebootOnChange, nil, types.BoolValue(false))
	p.WaitForIP = pick(c.WaitForIP, nil, types.BoolValue(defaultWaitForIP))
	p.Profile = c.Profile
	ownerDefault := types.StringUnknown()
	switch {
	case !creating && !st.Owner.IsNull():
		ownerDefault = st.Owner
	case in.DefaultOwner != "":
		ownerDefault = types.StringValue(in.DefaultOwner)
	}
	p.Owner = pick(c.Owner, nil, ownerDefault)
	p.Tags = c.Tags
	if c.Tags.IsNull() {
		p.Tags = types.SetValueMust(types.StringType, nil)
	}
	p.ISOStorage = pick(c.ISOStorage, nil, types.StringValue(defaultISOStorage))
	p.SecretsRecipient = pick(c.SecretsRecipient, profString(prof.Secrets.Recipient), types.StringNull())
	p.SecretsVersion = c.SecretsVersion
	p.Secrets = types.MapNull(types.StringType) // write-only: never planned

	// Cross-attribute rules.
	if known(p.Storage) && !p.Storage.IsNull() && known(p.FullClone) && !p.FullClone.ValueBool() {
		diags.AddAttributeError(path.Root("storage"), "storage needs a full clone",
			"Proxmox VE places a linked clone's disks on the template's storage and refuses a target storage. "+
				"Set full_clone = true to copy the disks to "+p.Storage.ValueString()+", or remove storage.")
	}
	ttl, maxTTL, ttlOK := plannedTTLs(p, &diags)
	if ttlOK {
		// The operator's ceiling first: a sandbox without max_ttl has the
		// provider's, and the error must say where that comes from.
		ceiling := ceilingDiagnostics(ttl, maxTTL, in.MaxTTLCeiling)
		diags.Append(ceiling...)
		if err := lease.ValidateTTL(ttl, maxTTL); err != nil && !ceiling.HasError() {
			diags.Append(leaseDiagnostic(err))
		}
	}
	if known(p.Tags) {
		var tags []string
		diags.Append(p.Tags.ElementsAs(context.Background(), &tags, false)...)
		if lease.Kept(tags) {
			diags.AddAttributeWarning(path.Root("tags"), "agentlab-keep is the operator's choice",
				fmt.Sprintf("The reaper honours a %q tag set outside its own keep command only when its config "+
					"sets policy.user_keep: true (the default is false); otherwise it still enforces this "+
					"sandbox's lease. An operator keeps a sandbox with: agentlab-reaper keep VMID.", lease.TagKeep))
		}
	}

	// Computed attributes.
	if creating {
		p.ID = types.StringUnknown()
		p.VMID = types.Int64Unknown()
		p.Status = types.StringUnknown()
		p.LeaseExpiresAt = types.StringUnknown()
		p.IPAddress = types.StringNull()
		if !known(p.WaitForIP) || p.WaitForIP.ValueBool() {
			p.IPAddress = types.StringUnknown()
		}
		planSSH(&p)
		return planOutput{Plan: p}, diags
	}

	p.ID, p.VMID, p.Status = st.ID, st.VMID, st.Status
	var out planOutput
	for _, a := range []struct {
		name        string
		plan, state interface {
			IsNull() bool
			IsUnknown() bool
		}
		equal bool
	}{
		{"template_vmid", p.TemplateVMID, st.TemplateVMID, p.TemplateVMID.Equal(st.TemplateVMID)},
		{"node", p.Node, st.Node, p.Node.Equal(st.Node)},
		{"full_clone", p.FullClone, st.FullClone, p.FullClone.Equal(st.FullClone)},
		{"storage", p.Storage, st.Storage, p.Storage.Equal(st.Storage)},
		{"iso_storage", p.ISOStorage, st.ISOStorage, p.ISOStorage.Equal(st.ISOStorage)},
		{"ssh_authorized_keys", p.SSHAuthorizedKeys, st.SSHAuthorizedKeys, p.SSHAuthorizedKeys.Equal(st.SSHAuthorizedKeys)},
		// The reaper reads a sandbox's egress settings when the VM appears;
		// a new sandbox is the change it cannot miss.
		{"egress", p.Egress, st.Egress, p.Egress.Equal(st.Egress)},
		{"egress_allow", p.EgressAllow, st.EgressAllow, p.EgressAllow.Equal(st.EgressAllow)},
		{"secrets_recipient", p.SecretsRecipient, st.SecretsRecipient, p.SecretsRecipient.Equal(st.SecretsRecipient)},
	} {
		// A null prior value is one an import could not read: setting it
		// records the configuration without replacing the sandbox.
		if !a.equal && !a.state.IsNull() {
			out.RequiresReplace = append(out.RequiresReplace, path.Root(a.name))
		}
	}
	// A new secrets_version delivers the secrets again: cloud-init gives
	// them only to a first boot, so that takes a new sandbox.
	if !p.SecretsVersion.Equal(st.SecretsVersion) {
		out.RequiresReplace = append(out.RequiresReplace, path.Root("secrets_version"))
	}

	if len(out.RequiresReplace) > 0 {
		// Terraform plans the new sandbox as a create; the checks below are
		// about changing this one.
		p.LeaseExpiresAt = types.StringUnknown()
		p.IPAddress = types.StringUnknown()
		out.Plan = p
		return out, diags
	}

	// Shrinking a disk is impossible in PVE: refuse it now, not half-way
	// through an apply.
	if known(p.DiskSize) && known(st.DiskSize) && !p.DiskSize.IsNull() && !st.DiskSize.IsNull() {
		want, err1 := parseSize(p.DiskSize.ValueString())
		have, err2 := parseSize(st.DiskSize.ValueString())
		if err1 == nil && err2 == nil && want < have {
			diags.AddAttributeError(path.Root("disk_size"), "Disk cannot shrink",
				fmt.Sprintf("disk_size would shrink the disk from %s to %s, and Proxmox VE cannot shrink disks. "+
					"Set disk_size to %s or more, or replace the sandbox (terraform apply -replace=...) to start "+
					"from a smaller disk.", st.DiskSize.ValueString(), p.DiskSize.ValueString(), st.DiskSize.ValueString()))
		}
	}

	// Lease: a changed ttl or renew_on_apply renews from now; the new
	// expiry is known only at apply time.
	p.LeaseExpiresAt = st.LeaseExpiresAt
	renew := !known(p.RenewOnApply) || p.RenewOnApply.ValueBool() || !sameDuration(p.TTL, st.TTL)
	if renew {
		p.LeaseExpiresAt = types.StringUnknown()
	}
	if ttlOK && in.Lease != nil && !in.Now.IsZero() {
		l := *in.Lease
		l.MaxTTL = maxTTL
		if renew {
			if _, err := l.Renew(in.Now, ttl); err != nil {
				diags.AddAttributeError(path.Root("ttl"), "Lease renewal past max_ttl",
					fmt.Sprintf("Renewing the lease now would break its cap: %s.\n\nThe sandbox was created at %s; "+
						"with max_ttl %s its lease cannot end after %s.", leaseErrorText(err),
						l.CreatedAt.Format(time.RFC3339), p.MaxTTL.ValueString(), maxExpiryText(l)))
			}
		} else if limit := l.MaxExpiry(); !limit.IsZero() && l.ExpiresAt.After(limit) {
			diags.AddAttributeError(path.Root("max_ttl"), "max_ttl below the current lease",
				fmt.Sprintf("The lease ends at %s, but max_ttl %s from the sandbox's creation (%s) ends at %s. "+
					"Raise max_ttl, or change ttl as well so the lease is renewed within the cap.",
					l.ExpiresAt.Format(time.RFC3339), p.MaxTTL.ValueString(), l.CreatedAt.Format(time.RFC3339),
					limit.Format(time.RFC3339)))
		}
	}

	// The address is read again when the guest may have a new one.
	running := st.Status.ValueString() == "running"
	hardwareChange := !p.Cores.Equal(st.Cores) || !p.Memory.Equal(st.Memory)
	reboot := running && hardwareChange && (!known(p.RebootOnChange) || p.RebootOnChange.ValueBool())
	switch {
	case known(p.WaitForIP) && !p.WaitForIP.ValueBool():
		p.IPAddress = types.StringNull()
	case !known(p.WaitForIP) || reboot || !p.Bridge.Equal(st.Bridge) || !st.WaitForIP.ValueBool(),
		running && !p.WorkspaceID.Equal(st.WorkspaceID): // attaching or detaching restarts it
		p.IPAddress = types.StringUnknown()
	default:
		p.IPAddress = st.IPAddress
	}
	planSSH(&p)
	out.Plan = p
	return out, diags
}

// plannedTTLs parses the planned ttl and max_ttl; ok is false when either is
// unknown or invalid (validators have reported invalid ones).
func plannedTTLs(p sandboxModel, diags *diag.Diagnostics) (ttl, maxTTL time.Duration, ok bool) {
	if !known(p.TTL) || !known(p.MaxTTL) {
		return 0, 0, false
	}
	ttl, err := time.ParseDuration(p.TTL.ValueString())
	if err != nil {
		return 0, 0, false
	}
	if !p.MaxTTL.IsNull() {
		if maxTTL, err = time.ParseDuration(p.MaxTTL.ValueString()); err != nil {
			return 0, 0, false
		}
	}
	return ttl, maxTTL, true
}

// leaseDiagnostic is an error on the lease attribute err names (a
// *lease.FieldError), else on ttl.
func leaseDiagnostic(err error) diag.Diagnostic {
	at := "ttl"
	var fe *lease.FieldError
	if errors.As(err, &fe) && (fe.Field == "ttl" || fe.Field == "max_ttl" || fe.Field == "on_expiry") {
		at = fe.Field
	}
	return diag.NewAttributeErrorDiagnostic(path.Root(at), "Invalid lease", leaseErrorText(err)+".")
}

// ceilingDiagnostics refuses a ttl or max_ttl beyond the provider's max_ttl,
// the operator's ceiling (zero: not known yet).
func ceilingDiagnostics(ttl, maxTTL, ceiling time.Duration) diag.Diagnostics {
	var diags diag.Diagnostics
	if ceiling <= 0 {
		return diags
	}
	fix := fmt.Sprintf("or raise the provider's max_ttl (or %s) if the operator allows longer leases; the "+
		"reaper caps every lease at its policy.max_lease whatever the sandbox asks for", envMaxTTL)
	if ttl > ceiling {
		diags.AddAttributeError(path.Root("ttl"), "ttl beyond the provider's max_ttl",
			fmt.Sprintf("ttl %s is longer than the provider's max_ttl %s. Lower ttl to at most %s, %s.",
				formatDuration(ttl), formatDuration(ceiling), formatDuration(ceiling), fix))
	}
	if maxTTL > ceiling {
		diags.AddAttributeError(path.Root("max_ttl"), "max_ttl beyond the provider's max_ttl",
			fmt.Sprintf("max_ttl %s is longer than the provider's max_ttl %s. Lower max_ttl to at most %s (or "+
				"remove it to get %s), %s.", formatDuration(maxTTL), formatDuration(ceiling), formatDuration(ceiling),
				formatDuration(ceiling), fix))
	}
	return diags
}

// leaseErrorText returns a lease error's reason without its field, which the
// diagnostic's attribute path already says.
func leaseErrorText(err error) string {
	var fe *lease.FieldError
	if errors.As(err, &fe) {
		return fe.Reason
	}
	var pe *lease.PastMaxTTLError
	if errors.As(err, &pe) {
		return pe.Error()
	}
	return err.Error()
}

// maxExpiryText formats the lease's cap.
func maxExpiryText(l lease.Lease) string {
	if t := l.MaxExpiry(); !t.IsZero() {
		return t.Format(time.RFC3339)
	}
	return "(no cap)"
}

// sameDuration reports whether two known duration strings mean the same
// duration ("60m" and "1h" do).
func sameDuration(a, b types.String) bool {
	if a.Equal(b) {
		return true
	}
	if !known(a) || !known(b) || a.IsNull() || b.IsNull() {
		return false
	}
	da, err1 := time.ParseDuration(a.ValueString())
	db, err2 := time.ParseDuration(b.ValueString())
	return err1 == nil && err2 == nil && da == db
}

// formatDuration writes d compactly: "3h", "1h30m", "45s".
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// known reports whether v's value is known (null counts as known).
func known(v interface{ IsUnknown() bool }) bool { return !v.IsUnknown() }

// pick returns the configured value, else the profile's, else def. An
// unknown configured value stays unknown.
func pick[T interface {
	IsUnknown() bool
	IsNull() bool
}](cfg T, prof *T, def T) T {
	switch {
	case cfg.IsUnknown() || !cfg.IsNull():
		return cfg
	case prof != nil:
		return *prof
	}
	return def
}

// keepInt returns the prior state's value on update and unknown on create.
func keepInt(st *sandboxModel, v func(*sandboxModel) types.Int64) types.Int64 {
	if st == nil {
		return types.Int64Unknown()
	}
	return v(st)
}
