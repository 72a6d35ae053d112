package provider

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/agentlab/terraform-provider-agentlab/internal/pve"
)

// Environment variables the provider block falls back to.
const (
	envEndpoint    = "PROXMOX_VE_ENDPOINT"
	envAPIToken    = "PROXMOX_VE_API_TOKEN"
	envInsecure    = "PROXMOX_VE_INSECURE"
	envProfilesDir = "AGENTLAB_PROFILES_DIR"
	envReaperURL   = "AGENTLAB_REAPER_URL"
	envReaperToken = "AGENTLAB_REAPER_TOKEN"

	envReaperGuestURL = "AGENTLAB_REAPER_GUEST_URL"
	envMaxTTL         = "AGENTLAB_MAX_TTL"
)

// defaultMaxTTL is the provider's max_ttl when neither the provider block nor
// the environment sets one: the reaper's default policy.max_lease.
const defaultMaxTTL = 168 * time.Hour

// defaultReaperGuestURL is the reaper's default guest listener (guest.listen).
const defaultReaperGuestURL = "http://10.77.0.1:8846"

// defaultProfilesDir is where profiles are looked up when neither the
// provider block nor the environment names a directory.
const defaultProfilesDir = "profiles"

// providerModel is the provider block as Terraform sends it.
type providerModel struct {
	Endpoint    types.String `tfsdk:"endpoint"`
	APIToken    types.String `tfsdk:"api_token"`
	Insecure    types.Bool   `tfsdk:"insecure"`
	Node        types.String `tfsdk:"node"`
	ProfilesDir types.String `tfsdk:"profiles_dir"`
	ReaperURL   types.String `tfsdk:"reaper_url"`
	ReaperToken types.String `tfsdk:"reaper_token"`

	ReaperGuestURL types.String `tfsdk:"reaper_guest_url"`
	MaxTTL         types.String `tfsdk:"max_ttl"`

	ReaperCACert      types.String `tfsdk:"reaper_ca_cert"`
	ReaperFingerprint types.String `tfsdk:"reaper_fingerprint"`
}

// providerSettings is the provider block resolved against the environment
// and checked: what the resources and data sources work with.
type providerSettings struct {
	// Endpoint is the API base URL, ending in /api2/json.
	Endpoint string
	APIToken string
	// TokenUser is the API token's user, e.g. "terraform@pve".
	TokenUser   string
	Insecure    bool
	Node        string
	ProfilesDir string
	ReaperURL   string
	ReaperToken string
	// ReaperGuestURL is where sandboxes send heartbeats.
	ReaperGuestURL string
	// MaxTTL is the default and the ceiling of every sandbox's max_ttl.
	MaxTTL time.Duration
	// ReaperTLS verifies an https reaper_url.
	ReaperTLS reaperTLS
}

// unknownProviderAttributes lists the attributes of m whose values are not
// known yet (they depend on resources not applied yet).
func unknownProviderAttributes(m providerModel) []string {
	var names []string
	for _, a := range []struct {
		name    string
		unknown bool
	}{
		{"endpoint", m.Endpoint.IsUnknown()},
		{"api_token", m.APIToken.IsUnknown()},
		{"insecure", m.Insecure.IsUnknown()},
		{"node", m.Node.IsUnknown()},
		{"profiles_dir", m.ProfilesDir.IsUnknown()},
		{"reaper_url", m.ReaperURL.IsUnknown()},
		{"reaper_token", m.ReaperToken.IsUnknown()},
		{"reaper_guest_url", m.ReaperGuestURL.IsUnknown()},
		{"max_ttl", m.MaxTTL.IsUnknown()},
		{"reaper_ca_cert", m.ReaperCACert.IsUnknown()},
		{"reaper_fingerprint", m.ReaperFingerprint.IsUnknown()},
	} {
		if a.unknown {
			names = append(names, a.name)
		}
	}
	return names
}

// resolveProviderSettings fills m's unset attributes from the environment
// (read through getenv), applies defaults and checks every value. Each
// problem is an attribute diagnostic that says how to fix it.
func resolveProviderSettings(m providerModel, getenv func(string) string) (providerSettings, diag.Diagnostics) {
	var diags diag.Diagnostics
	pick := func(v types.String, env string) string {
		if !v.IsNull() && !v.IsUnknown() {
			return v.ValueString()
		}
		return getenv(env)
	}
	s := providerSettings{
		Node:        m.Node.ValueString(),
		ProfilesDir: pick(m.ProfilesDir, envProfilesDir),
		ReaperURL:   pick(m.ReaperURL, envReaperURL),
		ReaperToken: pick(m.ReaperToken, envReaperToken),

		ReaperGuestURL: strings.TrimSpace(pick(m.ReaperGuestURL, envReaperGuestURL)),
	}
	if s.ProfilesDir == "" {
		s.ProfilesDir = defaultProfilesDir
	}
	if s.ReaperGuestURL == "" {
		s.ReaperGuestURL = defaultReaperGuestURL
	}
	if u, err := url.Parse(s.ReaperGuestURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
		u.RawQuery != "" || u.Fragment != "" {
		diags.AddAttributeError(path.Root("reaper_guest_url"), "Invalid reaper guest URL",
			fmt.Sprintf("The reaper guest URL %q is not an http(s) URL with a host. Use the address sandboxes reach "+
				"the reaper's guest listener at, such as %q, or unset reaper_guest_url and %s.",
				s.ReaperGuestURL, defaultReaperGuestURL, envReaperGuestURL))
	}

	s.MaxTTL = defaultMaxTTL
	if raw := strings.TrimSpace(pick(m.MaxTTL, envMaxTTL)); raw != "" {
		d, err := time.ParseDuration(raw)
		if err != nil || d < time.Minute {
			diags.AddAttributeError(path.Root("max_ttl"), "Invalid max_ttl",
				fmt.Sprintf("The provider's max_ttl %q (from the provider block or %s) must be a Go duration of at "+
					"least a minute, such as \"24h\" or \"168h\".", raw, envMaxTTL))
		} else {
			s.MaxTTL = d
		}
	}

	rawEndpoint := strings.TrimSpace(pick(m.Endpoint, envEndpoint))
	if rawEndpoint == "" {
		diags.AddAttributeError(path.Root("endpoint"), "Missing Proxmox VE endpoint",
			"The provider needs the URL of the Proxmox VE API. Set endpoint in the provider block, "+
				"e.g. endpoint = \"https://pve.example.com:8006\", or the "+envEndpoint+" environment variable.")
	} else if ep, err := pve.NormalizeEndpoint(rawEndpoint); err != nil {
		diags.AddAttributeError(path.Root("endpoint"), "Invalid Proxmox VE endpoint",
			fmt.Sprintf("The endpoint %q is not usable (%s). Use an https URL with a host and port, such as "+
				"\"https://pve.example.com:8006\"; the /api2/json suffix is optional.", rawEndpoint, err))
	} else {
		s.Endpoint = ep
	}

	s.APIToken = strings.TrimSpace(pick(m.APIToken, envAPIToken))
	if s.APIToken == "" {
		diags.AddAttributeError(path.Root("api_token"), "Missing Proxmox VE API token",
			"The provider authenticates with a Proxmox VE API token. Set api_token in the provider block "+
				"or the "+envAPIToken+" environment variable to USER@REALM!TOKENID=SECRET "+
				"(create one under Datacenter > Permissions > API Tokens).")
	} else if tokenID, _, err := pve.ParseAPIToken(s.APIToken); err != nil {
		// The error names the part that is wrong; it never contains the secret.
		diags.AddAttributeError(path.Root("api_token"), "Malformed Proxmox VE API token",
			fmt.Sprintf("The API token must look like USER@REALM!TOKENID=SECRET, for example "+
				"\"terraform@pve!agentlab=<uuid secret>\" (%s). Copy the token ID and secret exactly as "+
				"Proxmox VE showed them when the token was created.", tokenErrorReason(err)))
	} else {
		s.TokenUser, _, _ = strings.Cut(tokenID, "!")
	}

	switch {
	case !m.Insecure.IsNull() && !m.Insecure.IsUnknown():
		s.Insecure = m.Insecure.ValueBool()
	case getenv(envInsecure) != "":
		b, err := strconv.ParseBool(strings.TrimSpace(getenv(envInsecure)))
		if err != nil {
			diags.AddAttributeError(path.Root("insecure"), "Invalid "+envInsecure,
				fmt.Sprintf("%s is %q; set it to true or false.", envInsecure, getenv(envInsecure)))
		}
		s.Insecure = b
	}

	if s.ReaperURL != "" {
		if u, err := url.Parse(s.ReaperURL); err != nil || (u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "unix") || (u.Host == "" && u.Scheme != "unix") {
			diags.AddAttributeError(path.Root("reaper_url"), "Invalid reaper URL",
				fmt.Sprintf("The reaper URL %q is not an http(s) URL with a host. Use a URL such as "+
					"\"http://127.0.0.1:8847\" or unset reaper_url and %s.", s.ReaperURL, envReaperURL))
		}
	}
	diags.Append(resolveReaperTLS(&s, m.ReaperCACert, m.ReaperFingerprint, getenv)...)
	return s, diags
}

// tokenErrorReason returns the part of a token parse error worth showing:
// the reason of the client's *pve.TokenError, without its generic prefix and
// the example the diagnostic already gives.
func tokenErrorReason(err error) string {
	var te *pve.TokenError
	if errors.As(err, &te) {
		return te.Reason
	}
	return err.Error()
}
