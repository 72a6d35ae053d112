package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// MinInterval is the shortest reconcile interval accepted.
const MinInterval = 100 * time.Millisecond

// MinMaxLease is the shortest policy.max_lease accepted: a shorter ceiling
// would reap sandboxes before they boot.
const MinMaxLease = 10 * time.Minute

// MinRetention is the shortest events.retention accepted.
const MinRetention = time.Hour

// ErrNotAvailable marks a setting for a feature this build does not have yet.
var ErrNotAvailable = errors.New("not available yet")

// Validate checks every value and reports all problems at once, joined; each
// is an *Error naming the key.
func (c *Config) Validate() error {
	var errs []error
	add := func(key, format string, args ...any) {
		errs = append(errs, &Error{Key: key, Line: c.lines[key], Msg: fmt.Sprintf(format, args...)})
	}

	u, err := url.Parse(c.Proxmox.Endpoint)
	switch {
	case c.Proxmox.Endpoint == "":
		add("proxmox.endpoint", "is empty; set the Proxmox VE API URL, e.g. https://127.0.0.1:8006")
	case err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "":
		add("proxmox.endpoint", "%q is not an http(s) URL; write it like https://pve.example:8006", c.Proxmox.Endpoint)
	}
	absPath(add, "proxmox.api_token_file", c.Proxmox.APITokenFile, true)
	absPath(add, "database", c.Database, true)

	if d := time.Duration(c.Interval); d < MinInterval {
		add("interval", "%s is too short; use at least %s (30s is a good default)", d, MinInterval)
	}
	if c.Grace < 0 {
		add("grace", "%s is negative; use 0s or more", c.Grace)
	}
	if c.WarnBefore < 0 {
		add("warn_before", "%s is negative; use 0s (no warning) or more", c.WarnBefore)
	}

	if d := time.Duration(c.Policy.MaxLease); d < MinMaxLease {
		add("policy.max_lease", "%s is too short; use at least %s (168h, a week, is the default)", d, MinMaxLease)
	}
	if c.Policy.OrphanGrace < 0 {
		add("policy.orphan_grace", "%s is negative; use 0s (prune at once) or more", c.Policy.OrphanGrace)
	}
	if d := time.Duration(c.Events.Retention); d < MinRetention {
		add("events.retention", "%s is too short; keep at least %s of audit log (720h, 30 days, is the default)", d, MinRetention)
	}
	absPath(add, "control.socket", c.Control.Socket, true)
	hostPort(add, "control.listen", c.Control.Listen)
	if c.Control.Listen != "" && c.Control.TokenFile == "" {
		add("control.token_file", "is empty but control.listen is set; TCP clients need a bearer token: point token_file at a 0600 file holding one")
	}
	absPath(add, "control.token_file", c.Control.TokenFile, false)
	hostPort(add, "guest.listen", c.Guest.Listen)
	hostPort(add, "metrics.listen", c.Metrics.Listen)

	absPath(add, "artifacts.dir", c.Artifacts.Dir, true)
	if c.Artifacts.MaxBytes <= 0 {
		add("artifacts.max_bytes", "%d is not a positive size; write e.g. 10GiB", int64(c.Artifacts.MaxBytes))
	}

	if d := time.Duration(c.Jobs.HeartbeatGrace); d < time.Second {
		add("jobs.heartbeat_grace", "%s is too short; runners send a heartbeat every 30s, so use 90s or more", d)
	}
	if d := time.Duration(c.Jobs.BootTimeout); d < time.Second {
		add("jobs.boot_timeout", "%s is too short; a sandbox needs minutes to boot: use e.g. 15m", d)
	}
	if c.Jobs.Retention < 0 {
		add("jobs.retention", "%s is negative; use 0s (keep forever) or a duration such as 720h", c.Jobs.Retention)
	}
	if c.Jobs.MaxLogBytes <= 0 {
		add("jobs.max_log_bytes", "%d is not a positive size; write e.g. 64MiB", int64(c.Jobs.MaxLogBytes))
	}
	absPath(add, "control.tls_cert_file", c.Control.TLSCertFile, false)
	absPath(add, "control.tls_key_file", c.Control.TLSKeyFile, false)
	if (c.Control.TLSCertFile == "") != (c.Control.TLSKeyFile == "") {
		add("control.tls_cert_file", "set both control.tls_cert_file and control.tls_key_file, or neither (a self-signed pair is then generated)")
	}

	if c.Egress.Enabled {
		errs = append(errs, &Error{Key: "egress.enabled", Line: c.lines["egress.enabled"],
			Msg: fmt.Sprintf("egress filtering is %v in this version of agentlab-reaper; set egress.enabled: false", ErrNotAvailable)})
	}
	if _, err := netip.ParsePrefix(c.Egress.Subnet); err != nil && c.Egress.Subnet != "" {
		add("egress.subnet", "%q is not a CIDR; write it like 10.77.0.0/16", c.Egress.Subnet)
	}
	if _, err := netip.ParseAddr(c.Egress.Resolver); err != nil && c.Egress.Resolver != "" {
		add("egress.resolver", "%q is not an IP address; write it like 10.77.0.1", c.Egress.Resolver)
	}
	for i, a := range c.Egress.Allow {
		if _, err := netip.ParsePrefix(a); err != nil {
			add("egress.allow", "item %d, %q, is not a CIDR; write it like 192.0.2.0/24", i+1, a)
		}
	}
	return errors.Join(errs...)
}

func absPath(add func(string, string, ...any), key, path string, required bool) {
	switch {
	case path == "" && required:
		add(key, "is empty; give an absolute path")
	case path != "" && !filepath.IsAbs(path):
		add(key, "%q is not an absolute path; write the full path (the daemon runs from /)", path)
	}
}

func hostPort(add func(string, string, ...any), key, addr string) {
	if addr == "" {
		return
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil || port == "" {
		add(key, "%q is not host:port; write it like 127.0.0.1:9090, or \"\" to turn it off", addr)
		return
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		add(key, "%q: port %q is not a number from 0 to 65535; write it like 127.0.0.1:9090", addr, port)
		return
	}
	if host != "" && host != "localhost" {
		if _, err := netip.ParseAddr(host); err != nil {
			add(key, "%q: host %q is not an IP address; listen on an address, e.g. 127.0.0.1", addr, host)
		}
	}
}

// CheckFiles checks the secret files the daemon needs: proxmox.api_token_file
// always, control.token_file when control.listen is set. Each must be a
// regular file that only its owner can read (0600 or 0400), and not empty.
func (c *Config) CheckFiles() error {
	var errs []error
	if err := checkSecretFile("proxmox.api_token_file", c.Proxmox.APITokenFile); err != nil {
		errs = append(errs, err)
	} else if _, err := c.APIToken(); err != nil {
		errs = append(errs, err)
	}
	if c.Control.Listen != "" {
		if err := checkSecretFile("control.token_file", c.Control.TokenFile); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func checkSecretFile(key, path string) error {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return &Error{Key: key, Msg: fmt.Sprintf("%s does not exist; create it with mode 0600 (install -m 600 /dev/null %s, then write the secret)", path, path)}
	case err != nil:
		return &Error{Key: key, Msg: fmt.Sprintf("cannot read %s: %v", path, err)}
	case !fi.Mode().IsRegular():
		return &Error{Key: key, Msg: fmt.Sprintf("%s is not a regular file", path)}
	case fi.Mode().Perm()&0o077 != 0:
		return &Error{Key: key, Msg: fmt.Sprintf("%s has mode %04o, readable by others; it holds a secret: chmod 600 %s", path, fi.Mode().Perm(), path)}
	case fi.Size() == 0:
		return &Error{Key: key, Msg: fmt.Sprintf("%s is empty; write the secret in it", path)}
	}
	return nil
}

// APIToken reads proxmox.api_token_file: one line, user@realm!id=secret.
func (c *Config) APIToken() (string, error) {
	tok, err := readSecret("proxmox.api_token_file", c.Proxmox.APITokenFile)
	if err != nil {
		return "", err
	}
	user, rest, ok1 := strings.Cut(tok, "!")
	id, secret, ok2 := strings.Cut(rest, "=")
	if !ok1 || !ok2 || !strings.Contains(user, "@") || id == "" || secret == "" || strings.ContainsAny(tok, " \t\n") {
		return "", &Error{Key: "proxmox.api_token_file", Msg: fmt.Sprintf("%s does not hold a token of the form user@realm!id=secret (one line)", c.Proxmox.APITokenFile)}
	}
	return tok, nil
}

// ControlToken reads control.token_file: the bearer token TCP clients send.
func (c *Config) ControlToken() (string, error) {
	return readSecret("control.token_file", c.Control.TokenFile)
}

func readSecret(key, path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", &Error{Key: key, Msg: fmt.Sprintf("cannot read %s: %v", path, err)}
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", &Error{Key: key, Msg: fmt.Sprintf("%s is empty; write the secret in it", path)}
	}
	return s, nil
}
