package provider

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/provider"

	"github.com/agentlab/terraform-provider-agentlab/internal/clock"
	"github.com/agentlab/terraform-provider-agentlab/internal/privileges"
	"github.com/agentlab/terraform-provider-agentlab/internal/pve"
	"github.com/agentlab/terraform-provider-agentlab/reaper/api"
)

// providerData is what Configure hands to resources and data sources.
type providerData struct {
	client   *pve.Client
	clock    clock.Clock
	settings providerSettings
	// reaper is the reaper's control API client; nil without reaper_url.
	reaper *api.Client
}

// Configure resolves the provider block against the environment, checks it,
// and connects to Proxmox VE once, so that a wrong endpoint, token or
// certificate is reported here with a clear message rather than by the
// first resource.
func (p *agentlabProvider) Configure(ctx context.Context, req provider.ConfigureRequest, resp *provider.ConfigureResponse) {
	var m providerModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}

	// Values that depend on resources not applied yet: defer when Terraform
	// allows it, else say what to do.
	if unknown := unknownProviderAttributes(m); len(unknown) > 0 {
		if req.ClientCapabilities.DeferralAllowed {
			resp.Deferred = &provider.Deferred{Reason: provider.DeferredReasonProviderConfigUnknown}
			return
		}
		for _, name := range unknown {
			resp.Diagnostics.AddAttributeError(path.Root(name), "Unknown provider configuration value",
				fmt.Sprintf("The provider's %s depends on a value that is only known after apply, so the provider "+
					"cannot connect to Proxmox VE to plan. Set it to a known value (or use its environment "+
					"variable), or apply the resources it depends on first with -target.", name))
		}
		return
	}

	settings, diags := resolveProviderSettings(m, os.Getenv)
	resp.Diagnostics.Append(diags...)
	if resp.Diagnostics.HasError() {
		return
	}

	client, err := newPVEClient(ctx, settings, userAgent(p.version, req.TerraformVersion))
	if err != nil {
		resp.Diagnostics.AddError("Cannot set up the Proxmox VE client",
			fmt.Sprintf("%s. Check endpoint and api_token.", err))
		return
	}
	if err := ping(ctx, client); err != nil {
		resp.Diagnostics.Append(connectDiagnostic(settings, err))
		return
	}

	rc, err := newReaperClient(settings)
	if err != nil && !errors.Is(err, errNoReaper) {
		resp.Diagnostics.AddAttributeError(path.Root("reaper_url"), "Cannot set up the reaper client", err.Error()+".")
		return
	}
	data := &providerData{client: client, clock: p.clock, settings: settings, reaper: rc}
	resp.ResourceData = data
	resp.DataSourceData = data
}

// newPVEClient builds the Proxmox VE client the resources use. Every call it
// makes is logged through tflog with the calling request's context, so
// TF_LOG=DEBUG shows them; the token's secret is masked should any text
// carry it.
func newPVEClient(ctx context.Context, s providerSettings, ua string) (*pve.Client, error) {
	_, secret, _ := strings.Cut(s.APIToken, "=")
	return pve.New(ctx, pve.Config{
		Endpoint:  s.Endpoint,
		APIToken:  s.APIToken,
		Insecure:  s.Insecure,
		Logger:    slog.New(newTFLogHandler(s.APIToken, secret)),
		UserAgent: ua,
	})
}

// userAgent names the provider, its release version and the Terraform (or
// OpenTofu) version that runs it, e.g.
// "terraform-provider-agentlab/1.2.3 (terraform/1.11.0)", so that
// PVE's access log shows who made a call.
func userAgent(version, terraformVersion string) string {
	ua := "terraform-provider-agentlab/" + version
	if terraformVersion != "" {
		ua += " (terraform/" + terraformVersion + ")"
	}
	return ua
}

// connectDiagnostic explains a failed first contact with Proxmox VE: what
// went wrong in a short summary, and what to do in the detail.
func connectDiagnostic(s providerSettings, err error) diag.Diagnostic {
	endpoint := strings.TrimSuffix(s.Endpoint, "/api2/json")
	switch {
	case errors.Is(err, pve.ErrUntrustedCertificate):
		return diag.NewAttributeErrorDiagnostic(path.Root("insecure"), "Proxmox VE's TLS certificate is not trusted",
			fmt.Sprintf("The provider could not verify the TLS certificate of %s: %s.\n\nProxmox VE uses a "+
				"self-signed certificate by default. Either install a certificate signed by a CA this machine "+
				"trusts, or set insecure = true in the provider block (or %s=true) to skip verification.",
				endpoint, err, envInsecure))
	case errors.Is(err, pve.ErrUnauthorized):
		return diag.NewAttributeErrorDiagnostic(path.Root("api_token"), "Proxmox VE rejected the API token",
			fmt.Sprintf("%s answered 401 to the API token of %s.\n\nCheck that the token ID and secret are "+
				"exactly as Proxmox VE showed them, that the token exists and has not expired (Datacenter > "+
				"Permissions > API Tokens), and that the endpoint is the cluster the token belongs to.",
				endpoint, s.TokenUser))
	case errors.Is(err, pve.ErrForbidden):
		return diag.NewAttributeErrorDiagnostic(path.Root("api_token"), "The API token lacks privileges",
			fmt.Sprintf("%s accepted the API token but refused the request: %s.\n\nGrant the token (or, with "+
				"privilege separation, the token itself) a role with %s on / or on the sandboxes' pool and "+
				"storages, for example:\n\n    %s", endpoint, err,
				strings.Join(privileges.Names(privileges.Provider()), ", "),
				privileges.RoleCommand(privileges.ProviderRole, privileges.Provider())))
	case errors.Is(err, pve.ErrUnreachable):
		return diag.NewAttributeErrorDiagnostic(path.Root("endpoint"), "Cannot reach Proxmox VE",
			fmt.Sprintf("No connection could be made to %s: %s.\n\nCheck the host name and port (the API "+
				"listens on 8006 by default), that this machine can reach it, and that the scheme is https.",
				endpoint, err))
	case errors.Is(err, pve.ErrNotProxmox):
		return diag.NewAttributeErrorDiagnostic(path.Root("endpoint"), "The endpoint is not a Proxmox VE API",
			fmt.Sprintf("%s answered, but not like the Proxmox VE API: %s.\n\nPoint endpoint at the Proxmox VE "+
				"web interface's address, e.g. https://pve.example.com:8006.", endpoint, err))
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		return diag.NewErrorDiagnostic("Connecting to Proxmox VE was interrupted",
			fmt.Sprintf("The first request to %s did not finish: %s. Run Terraform again.", endpoint, err))
	}
	return diag.NewErrorDiagnostic("Cannot connect to Proxmox VE",
		fmt.Sprintf("The first request to %s failed: %s.\n\nCheck endpoint, api_token and insecure in the "+
			"provider block (or %s, %s and %s).", endpoint, err, envEndpoint, envAPIToken, envInsecure))
}

// pingAttempts bounds the first contact's attempts; only server-side
// failures (5xx, dropped connections) are tried again, never a rejected
// token or an untrusted certificate.
const pingAttempts = 4

// ping checks the endpoint and token, trying again briefly when the server
// fails on its side: one unlucky answer must not fail a whole plan.
func ping(ctx context.Context, c *pve.Client) error {
	delay := 200 * time.Millisecond
	for attempt := 1; ; attempt++ {
		_, err := c.Ping(ctx)
		var ae *pve.APIError
		retry := pve.IsTransient(err) || (errors.As(err, &ae) && ae.Status >= 500)
		if err == nil || !retry || attempt == pingAttempts {
			return err
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		delay *= 2
	}
}
