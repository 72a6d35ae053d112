package pve

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// Version is the answer of GET /version.
type Version struct {
	Version string `json:"version"` // e.g. "8.2.4"
	Release string `json:"release"` // e.g. "8.2"
	RepoID  string `json:"repoid"`
}

// Ping checks the endpoint and the token with one GET /version (no retries)
// and returns the server's version. Its errors are distinct and actionable:
//   - errors.Is(err, ErrUntrustedCertificate) (a *TLSError): the certificate
//     is not trusted; set insecure = true or provide a trusted certificate;
//   - errors.Is(err, ErrUnreachable): nothing answers at the endpoint;
//   - errors.Is(err, ErrUnauthorized): the token was rejected (401);
//   - errors.Is(err, ErrNotProxmox): something answered, but not a PVE API
//     (wrong port, path or scheme).
func (c *Client) Ping(ctx context.Context) (Version, error) {
	var v Version
	err := c.send(ctx, request{method: http.MethodGet, path: "/version"}, &v)
	if err == nil {
		if v.Version == "" {
			return v, fmt.Errorf("%w: %s answered GET /version without a version", ErrNotProxmox, c.base)
		}
		return v, nil
	}
	var ae *APIError
	var rh tls.RecordHeaderError
	switch {
	case errors.As(err, &ae) && ae.Status == http.StatusUnauthorized:
		return v, fmt.Errorf("%w (token %s): check that api_token is user@realm!tokenid=secret and that the token exists and has not expired: %w",
			ErrUnauthorized, c.tokenID, err)
	case errors.As(err, &ae) && (ae.Status == http.StatusNotFound || ae.Status == http.StatusNotImplemented ||
		(ae.Status == http.StatusBadRequest && strings.Contains(strings.ToLower(ae.Message), "https"))):
		return v, fmt.Errorf("%w: %s answered %d %s; check the endpoint's scheme, host and port (usually https://HOST:8006)", ErrNotProxmox, c.base, ae.Status, ae.Message)
	case errors.As(err, &rh) || strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"):
		// net/http reports the latter as a plain string
		return v, fmt.Errorf("%w: %s does not speak TLS; use an http:// endpoint or the PVE port (8006): %w", ErrNotProxmox, c.base, err)
	case errors.Is(err, errNotEnvelope):
		return v, fmt.Errorf("%w: %s: %w", ErrNotProxmox, c.base, err)
	}
	return v, err
}
