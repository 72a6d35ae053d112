package provider

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-log/tflog"

	"github.com/agentlab/terraform-provider-agentlab/internal/egressrule"
	"github.com/agentlab/terraform-provider-agentlab/internal/lease"
	"github.com/agentlab/terraform-provider-agentlab/internal/pve"
	"github.com/agentlab/terraform-provider-agentlab/internal/volume"
)

// observation is what the provider reads back from Proxmox VE about one
// sandbox.
type observation struct {
	Config pve.VMConfig
	Status pve.VMStatus
	// Meta is the decoded metadata block; nil when it is missing or broken
	// (MetaErr says why).
	Meta    *lease.Metadata
	MetaErr error
	// IP is the guest agent's IPv4 address; invalid when not asked for or
	// not known.
	IP netip.Addr
	// Origin tells how the VM was cloned; read only for imports.
	Origin cloneOrigin
}

// cloneOrigin is what a VM's disks tell about how it was cloned.
type cloneOrigin struct {
	// Known is set when the boot disk could be inspected.
	Known bool
	// Linked is set for a linked clone, whose disk has a base volume.
	Linked bool
	// TemplateVMID is the base volume's owner; 0 when unknown.
	TemplateVMID int
}

// Read refreshes the sandbox from Proxmox VE. A VM that no longer exists, or
// whose VMID now belongs to a VM AgentLab does not manage, is removed from
// state so the next apply creates the sandbox again.
func (r *sandboxResource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	if !r.configured(&resp.Diagnostics) {
		return
	}
	var state sandboxModel
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() {
		return
	}
	timeout, diags := state.Timeouts.Read(ctx, defaultReadTimeout)
	resp.Diagnostics.Append(diags...)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	imported, diags := req.Private.GetKey(ctx, privateImported)
	resp.Diagnostics.Append(diags...)
	importing := len(imported) > 0

	ref, err := stateRef(state)
	if err != nil {
		resp.Diagnostics.AddError("Invalid sandbox ID", err.Error()+". Remove the resource from state (terraform state rm) and import it again as <node>/<vmid>.")
		return
	}
	obs, err := r.observe(ctx, ref, state.WaitForIP.ValueBool(), importing)
	switch {
	case pve.IsNotFound(err) && importing:
		resp.Diagnostics.AddError("Cannot import: no such VM",
			fmt.Sprintf("Proxmox VE has no VM %d on node %s. Check the import ID (<node>/<vmid>); "+
				"agentlab_sandboxes lists the sandboxes that exist.", ref.VMID, ref.Node))
		return
	case pve.IsNotFound(err):
		// Deleted outside Terraform, e.g. by the reaper once its lease ended.
		// No VM has this VMID now, so the seed ISO by its name is this
		// sandbox's: it holds the heartbeat token, so it goes too.
		r.forgetGone(ctx, ref, state)
		resp.State.RemoveResource(ctx)
		return
	case err != nil:
		resp.Diagnostics.AddError("Cannot read the sandbox",
			fmt.Sprintf("Reading VM %s from Proxmox VE failed: %s.", ref, err))
		return
	}
	if importing && !lease.Owned(obs.Config.Tags()) {
		resp.Diagnostics.AddError("Not an AgentLab sandbox",
			fmt.Sprintf("VM %s (%q) has no %q tag, so AgentLab does not manage it and will not import it. "+
				"Only VMs created by AgentLab can be imported; to bring an existing VM under AgentLab, "+
				"clone it into a template and create a sandbox from that.", ref, obs.Config.Name(), lease.TagOwned))
		return
	}
	priv, diags := privateMeta(ctx, req.Private)
	resp.Diagnostics.Append(diags...)
	inFlight, diags := cloneInFlight(ctx, req.Private)
	resp.Diagnostics.Append(diags...)
	inFlight = inFlight || state.Status.ValueString() == statusCloneUnfinished
	switch identify(obs.Config, priv, inFlight) {
	case vmOther:
		if !lease.Owned(obs.Config.Tags()) {
			resp.Diagnostics.AddWarning("Sandbox replaced outside Terraform",
				fmt.Sprintf("VM %s no longer carries the %q tag: the sandbox was deleted and its VMID reused by "+
					"another VM (%q). The sandbox is removed from state and the next apply creates a new one; "+
					"the other VM is left alone.", ref, lease.TagOwned, obs.Config.Name()))
		} else {
			resp.Diagnostics.AddWarning("Sandbox replaced outside Terraform",
				fmt.Sprintf("VM %s is another sandbox now (its VMID was reused after this one was deleted). This "+
					"sandbox is removed from state and the next apply creates a new one; the other is left alone.", ref))
		}
		resp.State.RemoveResource(ctx)
		return
	case vmPlaceholder:
		// The clone never finished: the state keeps the VMID, so the next
		// apply or destroy removes the placeholder.
		state.Status = types.StringValue(statusCloneUnfinished)
		resp.Diagnostics.AddWarning("Sandbox clone never finished",
			fmt.Sprintf("VM %s is the placeholder of this sandbox's clone, which did not finish (lock %q, no "+
				"metadata). It stays in state so that the next apply or destroy removes it.", ref, obs.Config.Lock()))
		resp.Diagnostics.Append(resp.State.Set(ctx, &state)...)
		return
	}
	if obs.Config.Template() {
		resp.Diagnostics.AddError("The VM is a template",
			fmt.Sprintf("VM %s is a template, not a sandbox. Use the sandbox's own VMID.", ref))
		return
	}

	resp.Diagnostics.Append(applyObservation(&state, obs, importing)...)
	resp.Diagnostics.Append(resp.State.Set(ctx, &state)...)
	if obs.Meta != nil {
		resp.Diagnostics.Append(setPrivateMeta(ctx, resp.Private, *obs.Meta)...)
		if inFlight {
			// The sandbox's own metadata proves the clone finished.
			resp.Diagnostics.Append(resp.Private.SetKey(ctx, privateCloneInFlight, nil)...)
		}
	}
	if importing {
		resp.Diagnostics.Append(resp.Private.SetKey(ctx, privateImported, nil)...)
	}
}

// forgetGone removes the seed ISO of a sandbox whose VM is gone, best effort:
// a failure is logged, and the sandbox leaves the state either way (the
// reaper lists an ISO whose VM is gone as an orphan).
func (r *sandboxResource) forgetGone(ctx context.Context, ref pve.VMRef, state sandboxModel) {
	storage := state.ISOStorage.ValueString()
	if storage == "" {
		storage = defaultISOStorage
	}
	volid := volume.SeedISOVolid(storage, ref.VMID)
	if err := deleteISO(ctx, r.data.client, ref.Node, volid); err != nil {
		tflog.Warn(ctx, "sandbox VM is gone; deleting its seed ISO failed", map[string]any{
			"vm": ref.String(), "volid": volid, "error": err.Error(),
		})
		return
	}
	tflog.Info(ctx, "sandbox VM is gone; its seed ISO is deleted", map[string]any{"vm": ref.String(), "volid": volid})
}

// observe reads the sandbox's config and status, its IP when wantIP is set
// and the guest runs, and how it was cloned when wantOrigin is set.
func (r *sandboxResource) observe(ctx context.Context, ref pve.VMRef, wantIP, wantOrigin bool) (observation, error) {
	c := r.data.client
	cfg, err := c.Config(ctx, ref)
	if err != nil {
		return observation{}, err
	}
	st, err := c.Status(ctx, ref)
	if err != nil {
		return observation{}, err
	}
	obs := observation{Config: cfg, Status: st}
	m, err := lease.Decode(cfg.Description())
	if err != nil {
		obs.MetaErr = err
	} else {
		obs.Meta = &m
	}
	if wantIP && st.Running() {
		// One look, no waiting: a guest without an address yet keeps the
		// previous value.
		ifaces, err := c.AgentInterfaces(ctx, ref)
		if err == nil {
			obs.IP = firstIPv4(ifaces, cfg)
		}
	}
	if wantOrigin {
		obs.Origin = r.cloneOrigin(ctx, ref, cfg)
	}
	return obs, nil
}

// cloneOrigin inspects the boot disk: a linked clone's volume names its
// template's base volume, in the volid on file storages
// ("local:9000/base-9000-disk-0.qcow2/101/vm-101-disk-0.qcow2") or as the
// volume's parent where the storage lists it. Anything else leaves the
// origin unknown.
func (r *sandboxResource) cloneOrigin(ctx context.Context, ref pve.VMRef, cfg pve.VMConfig) cloneOrigin {
	d, ok := cfg.Drive(cfg.BootDisk())
	if !ok || d.Storage == "" {
		return cloneOrigin{}
	}
	if id, ok := volume.Base(d.Volume); ok {
		return cloneOrigin{Known: true, Linked: true, TemplateVMID: id}
	}
	vols, err := r.data.client.StorageContent(ctx, ref.Node, d.Storage, "images", ref.VMID)
	if err != nil {
		return cloneOrigin{}
	}
	for _, v := range vols {
		if v.VolID != d.Volume {
			continue
		}
		if id, ok := volume.Base(v.Parent); ok {
			return cloneOrigin{Known: true, Linked: true, TemplateVMID: id}
		}
	}
	// No parent listed: a full clone, or a linked clone on a storage that
	// does not list parents (LVM-thin). Nobody can tell.
	return cloneOrigin{}
}

// applyObservation writes what Proxmox VE says into m. Values the VM holds
// in another spelling than the configuration ("60m" for "1h", "20480M" for
// "20G") keep the state's spelling. When importing, attributes that only the
// configuration knows are filled as far as the VM tells them.
func applyObservation(m *sandboxModel, obs observation, importing bool) diag.Diagnostics {
	var diags diag.Diagnostics
	cfg := obs.Config
	ref := pve.VMRef{Node: m.Node.ValueString(), VMID: int(m.VMID.ValueInt64())}

	m.Name = types.StringValue(cfg.Name())
	if n := cfg.Int("cores"); n > 0 {
		m.Cores = types.Int64Value(n)
	} else {
		m.Cores = types.Int64Value(1) // PVE's default
	}
	if n := cfg.Int("memory"); n > 0 {
		m.Memory = types.Int64Value(n)
	} else {
		m.Memory = types.Int64Value(512) // PVE's default
	}
	if key := cfg.BootDisk(); key != "" {
		if d, ok := cfg.Drive(key); ok && d.SizeBytes > 0 {
			have, err := parseSize(m.DiskSize.ValueString())
			if m.DiskSize.IsNull() || m.DiskSize.IsUnknown() || err != nil || have != d.SizeBytes {
				m.DiskSize = types.StringValue(formatSize(d.SizeBytes))
			}
		}
	}
	if nic, ok := cfg.NIC("net0"); ok {
		m.Bridge = types.StringValue(nic.Bridge)
		m.Firewall = types.BoolValue(nic.Firewall)
	}
	m.Tags = stringSet(lease.UserTags(cfg.Tags()))
	if d, ok := cfg.Drive(isoDrive); ok && d.Storage != "" && strings.HasSuffix(d.Volume, volume.SeedISOName(ref.VMID)) {
		m.ISOStorage = types.StringValue(d.Storage)
	}
	if importing {
		// Settings only the configuration knows start at their defaults; the
		// first apply after the import records the configuration's values.
		m.WaitForIP = types.BoolValue(defaultWaitForIP)
		m.RenewOnApply = types.BoolValue(false)
		m.RebootOnChange = types.BoolValue(false)
		if obs.Origin.Known {
			m.FullClone = types.BoolValue(!obs.Origin.Linked)
		}
		if obs.Origin.TemplateVMID != 0 {
			m.TemplateVMID = types.Int64Value(int64(obs.Origin.TemplateVMID))
		}
	}
	m.Status = types.StringValue(obs.Status.Status)
	switch {
	case !obs.Status.Running() || !m.WaitForIP.ValueBool():
		m.IPAddress = types.StringNull()
	case obs.IP.IsValid():
		m.IPAddress = types.StringValue(obs.IP.String())
	}
	m.WorkspaceID = observedWorkspaceID(cfg, ref)
	setSSH(m)

	if obs.Meta == nil {
		// A sandbox with a broken metadata block: the expiry tag still tells
		// the lease; the reaper leaves such a VM alone (it fails closed).
		if exp, err := lease.ExpiryFromTags(cfg.Tags()); err == nil {
			m.LeaseExpiresAt = types.StringValue(exp.UTC().Format(time.RFC3339))
		}
		diags.AddWarning("Sandbox metadata unreadable",
			fmt.Sprintf("VM %s has the %q tag but its description's metadata block cannot be read (%s). "+
				"The reaper will not act on it. Change ttl (or apply with renew_on_apply = true) to rewrite the block.",
				ref, lease.TagOwned, obs.MetaErr))
		return diags
	}
	md := obs.Meta
	m.LeaseExpiresAt = types.StringValue(md.ExpiresAt.UTC().Format(time.RFC3339))
	m.Egress = types.StringValue(string(egressrule.Open))
	if md.Egress != "" {
		m.Egress = types.StringValue(string(md.Egress))
	}
	allow := make([]attr.Value, len(md.EgressAllow))
	for i, a := range md.EgressAllow {
		allow[i] = types.StringValue(a)
	}
	m.EgressAllow = types.ListValueMust(types.StringType, allow)
	m.OnExpiry = types.StringValue(string(md.OnExpiry))
	if md.Owner != "" {
		m.Owner = types.StringValue(md.Owner)
	}
	if md.MaxTTL == 0 {
		m.MaxTTL = types.StringNull()
	} else if !durationIs(m.MaxTTL, md.MaxTTL) {
		m.MaxTTL = types.StringValue(formatDuration(md.MaxTTL))
	}
	if importing {
		// The ttl in state is the one the configuration asked for; only an
		// import takes it from the VM (a reaper renewal does not change it).
		m.TTL = types.StringValue(formatDuration(md.TTL))
		m.Profile = types.StringNull()
		if md.Profile != "" {
			m.Profile = types.StringValue(md.Profile)
		}
	}
	return diags
}

// durationIs reports whether v is a known duration string equal to d.
func durationIs(v types.String, d time.Duration) bool {
	if v.IsNull() || v.IsUnknown() {
		return false
	}
	got, err := time.ParseDuration(v.ValueString())
	return err == nil && got == d
}

// firstIPv4 returns the first usable IPv4 address the guest agent reports on
// the interface with net0's MAC (any interface when none matches).
func firstIPv4(ifaces []pve.AgentInterface, cfg pve.VMConfig) netip.Addr {
	mac := ""
	if nic, ok := cfg.NIC("net0"); ok {
		mac = strings.ToLower(nic.MAC)
	}
	var fallback netip.Addr
	for _, i := range ifaces {
		for _, a := range i.IPAddresses {
			ip, err := netip.ParseAddr(a.Address)
			if err != nil || !ip.Is4() || ip.IsLoopback() || ip.IsLinkLocalUnicast() || ip.IsUnspecified() {
				continue
			}
			if strings.ToLower(i.MAC) == mac {
				return ip
			}
			if !fallback.IsValid() {
				fallback = ip
			}
		}
	}
	return fallback
}

// stateRef returns the VM a sandbox's state points at.
func stateRef(m sandboxModel) (pve.VMRef, error) {
	if !m.Node.IsNull() && !m.Node.IsUnknown() && !m.VMID.IsNull() && !m.VMID.IsUnknown() {
		return pve.VMRef{Node: m.Node.ValueString(), VMID: int(m.VMID.ValueInt64())}, nil
	}
	node, vmid, err := parseSandboxID(m.ID.ValueString())
	if err != nil {
		return pve.VMRef{}, err
	}
	return pve.VMRef{Node: node, VMID: int(vmid)}, nil
}

// stringSet converts strings to a Terraform set (empty, not null, for none).
func stringSet(items []string) types.Set {
	vals := make([]attr.Value, 0, len(items))
	for _, it := range items {
		vals = append(vals, types.StringValue(it))
	}
	return types.SetValueMust(types.StringType, vals)
}

// configured reports whether the provider has been configured, adding an
// error otherwise.
func (r *sandboxResource) configured(diags *diag.Diagnostics) bool {
	if r.data != nil {
		return true
	}
	diags.AddError("Provider not configured",
		"The agentlab provider was not configured before the sandbox was used. This happens when the provider's "+
			"settings depend on values unknown at plan time; set them to known values.")
	return false
}

// stringList converts strings to a Terraform list (empty, not null, for none).
func stringList(items []string) types.List {
	vals := make([]attr.Value, 0, len(items))
	for _, it := range items {
		vals = append(vals, types.StringValue(it))
	}
	return types.ListValueMust(types.StringType, vals)
}
