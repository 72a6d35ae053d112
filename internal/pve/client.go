package pve

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/Telmate/proxmox-api-go/proxmox"
)

// Config configures a Client.
type Config struct {
	// Endpoint is the PVE API address, e.g. "https://pve.example:8006", with or
	// without the "/api2/json" suffix. A missing scheme means https.
	Endpoint string
	// APIToken is "user@realm!tokenid=secret".
	APIToken string
	// Insecure skips TLS certificate verification.
	Insecure bool
	// CACertPEM holds extra PEM certificates to trust besides the system roots
	// (e.g. the cluster's pve-root-ca.pem).
	CACertPEM []byte
	// HTTPClient, when set, is used as is; Insecure and CACertPEM must then be
	// unset (configure its transport instead).
	HTTPClient *http.Client
	// Logger receives debug logs of requests and warnings of retries. Nil
	// discards them.
	Logger *slog.Logger
	// Clock is the time source for waits and backoff. Nil is the wall clock.
	Clock Clock
	// VMIDMin and VMIDMax bound the VMIDs Clone allocates (inclusive). Zero
	// means PVE's own bounds (100 and 999999999).
	VMIDMin, VMIDMax int
	// Retry tunes retries of transient failures. Zero values take defaults.
	Retry RetryPolicy
	// RequestTimeout bounds one request attempt (not uploads), so a hung
	// connection is retried instead of eating the whole deadline.
	// Zero means 60 s.
	RequestTimeout time.Duration
	// UserAgent is sent with every request, e.g.
	// "terraform-provider-agentlab/1.2.3", so PVE's access log names the
	// program and its version. Empty means DefaultUserAgent.
	UserAgent string
}

// DefaultUserAgent is the User-Agent of a client whose Config names none.
const DefaultUserAgent = "agentlab"

// RetryPolicy tunes retries: exponential backoff with full jitter, bounded
// by MaxAttempts and by the context's deadline.
type RetryPolicy struct {
	// MaxAttempts counts all attempts, the first one included. Default 10.
	MaxAttempts int
	// BaseDelay is the backoff cap of the first retry. Default 100 ms.
	BaseDelay time.Duration
	// MaxDelay caps the backoff. Default 5 s.
	MaxDelay time.Duration
}

func (p RetryPolicy) withDefaults() RetryPolicy {
	if p.MaxAttempts <= 0 {
		p.MaxAttempts = 10
	}
	if p.BaseDelay <= 0 {
		p.BaseDelay = 100 * time.Millisecond
	}
	if p.MaxDelay <= 0 {
		p.MaxDelay = 5 * time.Second
	}
	if p.MaxDelay < p.BaseDelay {
		p.MaxDelay = p.BaseDelay
	}
	return p
}

// Client performs Proxmox VE operations. It is safe for concurrent use.
type Client struct {
	base       string // normalised endpoint ending in /api2/json
	authHeader string // "PVEAPIToken=user@realm!id=secret"
	userAgent  string
	tokenID    string // "user@realm!id", for logs
	http       *http.Client
	lib        *proxmox.Client
	log        *slog.Logger
	clock      Clock
	retry      RetryPolicy
	timeout    time.Duration
	jitter     func(n int64) int64 // uniform in [0, n)
	alloc      *allocator
	tasks      *taskWatchers
	boots      *bootLog
	templates  *templateCache
	probes     *probeLimiter
}

// New validates cfg and returns a Client. It does not contact the server:
// call Ping to check the endpoint and the token.
func New(ctx context.Context, cfg Config) (*Client, error) {
	_ = ctx // New makes no request; ctx is kept for symmetry and future use.
	base, err := NormalizeEndpoint(cfg.Endpoint)
	if err != nil {
		return nil, err
	}
	tokenID, secret, err := ParseAPIToken(cfg.APIToken)
	if err != nil {
		return nil, err
	}
	hc := cfg.HTTPClient
	if hc != nil {
		if cfg.Insecure || len(cfg.CACertPEM) > 0 {
			return nil, fmt.Errorf("%w: set either an http client or insecure/ca certificate, not both", ErrInvalidConfig)
		}
	} else {
		hc, err = newHTTPClient(cfg.Insecure, cfg.CACertPEM)
		if err != nil {
			return nil, err
		}
	}
	lo, hi := cfg.VMIDMin, cfg.VMIDMax
	if lo == 0 {
		lo = minVMID
	}
	if hi == 0 {
		hi = maxVMID
	}
	if lo < minVMID || hi > maxVMID || lo > hi {
		return nil, fmt.Errorf("%w: vmid range [%d, %d] must lie within [%d, %d] and not be empty", ErrInvalidConfig, lo, hi, minVMID, maxVMID)
	}
	lib, err := proxmox.NewClient(base, hc, "", nil, "", 300, false)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidConfig, err)
	}
	var id proxmox.ApiTokenID
	_ = id.Parse(tokenID) // already validated by ParseAPIToken
	lib.SetAPIToken(id, proxmox.ApiTokenSecret(secret))

	c := &Client{
		base:       base,
		authHeader: "PVEAPIToken=" + tokenID + "=" + secret,
		userAgent:  cmp.Or(cfg.UserAgent, DefaultUserAgent),
		tokenID:    tokenID,
		http:       hc,
		lib:        lib,
		log:        cfg.Logger,
		clock:      cfg.Clock,
		retry:      cfg.Retry.withDefaults(),
		timeout:    cfg.RequestTimeout,
		jitter:     rand.Int64N,
		alloc:      newAllocator(lo, hi),
		tasks:      newTaskWatchers(),
		boots:      &bootLog{at: map[VMRef]time.Time{}},
		templates:  newTemplateCache(),
		probes:     newProbeLimiter(),
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.clock == nil {
		c.clock = realClock{}
	}
	if c.timeout <= 0 {
		c.timeout = 60 * time.Second
	}
	return c, nil
}

// Endpoint returns the normalised API base URL, ending in /api2/json.
func (c *Client) Endpoint() string { return c.base }

// TokenID returns the "user@realm!tokenid" part of the API token.
func (c *Client) TokenID() string { return c.tokenID }

// Library returns a github.com/Telmate/proxmox-api-go client that shares this
// client's HTTP client and API token, for the library's richer guest models.
// Its calls do not get this package's retries, task waits or error types.
func (c *Client) Library() *proxmox.Client { return c.lib }

// NormalizeEndpoint turns "host:8006", "https://host:8006/" or
// "https://host:8006/api2/json" into "https://host:8006/api2/json".
func NormalizeEndpoint(endpoint string) (string, error) {
	e := strings.TrimSpace(endpoint)
	if e == "" {
		return "", fmt.Errorf("%w: endpoint is empty; want e.g. https://pve.example:8006", ErrInvalidConfig)
	}
	if !strings.Contains(e, "://") {
		e = "https://" + e
	}
	u, err := url.Parse(e)
	if err != nil {
		return "", fmt.Errorf("%w: endpoint %q: %v", ErrInvalidConfig, endpoint, err)
	}
	if u.Scheme != "https" && u.Scheme != "http" {
		return "", fmt.Errorf("%w: endpoint %q: scheme must be https or http", ErrInvalidConfig, endpoint)
	}
	if u.Host == "" {
		return "", fmt.Errorf("%w: endpoint %q has no host", ErrInvalidConfig, endpoint)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", fmt.Errorf("%w: endpoint %q must not carry credentials, a query or a fragment", ErrInvalidConfig, endpoint)
	}
	p := strings.TrimRight(u.Path, "/")
	p = strings.TrimSuffix(p, "/api2/json")
	u.Path = strings.TrimRight(p, "/") + "/api2/json"
	u.RawPath = ""
	return u.String(), nil
}

// TokenError is a malformed API token. Its Reason never contains the secret.
// errors.Is(err, ErrInvalidConfig) is true for it.
type TokenError struct {
	// Reason says what is wrong, e.g. "api token has no '!' between user and token id".
	Reason string
}

// tokenWant is the form an API token must have.
const tokenWant = "want user@realm!tokenid=secret, e.g. root@pam!agentlab=3f0c6b0e-8c1f-4d0e-9a57-1c2d3e4f5a6b"

// Error implements error.
func (e *TokenError) Error() string {
	return ErrInvalidConfig.Error() + ": " + e.Reason + "; " + tokenWant
}

// Is makes errors.Is(err, ErrInvalidConfig) true.
func (e *TokenError) Is(target error) bool { return target == ErrInvalidConfig }

// tokenError returns a *TokenError with a formatted reason.
func tokenError(format string, args ...any) error {
	return &TokenError{Reason: fmt.Sprintf(format, args...)}
}

// ParseAPIToken splits "user@realm!tokenid=secret" into the token id
// ("user@realm!tokenid") and the secret, validating the form. A leading
// "PVEAPIToken=" and surrounding white space are tolerated. A malformed
// token is a *TokenError.
func ParseAPIToken(token string) (tokenID, secret string, err error) {
	t := strings.TrimSpace(token)
	t = strings.TrimPrefix(t, "PVEAPIToken=")
	if t == "" {
		return "", "", tokenError("api token is empty")
	}
	bang := strings.IndexByte(t, '!')
	if bang < 0 {
		return "", "", tokenError("api token has no '!' between user and token id")
	}
	eq := strings.IndexByte(t[bang:], '=')
	if eq < 0 {
		return "", "", tokenError("api token has no '=' before the secret")
	}
	tokenID, secret = t[:bang+eq], t[bang+eq+1:]
	var id proxmox.ApiTokenID
	if err := id.Parse(tokenID); err != nil {
		return "", "", tokenError("api token id %q: %v", tokenID, err)
	}
	if err := id.Validate(); err != nil {
		return "", "", tokenError("api token id %q: %v", tokenID, err)
	}
	if secret == "" || strings.ContainsAny(secret, " \t\r\n") {
		return "", "", tokenError("api token secret is empty or contains white space")
	}
	return tokenID, secret, nil
}

func newHTTPClient(insecure bool, caPEM []byte) (*http.Client, error) {
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if insecure {
		tlsCfg.InsecureSkipVerify = true //nolint:gosec // the user asked for it
	}
	if len(caPEM) > 0 {
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(caPEM) {
			return nil, fmt.Errorf("%w: ca certificate holds no PEM certificate", ErrInvalidConfig)
		}
		tlsCfg.RootCAs = pool
	}
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       tlsCfg,
		TLSHandshakeTimeout:   10 * time.Second,
		MaxIdleConns:          128,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	return &http.Client{Transport: tr}, nil
}
