// Package egressrule holds the grammar of a sandbox's egress settings, shared
// by the provider (which validates them at plan time and writes them into the
// VM's metadata) and the reaper (which reads them back and turns them into
// nftables rules): the policy (open, allowlist or none) and the allow-list
// entries.
//
// An allow-list entry names a destination prefix and, optionally, ports and
// a protocol:
//
//	192.0.2.0/24              every port of a prefix (TCP, UDP and the rest)
//	192.0.2.10                one address (/32, or /128 for IPv6)
//	192.0.2.0/24:443          one port, TCP and UDP
//	192.0.2.0/24:8000-8100    a port range
//	192.0.2.0/24:53/udp       one protocol (tcp or udp)
//	[2001:db8::/32]:443       IPv6 with ports: the prefix in brackets
//
// A prefix must not have host bits set (write 10.1.0.0/16, not 10.1.2.3/16).
package egressrule

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Policy is a sandbox's egress policy.
type Policy string

// The egress policies.
const (
	// Open lets the sandbox reach the internet, minus private ranges and the
	// host; allow-list entries open private destinations on top.
	Open Policy = "open"
	// Allowlist lets the sandbox reach only its allow-list entries (and DNS
	// through the configured resolver).
	Allowlist Policy = "allowlist"
	// None lets the sandbox reach nothing but the reaper's guest listener.
	None Policy = "none"
)

// Policies returns every policy, the default first.
func Policies() []Policy { return []Policy{Open, Allowlist, None} }

var (
	// ErrPolicy marks a policy that is not open, allowlist or none.
	ErrPolicy = errors.New("invalid egress policy")
	// ErrRule marks an allow-list entry that does not follow the grammar.
	ErrRule = errors.New("invalid egress allow entry")
)

// ParsePolicy parses a policy; the empty string is Open, the default.
func ParsePolicy(s string) (Policy, error) {
	switch p := Policy(s); p {
	case "":
		return Open, nil
	case Open, Allowlist, None:
		return p, nil
	}
	return "", fmt.Errorf("%w %q: want open, allowlist or none", ErrPolicy, s)
}

// Rule is one allow-list entry.
type Rule struct {
	// Prefix is the destination, masked.
	Prefix netip.Prefix
	// Proto is "tcp", "udp" or "" for every protocol (every port when
	// FromPort is 0, else TCP and UDP).
	Proto string
	// FromPort and ToPort bound the destination ports; both 0 means every
	// port.
	FromPort, ToPort uint16
}

// Parse parses one allow-list entry; its error wraps ErrRule and says how to
// write the entry.
func Parse(s string) (Rule, error) {
	r, err := parse(strings.TrimSpace(s))
	if err != nil {
		return Rule{}, fmt.Errorf("%w %q: %s", ErrRule, s, err.Error())
	}
	return r, nil
}

func parse(s string) (Rule, error) {
	var r Rule
	if s == "" {
		return r, errors.New("empty; write a CIDR such as 192.0.2.0/24, optionally with :PORT or :PORT/tcp")
	}
	addr, ports := s, ""
	if rest, ok := strings.CutPrefix(s, "["); ok {
		a, p, ok := strings.Cut(rest, "]")
		if !ok {
			return r, errors.New("missing ]; write IPv6 with ports as [2001:db8::/32]:443")
		}
		if p != "" {
			var hasColon bool
			if p, hasColon = strings.CutPrefix(p, ":"); !hasColon || p == "" {
				return r, errors.New("want :PORT after ]; write it like [2001:db8::/32]:443")
			}
		}
		addr, ports = a, p
	} else if i := strings.LastIndexByte(s, ':'); i >= 0 && !strings.Contains(s[:i], ":") {
		// One colon: IPv4 with ports. More colons: IPv6 without ports.
		addr, ports = s[:i], s[i+1:]
		if ports == "" {
			return r, errors.New("empty port after ':'; write it like 192.0.2.0/24:443")
		}
	}
	pfx, err := parsePrefix(addr)
	if err != nil {
		return r, err
	}
	r.Prefix = pfx
	if ports == "" {
		return r, nil
	}
	if p, proto, ok := strings.Cut(ports, "/"); ok {
		if proto != "tcp" && proto != "udp" {
			return r, fmt.Errorf("protocol %q: want tcp or udp", proto)
		}
		ports, r.Proto = p, proto
	}
	from, to, isRange := strings.Cut(ports, "-")
	if r.FromPort, err = parsePort(from); err != nil {
		return r, err
	}
	r.ToPort = r.FromPort
	if isRange {
		if r.ToPort, err = parsePort(to); err != nil {
			return r, err
		}
		if r.ToPort < r.FromPort {
			return r, fmt.Errorf("port range %s is backwards; write the lower port first", ports)
		}
	}
	return r, nil
}

func parsePrefix(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("%q is not an IP address or CIDR; write it like 192.0.2.0/24", s)
		}
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil && strings.Count(s, ":") > 1 {
		return netip.Prefix{}, fmt.Errorf("%q is not a CIDR; write IPv6 like 2001:db8::/32, in brackets when ports follow: [2001:db8::/32]:443", s)
	}
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not a CIDR; write it like 192.0.2.0/24", s)
	}
	if m := p.Masked(); m != p {
		return netip.Prefix{}, fmt.Errorf("%s has host bits set; write %s", p, m)
	}
	return p, nil
}

func parsePort(s string) (uint16, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("port %q is not a number from 1 to 65535", s)
	}
	return uint16(n), nil
}

// String returns the entry in its canonical form, which Parse reads back.
func (r Rule) String() string {
	if r.FromPort == 0 {
		return r.Prefix.String()
	}
	var b strings.Builder
	if r.Prefix.Addr().Is6() {
		b.WriteString("[" + r.Prefix.String() + "]")
	} else {
		b.WriteString(r.Prefix.String())
	}
	b.WriteString(":" + strconv.Itoa(int(r.FromPort)))
	if r.ToPort != r.FromPort {
		b.WriteString("-" + strconv.Itoa(int(r.ToPort)))
	}
	if r.Proto != "" {
		b.WriteString("/" + r.Proto)
	}
	return b.String()
}

// ListError is an invalid entry of a list: its position (from 1) and why.
type ListError struct {
	// Item is the entry's position, from 1.
	Item int
	// Err wraps ErrRule.
	Err error
}

// Error names the item and the problem.
func (e *ListError) Error() string { return fmt.Sprintf("item %d: %v", e.Item, e.Err) }

// Unwrap returns the entry's error.
func (e *ListError) Unwrap() error { return e.Err }

// MaxEntries bounds an allow list: each entry is a rule in the reaper's
// table, evaluated for every new connection of the sandbox.
const MaxEntries = 64

// ParseList parses an allow list. Every invalid entry is reported, joined,
// each as a *ListError.
func ParseList(entries []string) ([]Rule, error) {
	if len(entries) > MaxEntries {
		return nil, fmt.Errorf("%w: %d entries, at most %d are allowed; use wider CIDRs", ErrRule, len(entries), MaxEntries)
	}
	rules := make([]Rule, 0, len(entries))
	var errs []error
	for i, s := range entries {
		r, err := Parse(s)
		if err != nil {
			errs = append(errs, &ListError{Item: i + 1, Err: err})
			continue
		}
		rules = append(rules, r)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return rules, nil
}
