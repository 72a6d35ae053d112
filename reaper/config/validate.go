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

	"github.com/agentlab/terraform-provider-agentlab/internal/egressrule"
)

// MinInterval is the shortest reconcile interval accepted.
const MinInterval = 100 * time.Millisecond

// MinMaxLease is the shortest policy.max_lease accepted: a shorter ceiling
// would reap sandboxes before they boot.
const MinMaxLease = 10 * time.Minute

// MinRetention is the shortest events.retention accepted.
const MinRetention = time.Hour

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

	c.validateEgress(add)
	return errors.Join(errs...)
}

// validateEgress checks the egress section; bridge, subnet and resolver are
// required only when the filter is enabled.
func (c *Config) validateEgress(add func(string, string, ...any)) {
	e := c.Egress
	switch {
	case e.Bridge == "" && e.Enabled:
		add("egress.bridge", "is empty; name the sandboxes' bridge, e.g. vmbr1")
	case e.Bridge != "" && !validIfname(e.Bridge):
		add("egress.bridge", "%q is not a network interface name (at most 15 letters, digits, '.', '_' or '-'); write it like vmbr1", e.Bridge)
	}
	switch p, err := netip.ParsePrefix(e.Subnet); {
	case e.Subnet == "" && e.Enabled:
		add("egress.subnet", "is empty; give the sandboxes' IPv4 range, e.g. 10.77.0.0/16")
	case e.Subnet == "":
	case err != nil || !p.Addr().Is4():
		add("egress.subnet", "%q is not an IPv4 CIDR; write it like 10.77.0.0/16", e.Subnet)
	case p.Masked() != p:
		add("egress.subnet", "%q has host bits set; write %s", e.Subnet, p.Masked())
	}
	switch a, err := netip.ParseAddr(e.Resolver); {
	case e.Resolver == "" && e.Enabled:
		add("egress.resolver", "is empty; give the DNS server sandboxes use, e.g. 10.77.0.1")
	case e.Resolver != "" && (err != nil || a.Zone() != ""):
		add("egress.resolver", "%q is not an IP address; write it like 10.77.0.1", e.Resolver)
	}
	if _, err := egressrule.ParseList(e.Allow); err != nil {
		add("egress.allow", "%v; write entries like 192.0.2.0/24 or 192.0.2.0/24:443/tcp", err)
	}
	switch {
	case e.Nft == "" && e.Enabled:
		add("egress.nft", "is empty; write nft (found on PATH) or the command's absolute path, e.g. /usr/sbin/nft")
	case strings.Contains(e.Nft, "/") && !filepath.IsAbs(e.Nft):
		add("egress.nft", "%q is a relative path; write nft (found on PATH) or an absolute path, e.g. /usr/sbin/nft", e.Nft)
	}
}

// validIfname reports whether s can name a Linux network interface.
func validIfname(s string) bool {
	if len(s) > 15 || s == "." || s == ".." {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return false
		}
	}
	return true
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
