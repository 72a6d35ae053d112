package provider

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/agentlab/terraform-provider-agentlab/reaper/api"
)

// Environment variables of the reaper's TLS settings.
const (
	envReaperCACert      = "AGENTLAB_REAPER_CA_CERT"
	envReaperFingerprint = "AGENTLAB_REAPER_FINGERPRINT"
)

// reaperTimeout bounds the wait for each control API answer's headers.
const reaperTimeout = 2 * time.Minute

// reaperTLS is how the provider verifies the reaper's certificate.
type reaperTLS struct {
	// CACert is a PEM bundle of CA certificates to trust instead of the
	// system's, "" for the system's.
	CACert string
	// Fingerprint is the SHA-256 of the reaper's certificate (DER) in
	// lower-case hex, as api.Fingerprint writes it; "" when not pinned.
	Fingerprint string
}

// resolveReaperTLS reads reaper_ca_cert and reaper_fingerprint (falling back
// to the environment) and checks them with the reaper URL and token: TLS
// settings need an https URL, and the bearer token never travels over plain
// HTTP beyond loopback.
func resolveReaperTLS(s *providerSettings, caCert, fingerprint types.String, getenv func(string) string) diag.Diagnostics {
	var diags diag.Diagnostics
	pick := func(v types.String, env string) string {
		if !v.IsNull() && !v.IsUnknown() {
			return v.ValueString()
		}
		return getenv(env)
	}
	s.ReaperTLS.CACert = strings.TrimSpace(pick(caCert, envReaperCACert))
	if s.ReaperTLS.CACert != "" {
		if !x509.NewCertPool().AppendCertsFromPEM([]byte(s.ReaperTLS.CACert)) {
			diags.AddAttributeError(path.Root("reaper_ca_cert"), "Invalid reaper CA certificate",
				"reaper_ca_cert holds no PEM certificate. Set it to the PEM text of the CA that signed the reaper's "+
					"certificate (or the self-signed certificate itself), e.g. reaper_ca_cert = file(\"reaper-ca.pem\").")
		}
	}
	if fp := pick(fingerprint, envReaperFingerprint); fp != "" {
		// openssl prints "sha256 Fingerprint=AB:CD:..."; take what follows "=".
		hexPart := fp
		if _, after, ok := strings.Cut(fp, "="); ok {
			hexPart = after
		}
		norm, err := api.NormalizeFingerprint(hexPart)
		if err != nil {
			diags.AddAttributeError(path.Root("reaper_fingerprint"), "Invalid reaper fingerprint",
				fmt.Sprintf("reaper_fingerprint %q is not a SHA-256 fingerprint: %s. Use the 64 hex digits (colons "+
					"allowed) that agentlab-reaper prints for its certificate, or that `openssl x509 -noout "+
					"-fingerprint -sha256 -in reaper.crt` shows.", fp, err))
		}
		s.ReaperTLS.Fingerprint = norm
	}
	if s.ReaperURL == "" || diags.HasError() {
		return diags
	}
	u, err := url.Parse(s.ReaperURL)
	if err != nil {
		return diags // reported by resolveProviderSettings
	}
	hasTLS := s.ReaperTLS.CACert != "" || s.ReaperTLS.Fingerprint != ""
	switch u.Scheme {
	case "http":
		if hasTLS {
			diags.AddAttributeError(path.Root("reaper_url"), "Reaper TLS settings on a plain HTTP URL",
				fmt.Sprintf("reaper_ca_cert or reaper_fingerprint is set, but reaper_url %q is plain http, so they would "+
					"have no effect. Use an https:// URL for a reaper that serves TLS.", s.ReaperURL))
		}
		if s.ReaperToken != "" && !api.IsLoopback(u.Host) {
			diags.AddAttributeError(path.Root("reaper_url"), "Refusing to send the reaper token over plain HTTP",
				fmt.Sprintf("reaper_url %q is plain http to %s, which is not a loopback address, so reaper_token "+
					"would cross the network in clear text. Use https:// (the reaper serves TLS when control.listen "+
					"is not loopback) with reaper_ca_cert or reaper_fingerprint, or reach the reaper over loopback "+
					"(e.g. through an SSH tunnel to 127.0.0.1).", s.ReaperURL, u.Hostname()))
		}
	case "unix":
		if hasTLS {
			diags.AddAttributeError(path.Root("reaper_url"), "Reaper TLS settings on a Unix socket",
				"reaper_ca_cert and reaper_fingerprint apply to https reaper URLs only; unset them for a unix:// socket.")
		}
	}
	return diags
}

// errNoReaper is returned when a resource needs the reaper and reaper_url is
// not set.
var errNoReaper = errors.New("reaper_url is not set")

// newReaperClient builds the control API client from checked settings:
// api.NewClient enforces the rules the reaper's own CLI follows (no token
// over plain HTTP beyond loopback, CA or fingerprint verification).
func newReaperClient(s providerSettings) (*api.Client, error) {
	if s.ReaperURL == "" {
		return nil, errNoReaper
	}
	u, err := url.Parse(s.ReaperURL)
	if err != nil {
		return nil, fmt.Errorf("reaper_url: %w", err)
	}
	if u.Scheme == "unix" {
		c := api.NewUnixClient(u.Path)
		c.Token = s.ReaperToken
		return c, nil
	}
	return api.NewClient(api.ClientOptions{URL: s.ReaperURL, Token: s.ReaperToken,
		CACert: []byte(s.ReaperTLS.CACert), Fingerprint: s.ReaperTLS.Fingerprint, Timeout: reaperTimeout})
}
