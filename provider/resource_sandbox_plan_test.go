package provider

import (
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/agentlab/terraform-provider-agentlab/internal/lease"
	"github.com/agentlab/terraform-provider-agentlab/internal/profile"
)

// nullModel returns a sandbox model with every attribute null, like a
// configuration that sets nothing.
func nullModel() sandboxModel {
	return sandboxModel{
		ID: types.StringNull(), VMID: types.Int64Null(), Name: types.StringNull(),
		TemplateVMID: types.Int64Null(), Node: types.StringNull(), Cores: types.Int64Null(),
		Memory: types.Int64Null(), DiskSize: types.StringNull(), FullClone: types.BoolNull(),
		Storage: types.StringNull(), Bridge: types.StringNull(), Firewall: types.BoolNull(),
		SSHAuthorizedKeys: types.ListNull(types.StringType), TTL: types.StringNull(),
		MaxTTL: types.StringNull(), OnExpiry: types.StringNull(), RenewOnApply: types.BoolNull(),
		RebootOnChange: types.BoolNull(), WaitForIP: types.BoolNull(), Profile: types.StringNull(),
		Owner: types.StringNull(), Tags: types.SetNull(types.StringType), ISOStorage: types.StringNull(),
		IPAddress: types.StringNull(), LeaseExpiresAt: types.StringNull(), Status: types.StringNull(),
	}
}

func ptr[T any](v T) *T { return &v }

// appliedState returns the state of a sandbox created from cfg with defaults.
func appliedState(t *testing.T, cfg sandboxModel) sandboxModel {
	t.Helper()
	out, diags := planSandbox(planInput{Config: cfg, Proposed: cfg, DefaultOwner: "terraform@pve", MaxTTLCeiling: defaultMaxTTL})
	if diags.HasError() {
		t.Fatalf("create plan: %v", diags)
	}
	s := out.Plan
	s.ID = types.StringValue("pve/101")
	s.VMID = types.Int64Value(101)
	s.Node = types.StringValue("pve")
	if s.Name.IsUnknown() {
		s.Name = types.StringValue("agentlab-101")
	}
	if s.DiskSize.IsUnknown() {
		s.DiskSize = types.StringValue("10G")
	}
	s.Status = types.StringValue("running")
	s.LeaseExpiresAt = types.StringValue("2026-01-01T01:00:00Z")
	if s.IPAddress.IsUnknown() {
		s.IPAddress = types.StringValue("10.0.0.5")
	}
	return s
}

func TestPlanSandboxCreateDefaultsAndProfile(t *testing.T) {
	cfg := nullModel()
	cfg.TemplateVMID = types.Int64Value(9000)
	cfg.Cores = types.Int64Value(8)

	prof := &profile.Profile{
		Name:         "yolo",
		TemplateVMID: ptr(9100),
		Node:         ptr("pve2"),
		Network:      profile.Network{Bridge: ptr("vmbr1"), Firewall: ptr(false)},
		Resources:    profile.Resources{Cores: ptr(4), MemoryMiB: ptr(6144), DiskSize: ptr("40G")},
		Behavior:     profile.Behavior{TTL: ptr(3 * time.Hour), KeepaliveDefault: ptr(true)},
	}
	tests := []struct {
		name    string
		profile *profile.Profile
		check   func(t *testing.T, p sandboxModel)
	}{
		{
			name: "defaults",
			check: func(t *testing.T, p sandboxModel) {
				if got := p.Cores.ValueInt64(); got != 8 {
					t.Errorf("cores = %d; want 8 (configured)", got)
				}
				if got := p.Memory.ValueInt64(); got != defaultMemory {
					t.Errorf("memory = %d; want %d", got, defaultMemory)
				}
				if got := p.Bridge.ValueString(); got != defaultBridge {
					t.Errorf("bridge = %q; want %q", got, defaultBridge)
				}
				if got := p.TTL.ValueString(); got != defaultTTL {
					t.Errorf("ttl = %q; want %q", got, defaultTTL)
				}
				if !p.DiskSize.IsUnknown() {
					t.Errorf("disk_size = %v; want unknown (the template's size)", p.DiskSize)
				}
				if got := p.MaxTTL.ValueString(); got != "168h" {
					t.Errorf("max_ttl = %q; want the provider's max_ttl \"168h\"", got)
				}
				if got := p.Owner.ValueString(); got != "terraform@pve" {
					t.Errorf("owner = %q; want the token user", got)
				}
				if !p.IPAddress.IsNull() {
					t.Errorf("ip_address = %v; want null without wait_for_ip", p.IPAddress)
				}
				if !p.LeaseExpiresAt.IsUnknown() || !p.VMID.IsUnknown() {
					t.Errorf("lease_expires_at, vmid = %v, %v; want unknown", p.LeaseExpiresAt, p.VMID)
				}
			},
		},
		{
			name:    "profile fills what the configuration leaves unset",
			profile: prof,
			check: func(t *testing.T, p sandboxModel) {
				if got := p.TemplateVMID.ValueInt64(); got != 9000 {
					t.Errorf("template_vmid = %d; want 9000 (configured beats profile)", got)
				}
				if got := p.Cores.ValueInt64(); got != 8 {
					t.Errorf("cores = %d; want 8 (configured beats profile)", got)
				}
				if got := p.Memory.ValueInt64(); got != 6144 {
					t.Errorf("memory = %d; want 6144 from the profile", got)
				}
				if got := p.DiskSize.ValueString(); got != "40G" {
					t.Errorf("disk_size = %q; want 40G from the profile", got)
				}
				if got := p.Bridge.ValueString(); got != "vmbr1" {
					t.Errorf("bridge = %q; want vmbr1 from the profile", got)
				}
				if got := p.Node.ValueString(); got != "pve2" {
					t.Errorf("node = %q; want pve2 from the profile", got)
				}
				if p.Firewall.ValueBool() {
					t.Errorf("firewall = true; want false from the profile")
				}
				if got := p.TTL.ValueString(); got != "3h" {
					t.Errorf("ttl = %q; want 3h from the profile", got)
				}
				if !p.RenewOnApply.ValueBool() {
					t.Errorf("renew_on_apply = false; want true from keepalive_default")
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, diags := planSandbox(planInput{Config: cfg, Proposed: cfg, Profile: tt.profile, DefaultOwner: "terraform@pve", MaxTTLCeiling: defaultMaxTTL})
			if diags.HasError() {
				t.Fatalf("planSandbox: %v", diags)
			}
			if len(out.RequiresReplace) != 0 {
				t.Errorf("RequiresReplace = %v on create; want none", out.RequiresReplace)
			}
			tt.check(t, out.Plan)
		})
	}
}

func TestPlanSandboxUnknownProfileLeavesValuesUnknown(t *testing.T) {
	cfg := nullModel()
	cfg.Profile = types.StringUnknown()
	cfg.Memory = types.Int64Value(1024)
	out, diags := planSandbox(planInput{Config: cfg, Proposed: cfg, ProfileUnknown: true})
	if diags.HasError() {
		t.Fatalf("planSandbox: %v", diags)
	}
	p := out.Plan
	if !p.Cores.IsUnknown() || !p.TemplateVMID.IsUnknown() || !p.TTL.IsUnknown() {
		t.Errorf("cores, template_vmid, ttl = %v, %v, %v; want unknown while the profile is", p.Cores, p.TemplateVMID, p.TTL)
	}
	if got := p.Memory.ValueInt64(); got != 1024 {
		t.Errorf("memory = %d; want the configured 1024", got)
	}
	if got := p.OnExpiry.ValueString(); got != defaultOnExpiry {
		t.Errorf("on_expiry = %q; want %q (profiles do not set it)", got, defaultOnExpiry)
	}
}

func TestPlanSandboxErrors(t *testing.T) {
	base := nullModel()
	base.TemplateVMID = types.Int64Value(9000)
	base.DiskSize = types.StringValue("20G")
	state := appliedState(t, base)
	created := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l, err := lease.New(created, time.Hour, 4*time.Hour, lease.Destroy)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		change  func(m *sandboxModel)
		create  bool
		now     time.Time
		wantAt  string
		wantMsg string
	}{
		{
			name:    "missing template",
			create:  true,
			change:  func(m *sandboxModel) { m.TemplateVMID = types.Int64Null() },
			wantAt:  "template_vmid",
			wantMsg: "template",
		},
		{
			name:    "storage without full clone",
			create:  true,
			change:  func(m *sandboxModel) { m.Storage = types.StringValue("fast") },
			wantAt:  "storage",
			wantMsg: "full_clone = true",
		},
		{
			name:    "ttl above max_ttl",
			create:  true,
			change:  func(m *sandboxModel) { m.TTL = types.StringValue("5h"); m.MaxTTL = types.StringValue("4h") },
			wantAt:  "ttl",
			wantMsg: "max_ttl",
		},
		{
			name:    "ttl beyond the provider's max_ttl",
			create:  true,
			change:  func(m *sandboxModel) { m.TTL = types.StringValue("2562047h"); m.MaxTTL = types.StringNull() },
			wantAt:  "ttl",
			wantMsg: "Lower ttl to at most 168h",
		},
		{
			name:    "max_ttl beyond the provider's max_ttl",
			create:  true,
			change:  func(m *sandboxModel) { m.MaxTTL = types.StringValue("200h") },
			wantAt:  "max_ttl",
			wantMsg: "Lower max_ttl to at most 168h",
		},
		{
			name:    "negative max_ttl",
			create:  true,
			change:  func(m *sandboxModel) { m.MaxTTL = types.StringValue("-1h") },
			wantAt:  "max_ttl",
			wantMsg: "must be positive",
		},
		{
			name:    "disk shrink",
			change:  func(m *sandboxModel) { m.DiskSize = types.StringValue("10G") },
			now:     created.Add(time.Minute),
			wantAt:  "disk_size",
			wantMsg: "cannot shrink",
		},
		{
			name: "renewal past max_ttl",
			change: func(m *sandboxModel) {
				m.TTL = types.StringValue("2h")
				m.MaxTTL = types.StringValue("4h")
			},
			now:     created.Add(3 * time.Hour),
			wantAt:  "ttl",
			wantMsg: "max_ttl",
		},
		{
			name: "max_ttl below the current lease",
			change: func(m *sandboxModel) {
				m.MaxTTL = types.StringValue("30m")
			},
			now:     created.Add(time.Minute),
			wantAt:  "max_ttl",
			wantMsg: "Raise max_ttl",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := base
			cfg.MaxTTL = types.StringValue("4h")
			tt.change(&cfg)
			in := planInput{Config: cfg, Proposed: cfg, DefaultOwner: "terraform@pve", Now: tt.now, Lease: &l, MaxTTLCeiling: defaultMaxTTL}
			if !tt.create {
				st := state
				st.MaxTTL = types.StringValue("4h")
				in.State = &st
			}
			_, diags := planSandbox(in)
			if !diags.HasError() {
				t.Fatalf("planSandbox: no error; want one at %s", tt.wantAt)
			}
			found := false
			for _, d := range diags.Errors() {
				wd, ok := d.(interface{ Path() path.Path })
				if ok && wd.Path().Equal(path.Root(tt.wantAt)) && strings.Contains(d.Detail(), tt.wantMsg) {
					found = true
				}
			}
			if !found {
				t.Errorf("diagnostics = %v; want an error at %s mentioning %q", diags, tt.wantAt, tt.wantMsg)
			}
		})
	}
}

func TestPlanSandboxUpdate(t *testing.T) {
	base := nullModel()
	base.TemplateVMID = types.Int64Value(9000)
	base.WaitForIP = types.BoolValue(true)
	state := appliedState(t, base)
	created := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l, err := lease.New(created, time.Hour, 0, lease.Destroy)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name        string
		change      func(m *sandboxModel)
		wantReplace []string
		wantRenew   bool
		wantIP      string // "unknown", "null" or "state"
	}{
		{name: "no change", change: func(*sandboxModel) {}, wantIP: "state"},
		{name: "same ttl spelled differently", change: func(m *sandboxModel) { m.TTL = types.StringValue("60m") }, wantIP: "state"},
		{name: "ttl change renews", change: func(m *sandboxModel) { m.TTL = types.StringValue("2h") }, wantRenew: true, wantIP: "state"},
		{name: "renew_on_apply renews", change: func(m *sandboxModel) { m.RenewOnApply = types.BoolValue(true) }, wantRenew: true, wantIP: "state"},
		{name: "cores in place", change: func(m *sandboxModel) { m.Cores = types.Int64Value(4) }, wantIP: "state"},
		{name: "cores with reboot", change: func(m *sandboxModel) {
			m.Cores = types.Int64Value(4)
			m.RebootOnChange = types.BoolValue(true)
		}, wantIP: "unknown"},
		{name: "bridge change reads the IP again", change: func(m *sandboxModel) { m.Bridge = types.StringValue("vmbr9") }, wantIP: "unknown"},
		{name: "wait_for_ip off", change: func(m *sandboxModel) { m.WaitForIP = types.BoolValue(false) }, wantIP: "null"},
		{name: "template replaces", change: func(m *sandboxModel) { m.TemplateVMID = types.Int64Value(9001) }, wantReplace: []string{"template_vmid"}, wantRenew: true, wantIP: "unknown"},
		{name: "full clone replaces", change: func(m *sandboxModel) { m.FullClone = types.BoolValue(true) }, wantReplace: []string{"full_clone"}, wantRenew: true, wantIP: "unknown"},
		{name: "node replaces", change: func(m *sandboxModel) { m.Node = types.StringValue("pve2") }, wantReplace: []string{"node"}, wantRenew: true, wantIP: "unknown"},
		{name: "keys replace", change: func(m *sandboxModel) {
			m.SSHAuthorizedKeys = types.ListValueMust(types.StringType, nil)
			m.SSHAuthorizedKeys = stringList([]string{"ssh-ed25519 AAAA a@b"})
		}, wantReplace: []string{"ssh_authorized_keys"}, wantRenew: true, wantIP: "unknown"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := base
			tt.change(&cfg)
			st := state
			out, diags := planSandbox(planInput{Config: cfg, Proposed: cfg, State: &st, DefaultOwner: "terraform@pve",
				Now: created.Add(time.Minute), Lease: &l, MaxTTLCeiling: defaultMaxTTL})
			if diags.HasError() {
				t.Fatalf("planSandbox: %v", diags)
			}
			var gotReplace []string
			for _, p := range out.RequiresReplace {
				gotReplace = append(gotReplace, p.String())
			}
			if strings.Join(gotReplace, ",") != strings.Join(tt.wantReplace, ",") {
				t.Errorf("RequiresReplace = %v; want %v", gotReplace, tt.wantReplace)
			}
			if got := out.Plan.LeaseExpiresAt.IsUnknown(); got != tt.wantRenew {
				t.Errorf("lease_expires_at unknown = %t; want %t", got, tt.wantRenew)
			}
			ip := out.Plan.IPAddress
			var gotIP string
			switch {
			case ip.IsUnknown():
				gotIP = "unknown"
			case ip.IsNull():
				gotIP = "null"
			case ip.Equal(st.IPAddress):
				gotIP = "state"
			}
			if gotIP != tt.wantIP {
				t.Errorf("ip_address = %v (%s); want %s", ip, gotIP, tt.wantIP)
			}
			if len(tt.wantReplace) == 0 && !tt.wantRenew {
				// Everything else equals the state: the plan is empty.
				p := out.Plan
				p.IPAddress = st.IPAddress
				if tt.name == "no change" || tt.name == "same ttl spelled differently" {
					p.TTL = st.TTL
					if !p.Cores.Equal(st.Cores) || !p.Name.Equal(st.Name) || !p.DiskSize.Equal(st.DiskSize) ||
						!p.Tags.Equal(st.Tags) || !p.Owner.Equal(st.Owner) || !p.Node.Equal(st.Node) {
						t.Errorf("plan differs from state with no change:\nplan  %+v\nstate %+v", p, st)
					}
				}
			}
		})
	}
}

func TestPlanSandboxImportedNullsDoNotReplace(t *testing.T) {
	base := nullModel()
	base.TemplateVMID = types.Int64Value(9000)
	base.SSHAuthorizedKeys = stringList([]string{"ssh-ed25519 AAAA a@b"})
	state := appliedState(t, base)
	// What an import cannot read back.
	state.TemplateVMID = types.Int64Null()
	state.FullClone = types.BoolNull()
	state.SSHAuthorizedKeys = types.ListNull(types.StringType)
	out, diags := planSandbox(planInput{Config: base, Proposed: base, State: &state, DefaultOwner: "terraform@pve", MaxTTLCeiling: defaultMaxTTL})
	if diags.HasError() {
		t.Fatalf("planSandbox: %v", diags)
	}
	if len(out.RequiresReplace) != 0 {
		t.Errorf("RequiresReplace = %v after import; want none", out.RequiresReplace)
	}
}

func TestFormatDuration(t *testing.T) {
	tests := []struct {
		in   time.Duration
		want string
	}{
		{3 * time.Hour, "3h"},
		{90 * time.Minute, "1h30m"},
		{45 * time.Minute, "45m"},
		{30 * time.Second, "30s"},
		{time.Hour + time.Second, "1h0m1s"},
	}
	for _, tt := range tests {
		if got := formatDuration(tt.in); got != tt.want {
			t.Errorf("formatDuration(%s) = %q; want %q", tt.in, got, tt.want)
		}
		back, err := time.ParseDuration(formatDuration(tt.in))
		if err != nil || back != tt.in {
			t.Errorf("ParseDuration(formatDuration(%s)) = %s, %v", tt.in, back, err)
		}
	}
}

func TestPlanSandboxKeepTagWarns(t *testing.T) {
	for _, tags := range [][]string{{"team-a"}, {"agentlab-keep", "team-a"}} {
		cfg := nullModel()
		cfg.TemplateVMID = types.Int64Value(9000)
		cfg.Tags = stringSet(tags)
		_, diags := planSandbox(planInput{Config: cfg, Proposed: cfg, DefaultOwner: "terraform@pve", MaxTTLCeiling: defaultMaxTTL})
		if diags.HasError() {
			t.Fatalf("tags %v: %v", tags, diags)
		}
		warned := false
		for _, d := range diags.Warnings() {
			wd, ok := d.(interface{ Path() path.Path })
			if ok && wd.Path().Equal(path.Root("tags")) && strings.Contains(d.Detail(), "policy.user_keep: true") &&
				strings.Contains(d.Detail(), "agentlab-reaper keep VMID") {
				warned = true
			}
		}
		if want := hasTag(tags, "agentlab-keep"); warned != want {
			t.Errorf("tags %v: warned = %v; want %v (diagnostics %v)", tags, warned, want, diags)
		}
	}
}
