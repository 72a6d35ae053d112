// Package provider is the Terraform glue of AgentLab: the provider
// configuration, the agentlab_sandbox, agentlab_workspace and agentlab_job
// resources and the agentlab_sandboxes and agentlab_job_artifacts data
// sources. It translates between Terraform values and the plain Go packages
// under internal/ (pve, lease, profile, cloudinit, workspace, job) and the
// reaper's API client, and holds no Proxmox or lease logic of its own.
package provider

import (
	"context"

	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/provider"
	"github.com/hashicorp/terraform-plugin-framework/provider/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource"

	"github.com/agentlab/terraform-provider-agentlab/internal/clock"
)

var _ provider.Provider = (*agentlabProvider)(nil)

// agentlabProvider is the provider.Provider of AgentLab. Its clock decides
// lease times, so tests can move time forward instead of sleeping.
type agentlabProvider struct {
	version string
	clock   clock.Clock
}

// New returns the constructor that providerserver.Serve needs, for the given
// release version ("dev" for local builds). It uses the wall clock.
func New(version string) func() provider.Provider {
	return func() provider.Provider {
		return &agentlabProvider{version: version, clock: clock.Real{}}
	}
}

// NewTestProvider returns a provider whose lease times come from clk, for
// acceptance tests that advance a fake clock between steps.
func NewTestProvider(clk clock.Clock) provider.Provider {
	return &agentlabProvider{version: "test", clock: clk}
}

// Metadata sets the provider's type name, the prefix of its resources.
func (p *agentlabProvider) Metadata(_ context.Context, _ provider.MetadataRequest, resp *provider.MetadataResponse) {
	resp.TypeName = "agentlab"
	resp.Version = p.version
}

// Schema describes the provider block.
func (p *agentlabProvider) Schema(_ context.Context, _ provider.SchemaRequest, resp *provider.SchemaResponse) {
	resp.Schema = schema.Schema{
		MarkdownDescription: "The AgentLab provider creates short-lived Proxmox VE sandboxes for AI agents " +
			"from templates, with leases that the AgentLab reaper enforces. It talks to the Proxmox VE API " +
			"with an API token; every setting except `node` can come from an environment variable.",
		Attributes: map[string]schema.Attribute{
			"endpoint": schema.StringAttribute{
				MarkdownDescription: "The Proxmox VE API URL, for example `https://pve.example.com:8006`, with or " +
					"without the `/api2/json` suffix. Defaults to the `" + envEndpoint + "` environment variable; " +
					"one of the two is required.",
				Optional: true,
			},
			"api_token": schema.StringAttribute{
				MarkdownDescription: "The Proxmox VE API token, as `USER@REALM!TOKENID=SECRET` (for example " +
					"`terraform@pve!agentlab=0b4c...`). Defaults to the `" + envAPIToken + "` environment variable; " +
					"one of the two is required.",
				Optional:  true,
				Sensitive: true,
			},
			"insecure": schema.BoolAttribute{
				MarkdownDescription: "Whether to skip verification of the API's TLS certificate, as needed for " +
					"Proxmox VE's self-signed default certificate. Defaults to the `" + envInsecure + "` environment " +
					"variable (`true`/`false`), else `false`.",
				Optional: true,
			},
			"node": schema.StringAttribute{
				MarkdownDescription: "The node on which sandboxes that set no `node` (and whose profile sets none) " +
					"are created. When unset, a sandbox is created on the node that holds its template.",
				Optional: true,
			},
			"profiles_dir": schema.StringAttribute{
				MarkdownDescription: "The directory holding sandbox profiles, one `<name>.yaml` file per profile, " +
					"read at plan time. Defaults to the `" + envProfilesDir + "` environment variable, else " +
					"`profiles` relative to the directory Terraform runs in.",
				Optional: true,
			},
			"reaper_url": schema.StringAttribute{
				MarkdownDescription: "The URL of the AgentLab reaper's control API, for example " +
					"`http://127.0.0.1:8847`, `https://reaper.example.com:8847` or `unix:///run/agentlab/reaper.sock`. " +
					"Defaults to the `" + envReaperURL + "` environment variable. Jobs and the job artifacts data source " +
					"need it; sandboxes, workspaces and leases never do (the reaper reads leases from the VMs themselves). " +
					"The provider refuses to send `reaper_token` over plain `http` to anything but a loopback address.",
				Optional: true,
			},
			"reaper_guest_url": schema.StringAttribute{
				MarkdownDescription: "The reaper's guest listener as sandboxes reach it, where the " +
					"`agentlab-heartbeat` command inside a sandbox extends the sandbox's lease (never past " +
					"`max_ttl`). Each sandbox gets its own heartbeat token through cloud-init; its VM metadata keeps " +
					"only the token's sha256. Defaults to the `" + envReaperGuestURL + "` environment variable, else `" +
					defaultReaperGuestURL + "` (the reaper's default `guest.listen`).",
				Optional: true,
			},
			"max_ttl": schema.StringAttribute{
				MarkdownDescription: "The operator's ceiling on sandbox leases, as a Go duration such as `\"24h\"`: " +
					"the `max_ttl` of every sandbox that sets none, and the longest `ttl` or `max_ttl` a sandbox " +
					"may set (a longer one is refused at plan time). Defaults to the `" + envMaxTTL + "` environment " +
					"variable, else `\"168h\"`, the reaper's default `policy.max_lease`, which caps every lease " +
					"whatever this setting says.",
				Optional: true,
			},
			"reaper_token": schema.StringAttribute{
				MarkdownDescription: "The bearer token for the reaper's control API. Defaults to the `" +
					envReaperToken + "` environment variable. Needed when the reaper's control API listens on TCP " +
					"(its `control.token_file`).",
				Optional:  true,
				Sensitive: true,
			},
			"reaper_ca_cert": schema.StringAttribute{
				MarkdownDescription: "PEM text of the CA certificate (or the self-signed certificate) that the " +
					"reaper's TLS certificate is verified against, for an `https` `reaper_url`, e.g. " +
					"`file(\"reaper-ca.pem\")`. Defaults to the `" + envReaperCACert + "` environment variable, else the " +
					"system's trusted CAs.",
				Optional: true,
			},
			"reaper_fingerprint": schema.StringAttribute{
				MarkdownDescription: "The SHA-256 fingerprint of the reaper's TLS certificate (64 hex digits, colons " +
					"allowed), as `agentlab-reaper` prints it for a certificate it generated. When set, the provider " +
					"trusts exactly that certificate (and, with `reaper_ca_cert`, also checks the chain). Defaults to " +
					"the `" + envReaperFingerprint + "` environment variable.",
				Optional: true,
			},
		},
	}
	refuseControlCharsInProvider(resp.Schema.Attributes)
}

// Resources lists the provider's managed resources.
func (p *agentlabProvider) Resources(_ context.Context) []func() resource.Resource {
	return []func() resource.Resource{
		NewSandboxResource,
		NewWorkspaceResource,
		NewJobResource,
	}
}

// DataSources lists the provider's data sources.
func (p *agentlabProvider) DataSources(_ context.Context) []func() datasource.DataSource {
	return []func() datasource.DataSource{
		NewSandboxesDataSource,
		NewJobArtifactsDataSource,
	}
}
