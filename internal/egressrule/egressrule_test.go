package egressrule

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	pfx := netip.MustParsePrefix
	tests := []struct {
		in    string
		want  Rule
		canon string
	}{
		{"192.0.2.0/24", Rule{Prefix: pfx("192.0.2.0/24")}, "192.0.2.0/24"},
		{" 192.0.2.7 ", Rule{Prefix: pfx("192.0.2.7/32")}, "192.0.2.7/32"},
		{"10.1.0.0/16:443", Rule{Prefix: pfx("10.1.0.0/16"), FromPort: 443, ToPort: 443}, "10.1.0.0/16:443"},
		{"10.1.0.0/16:8000-8100", Rule{Prefix: pfx("10.1.0.0/16"), FromPort: 8000, ToPort: 8100}, "10.1.0.0/16:8000-8100"},
		{"10.0.0.53:53/udp", Rule{Prefix: pfx("10.0.0.53/32"), Proto: "udp", FromPort: 53, ToPort: 53}, "10.0.0.53/32:53/udp"},
		{"fd00::/8", Rule{Prefix: pfx("fd00::/8")}, "fd00::/8"},
		{"2001:db8::1", Rule{Prefix: pfx("2001:db8::1/128")}, "2001:db8::1/128"},
		{"[2001:db8::/32]:443/tcp", Rule{Prefix: pfx("2001:db8::/32"), Proto: "tcp", FromPort: 443, ToPort: 443}, "[2001:db8::/32]:443/tcp"},
		{"[fd00::/8]", Rule{Prefix: pfx("fd00::/8")}, "fd00::/8"},
	}
	for _, tt := range tests {
		got, err := Parse(tt.in)
		if err != nil {
			t.Errorf("Parse(%q): %v", tt.in, err)
			continue
		}
		if got != tt.want {
			t.Errorf("Parse(%q) = %+v; want %+v", tt.in, got, tt.want)
		}
		if s := got.String(); s != tt.canon {
			t.Errorf("Parse(%q).String() = %q; want %q", tt.in, s, tt.canon)
		}
		back, err := Parse(got.String())
		if err != nil || back != got {
			t.Errorf("Parse(%q) round trip = %+v, %v; want %+v", got.String(), back, err, got)
		}
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", "empty"},
		{"example.com", "not an IP address"},
		{"10.1.2.3/16", "write 10.1.0.0/16"},
		{"10.0.0.0/33", "not a CIDR"},
		{"10.0.0.0/8:", "empty port"},
		{"10.0.0.0/8:0", "from 1 to 65535"},
		{"10.0.0.0/8:70000", "from 1 to 65535"},
		{"10.0.0.0/8:90-80", "backwards"},
		{"10.0.0.0/8:53/icmp", "want tcp or udp"},
		{"[2001:db8::/32", "missing ]"},
		{"[2001:db8::/32]443", "want :PORT"},
		{"fe80::1%eth0", "not an IP address"},
		{"2001:db8::/32:443", "in brackets when ports follow"},
	}
	for _, tt := range tests {
		_, err := Parse(tt.in)
		if err == nil {
			t.Errorf("Parse(%q) = nil error; want one containing %q", tt.in, tt.want)
			continue
		}
		if !errors.Is(err, ErrRule) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Parse(%q) error = %v; want ErrRule containing %q", tt.in, err, tt.want)
		}
	}
}

func TestParseList(t *testing.T) {
	_, err := ParseList([]string{"10.0.0.0/8", "nope", "192.0.2.0/24:x"})
	var le *ListError
	if !errors.As(err, &le) || le.Item != 2 {
		t.Fatalf("ParseList error = %v; want a *ListError for item 2 first", err)
	}
	if !strings.Contains(err.Error(), "item 3") {
		t.Errorf("ParseList error = %v; want item 3 reported too", err)
	}
	long := make([]string, MaxEntries+1)
	for i := range long {
		long[i] = "192.0.2.1"
	}
	if _, err := ParseList(long); !errors.Is(err, ErrRule) {
		t.Errorf("ParseList(%d entries) = %v; want ErrRule", len(long), err)
	}
	rules, err := ParseList([]string{"192.0.2.1", "10.0.0.0/8:22/tcp"})
	if err != nil || len(rules) != 2 {
		t.Errorf("ParseList(valid) = %v, %v; want 2 rules", rules, err)
	}
}

func TestParsePolicy(t *testing.T) {
	for in, want := range map[string]Policy{"": Open, "open": Open, "allowlist": Allowlist, "none": None} {
		if got, err := ParsePolicy(in); err != nil || got != want {
			t.Errorf("ParsePolicy(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := ParsePolicy("closed"); !errors.Is(err, ErrPolicy) {
		t.Errorf("ParsePolicy(closed) = %v; want ErrPolicy", err)
	}
}
