package provider

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/provider"
	"github.com/hashicorp/terraform-plugin-framework/tfsdk"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-go/tftypes"

	"github.com/agentlab/terraform-provider-agentlab/internal/clock"
)

func TestResolveProviderSettings(t *testing.T) {
	const token = "terraform@pve!agentlab=0b4c3a1e-1111-2222-3333-444455556666"
	null := providerModel{
		Endpoint: types.StringNull(), APIToken: types.StringNull(), Insecure: types.BoolNull(),
		Node: types.StringNull(), ProfilesDir: types.StringNull(), ReaperURL: types.StringNull(),
		ReaperToken: types.StringNull(), ReaperGuestURL: types.StringNull(), MaxTTL: types.StringNull(),
		ReaperCACert: types.StringNull(), ReaperFingerprint: types.StringNull(),
	}
	tests := []struct {
		name    string
		model   func(m *providerModel)
		env     map[string]string
		want    providerSettings
		wantErr string // substring of the error summary; "" for none
	}{
		{
			name: "from the environment, endpoint without suffix",
			env: map[string]string{envEndpoint: "https://pve.example.com:8006", envAPIToken: token,
				envInsecure: "true", envProfilesDir: "/etc/agentlab/profiles"},
			want: providerSettings{Endpoint: "https://pve.example.com:8006/api2/json", APIToken: token,
				TokenUser: "terraform@pve", Insecure: true, ProfilesDir: "/etc/agentlab/profiles",
				ReaperGuestURL: defaultReaperGuestURL, MaxTTL: defaultMaxTTL},
		},
		{
			name: "block beats environment, endpoint with suffix",
			model: func(m *providerModel) {
				m.Endpoint = types.StringValue("https://a:8006/api2/json/")
				m.APIToken = types.StringValue(token)
				m.Insecure = types.BoolValue(false)
				m.Node = types.StringValue("pve2")
			},
			env: map[string]string{envEndpoint: "https://b:8006", envInsecure: "true"},
			want: providerSettings{Endpoint: "https://a:8006/api2/json", APIToken: token, TokenUser: "terraform@pve",
				Node: "pve2", ProfilesDir: defaultProfilesDir, ReaperGuestURL: defaultReaperGuestURL, MaxTTL: defaultMaxTTL},
		},
		{
			name: "reaper guest url from the environment",
			env: map[string]string{envEndpoint: "https://x:8006", envAPIToken: token,
				envReaperGuestURL: "http://192.0.2.1:8846"},
			want: providerSettings{Endpoint: "https://x:8006/api2/json", APIToken: token, TokenUser: "terraform@pve",
				ProfilesDir: defaultProfilesDir, ReaperGuestURL: "http://192.0.2.1:8846", MaxTTL: defaultMaxTTL},
		},
		{
			name: "max_ttl from the environment",
			env:  map[string]string{envEndpoint: "https://x:8006", envAPIToken: token, envMaxTTL: "24h"},
			want: providerSettings{Endpoint: "https://x:8006/api2/json", APIToken: token, TokenUser: "terraform@pve",
				ProfilesDir: defaultProfilesDir, ReaperGuestURL: defaultReaperGuestURL, MaxTTL: 24 * time.Hour},
		},
		{
			name:  "max_ttl block beats environment",
			model: func(m *providerModel) { m.MaxTTL = types.StringValue("2h") },
			env:   map[string]string{envEndpoint: "https://x:8006", envAPIToken: token, envMaxTTL: "24h"},
			want: providerSettings{Endpoint: "https://x:8006/api2/json", APIToken: token, TokenUser: "terraform@pve",
				ProfilesDir: defaultProfilesDir, ReaperGuestURL: defaultReaperGuestURL, MaxTTL: 2 * time.Hour},
		},
		{name: "bad max_ttl", env: map[string]string{envEndpoint: "https://x:8006", envAPIToken: token, envMaxTTL: "a week"}, wantErr: "Invalid max_ttl"},
		{name: "max_ttl under a minute", env: map[string]string{envEndpoint: "https://x:8006", envAPIToken: token, envMaxTTL: "30s"}, wantErr: "Invalid max_ttl"},
		{name: "missing endpoint", env: map[string]string{envAPIToken: token}, wantErr: "Missing Proxmox VE endpoint"},
		{name: "bad endpoint scheme", env: map[string]string{envEndpoint: "ftp://x", envAPIToken: token}, wantErr: "Invalid Proxmox VE endpoint"},
		{name: "missing token", env: map[string]string{envEndpoint: "https://x:8006"}, wantErr: "Missing Proxmox VE API token"},
		{name: "token without secret", env: map[string]string{envEndpoint: "https://x:8006", envAPIToken: "root@pam!tf"}, wantErr: "Malformed Proxmox VE API token"},
		{name: "bad insecure", env: map[string]string{envEndpoint: "https://x:8006", envAPIToken: token, envInsecure: "maybe"}, wantErr: "Invalid " + envInsecure},
		{name: "bad reaper guest url", env: map[string]string{envEndpoint: "https://x:8006", envAPIToken: token, envReaperGuestURL: "10.77.0.1:8846"}, wantErr: "Invalid reaper guest URL"},
		{name: "bad reaper url", env: map[string]string{envEndpoint: "https://x:8006", envAPIToken: token, envReaperURL: "localhost:8847"}, wantErr: "Invalid reaper URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := null
			if tt.model != nil {
				tt.model(&m)
			}
			got, diags := resolveProviderSettings(m, func(k string) string { return tt.env[k] })
			if tt.wantErr != "" {
				if !diags.HasError() || !strings.Contains(diags.Errors()[0].Summary(), tt.wantErr) {
					t.Fatalf("diagnostics = %v; want an error %q", diags, tt.wantErr)
				}
				if strings.Contains(diags.Errors()[0].Detail(), "0b4c3a1e") {
					t.Errorf("diagnostic detail shows the token secret: %s", diags.Errors()[0].Detail())
				}
				return
			}
			if diags.HasError() {
				t.Fatalf("resolveProviderSettings: %v", diags)
			}
			if got != tt.want {
				t.Errorf("got %+v; want %+v", got, tt.want)
			}
		})
	}
}

func TestParseSandboxID(t *testing.T) {
	tests := []struct {
		in       string
		wantNode string
		wantID   int64
		wantErr  bool
	}{
		{in: "pve/101", wantNode: "pve", wantID: 101},
		{in: "node-2.lab/999999999", wantNode: "node-2.lab", wantID: 999999999},
		{in: "pve/99", wantErr: true},
		{in: "pve/0101", wantErr: true},
		{in: "101", wantErr: true},
		{in: "/101", wantErr: true},
		{in: "pve/abc", wantErr: true},
	}
	for _, tt := range tests {
		node, id, err := parseSandboxID(tt.in)
		if tt.wantErr {
			if err == nil {
				t.Errorf("parseSandboxID(%q) = %q, %d; want an error", tt.in, node, id)
			}
			continue
		}
		if err != nil || node != tt.wantNode || id != tt.wantID {
			t.Errorf("parseSandboxID(%q) = %q, %d, %v; want %q, %d", tt.in, node, id, err, tt.wantNode, tt.wantID)
		}
		if back := sandboxID(node, id); back != tt.in {
			t.Errorf("sandboxID(%q, %d) = %q; want %q", node, id, back, tt.in)
		}
	}
}

func TestConfigureUnknownValues(t *testing.T) {
	ctx := context.Background()
	p := NewTestProvider(clock.NewFake(t0))
	var sresp provider.SchemaResponse
	p.Schema(ctx, provider.SchemaRequest{}, &sresp)
	typ := sresp.Schema.Type().TerraformType(ctx).(tftypes.Object)
	vals := map[string]tftypes.Value{}
	for name, at := range typ.AttributeTypes {
		vals[name] = tftypes.NewValue(at, nil)
	}
	vals["endpoint"] = tftypes.NewValue(tftypes.String, tftypes.UnknownValue)
	cfg := tfsdk.Config{Schema: sresp.Schema, Raw: tftypes.NewValue(typ, vals)}

	tests := []struct {
		name         string
		deferral     bool
		wantDeferred bool
	}{
		{name: "deferral allowed", deferral: true, wantDeferred: true},
		{name: "deferral not allowed", deferral: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var resp provider.ConfigureResponse
			p.Configure(ctx, provider.ConfigureRequest{Config: cfg,
				ClientCapabilities: provider.ConfigureProviderClientCapabilities{DeferralAllowed: tt.deferral}}, &resp)
			if got := resp.Deferred != nil; got != tt.wantDeferred {
				t.Errorf("deferred = %t; want %t", got, tt.wantDeferred)
			}
			if got := resp.Diagnostics.HasError(); got == tt.wantDeferred {
				t.Errorf("error = %t (%v); want %t", got, resp.Diagnostics, !tt.wantDeferred)
			}
			if !tt.wantDeferred && !strings.Contains(resp.Diagnostics.Errors()[0].Detail(), "endpoint") {
				t.Errorf("error detail %q does not name endpoint", resp.Diagnostics.Errors()[0].Detail())
			}
			if resp.ResourceData != nil {
				t.Errorf("ResourceData = %v; want none while the configuration is unknown", resp.ResourceData)
			}
		})
	}
}
