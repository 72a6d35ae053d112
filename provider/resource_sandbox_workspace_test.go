package provider

import (
	"context"
	"testing"

	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/agentlab/terraform-provider-agentlab/internal/pve"
)

func TestParseWorkspaceID(t *testing.T) {
	tests := []struct {
		id, node, volid string
		ok              bool
	}{
		{"pve/local-lvm:vm-104-disk-0", "pve", "local-lvm:vm-104-disk-0", true},
		{"pve2/local:104/vm-104-disk-0.raw", "pve2", "local:104/vm-104-disk-0.raw", true},
		{"pve/vm-104-disk-0", "", "", false},
		{"local-lvm:vm-104-disk-0", "", "", false},
		{"bad node!/local-lvm:vm-1-disk-0", "", "", false},
		{"", "", "", false},
	}
	for _, tt := range tests {
		node, volid, err := parseWorkspaceID(tt.id)
		if (err == nil) != tt.ok || node != tt.node || volid != tt.volid {
			t.Errorf("parseWorkspaceID(%q) = %q, %q, %v; want %q, %q, ok %t", tt.id, node, volid, err, tt.node, tt.volid, tt.ok)
		}
		if tt.ok && workspaceID(node, volid) != tt.id {
			t.Errorf("workspaceID(%q, %q) = %q; want %q", node, volid, workspaceID(node, volid), tt.id)
		}
	}
}

func TestObservedWorkspaceID(t *testing.T) {
	ref := pve.VMRef{Node: "pve", VMID: 120}
	tests := []struct {
		name string
		raw  map[string]any
		want types.String
	}{
		{"none", map[string]any{"scsi0": "local-lvm:vm-120-disk-0,size=8G"}, types.StringNull()},
		{"workspace", map[string]any{"scsi1": "local-lvm:vm-104-disk-0,size=1G"}, types.StringValue("pve/local-lvm:vm-104-disk-0")},
		{"the VM's own second disk", map[string]any{"scsi1": "local-lvm:vm-120-disk-1,size=1G"}, types.StringNull()},
		{"a cd-rom", map[string]any{"scsi1": "local:iso/x.iso,media=cdrom"}, types.StringNull()},
	}
	for _, tt := range tests {
		if got := observedWorkspaceID(pve.VMConfig{Raw: tt.raw}, ref); !got.Equal(tt.want) {
			t.Errorf("%s: got %s; want %s", tt.name, got, tt.want)
		}
	}
}

func TestSSHCommandFollowsTheAddress(t *testing.T) {
	tests := []struct {
		ip, want types.String
	}{
		{types.StringValue("10.77.0.5"), types.StringValue("ssh agent@10.77.0.5")},
		{types.StringNull(), types.StringNull()},
		{types.StringUnknown(), types.StringUnknown()},
	}
	for _, tt := range tests {
		m := sandboxModel{IPAddress: tt.ip}
		planSSH(&m)
		if !m.SSHCommand.Equal(tt.want) || m.SSHUser.ValueString() != "agent" {
			t.Errorf("ip %s: ssh_command %s, ssh_user %s; want %s, agent", tt.ip, m.SSHCommand, m.SSHUser, tt.want)
		}
	}
}

// TestJobAndWorkspaceRefuseControlChars checks the string attributes of
// agentlab_workspace, agentlab_job (but task, a shell script) and
// agentlab_job_artifacts for the control-character validator.
func TestJobAndWorkspaceRefuseControlChars(t *testing.T) {
	ctx := context.Background()
	const bad = "ok\x1b[2J\nroot"
	refuses := func(vs []validator.String) bool {
		for _, v := range vs {
			var resp validator.StringResponse
			v.ValidateString(ctx, validator.StringRequest{Path: path.Root("x"), ConfigValue: types.StringValue(bad)}, &resp)
			if resp.Diagnostics.HasError() {
				return true
			}
		}
		return false
	}
	for _, r := range []resource.Resource{NewWorkspaceResource(), NewJobResource()} {
		var rs resource.SchemaResponse
		r.Schema(ctx, resource.SchemaRequest{}, &rs)
		for name, a := range rs.Schema.Attributes {
			v, ok := a.(interface{ StringValidators() []validator.String })
			if !ok || (!a.IsOptional() && !a.IsRequired()) {
				continue
			}
			if got, want := refuses(v.StringValidators()), name != "task"; got != want {
				t.Errorf("%T.%s refuses control characters: %t; want %t", r, name, got, want)
			}
		}
	}
	var ds datasource.SchemaResponse
	NewJobArtifactsDataSource().Schema(ctx, datasource.SchemaRequest{}, &ds)
	for name, a := range ds.Schema.Attributes {
		if v, ok := a.(interface{ StringValidators() []validator.String }); ok && (a.IsOptional() || a.IsRequired()) && !refuses(v.StringValidators()) {
			t.Errorf("agentlab_job_artifacts.%s accepts control characters", name)
		}
	}
}
