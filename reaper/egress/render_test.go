package egress

import (
	"context"
	"errors"
	"flag"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentlab/terraform-provider-agentlab/internal/egressrule"
)

var update = flag.Bool("update", false, "rewrite the golden rulesets in testdata")

func rules(t *testing.T, entries ...string) []egressrule.Rule {
	t.Helper()
	r, err := egressrule.ParseList(entries)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func testConfig(t *testing.T) Config {
	return Config{
		Bridge: "vmbr1", Subnet: netip.MustParsePrefix("10.77.0.0/16"), Resolver: netip.MustParseAddr("10.77.0.1"),
		Guest: netip.MustParseAddrPort("10.77.0.1:8846"), Allow: rules(t, "192.168.10.0/24:443/tcp"),
	}
}

// renderCases are the rulesets checked against testdata/NAME.nft and by
// nft -c.
func renderCases(t *testing.T) map[string]struct {
	cfg       Config
	sandboxes []Sandbox
	counters  map[string]Count
} {
	v6 := testConfig(t)
	v6.Resolver = netip.MustParseAddr("fd77::1")
	v6.Guest = netip.MustParseAddrPort("[::]:8846")
	v6.Allow = nil
	return map[string]struct {
		cfg       Config
		sandboxes []Sandbox
		counters  map[string]Count
	}{
		"empty": {cfg: testConfig(t)},
		"policies": {cfg: testConfig(t), sandboxes: []Sandbox{
			{VMID: 102, MACs: []string{"BC:24:11:00:00:02"}, Policy: egressrule.None, Allow: rules(t, "10.1.0.0/16")},
			{VMID: 101, MACs: []string{"BC:24:11:00:00:01", "bc:24:11:00:01:01"}, Policy: egressrule.Allowlist,
				Allow: rules(t, "10.20.0.0/16", "0.0.0.0/0:443/tcp", "[fd00:1::/64]:8000-8100", "[2001:db8::/32]:53/udp")},
			{VMID: 100, MACs: []string{"BC:24:11:00:00:03", "bc:24:11:00:00:05 : accept", "02:00:5e:10:00:00:00:01"}},
			{VMID: 103, MACs: []string{"bc:24:11:00:00:04"}, Policy: egressrule.Open, Broken: true},
			{VMID: 104, MACs: []string{"bc:24:11:00:00:01"}, Policy: egressrule.Open}, // 101's MAC: 101 keeps it
		}, counters: map[string]Count{"dropped_101": {Packets: 5, Bytes: 300}, "dropped_999": {Packets: 1, Bytes: 1}}},
		"ipv6-resolver-guest-any": {cfg: v6, sandboxes: []Sandbox{{VMID: 7, MACs: []string{"bc:24:11:00:00:07"}}}},
	}
}

func TestRenderGolden(t *testing.T) {
	for name, c := range renderCases(t) {
		t.Run(name, func(t *testing.T) {
			got := Render(c.cfg, c.sandboxes, c.counters).Text
			path := filepath.Join("testdata", strings.ReplaceAll(name, " ", "_")+".nft")
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./reaper/egress -run TestRenderGolden -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("Render differs from %s (-update rewrites it):\n%s", path, got)
			}
		})
	}
}

// TestRenderPassesNftCheck runs every rendered ruleset through nft -c, which
// parses it and checks it against the kernel without applying anything.
func TestRenderPassesNftCheck(t *testing.T) {
	nft, err := exec.LookPath("nft")
	if err != nil {
		t.Skip("nft not found: install nftables (apt-get install nftables) to check the rendered rulesets")
	}
	n := Nft{Command: []string{nft}}
	if err := n.Check(context.Background(), "table inet agentlab_probe {}\n"); err != nil {
		t.Skipf("nft -c cannot run here (it needs CAP_NET_ADMIN): %v", err)
	}
	for name, c := range renderCases(t) {
		t.Run(name, func(t *testing.T) {
			if err := n.Check(context.Background(), Render(c.cfg, c.sandboxes, c.counters).Text); err != nil {
				t.Errorf("nft -c rejects the ruleset: %v", err)
			}
		})
	}
	if err := n.Check(context.Background(), "table inet agentlab {\n\tchain c {\n\t\tnonsense\n\t}\n}\n"); err == nil {
		t.Error("nft -c accepted nonsense; the check above proves nothing")
	}
}

func TestRenderDispatch(t *testing.T) {
	rs := Render(testConfig(t), renderCases(t)["policies"].sandboxes, nil)
	want := map[string]string{
		"bc:24:11:00:00:01": "sandbox_101", "bc:24:11:00:01:01": "sandbox_101", "bc:24:11:00:00:02": "sandbox_102",
		"bc:24:11:00:00:03": "sandbox_100", "bc:24:11:00:00:04": "sandbox_103",
	}
	if len(rs.dispatch) != len(want) {
		t.Errorf("dispatch = %v; want %v", rs.dispatch, want)
	}
	for mac, chain := range want {
		if rs.dispatch[mac] != chain {
			t.Errorf("dispatch[%s] = %q; want %q", mac, rs.dispatch[mac], chain)
		}
	}
	// A broken sandbox is closed whatever its policy says; none drops all.
	for _, name := range []string{"sandbox_102", "sandbox_103"} {
		if rs.chains[name] != 1 {
			t.Errorf("chain %s has %d rules; want 1 (drop everything)", name, rs.chains[name])
		}
	}
}

func TestPolicyChainOrder(t *testing.T) {
	cfg := testConfig(t)
	c := policyChain(cfg, "x", "cnt", egressrule.Allowlist, rules(t, "10.20.0.0/16", "0.0.0.0/0:443/tcp"))
	idx := func(sub string) int {
		for i, r := range c.rules {
			if strings.Contains(r, sub) {
				return i
			}
		}
		t.Fatalf("no rule contains %q in %v", sub, c.rules)
		return -1
	}
	// A private entry opens its range before the private ranges are
	// dropped; a broad entry comes after, so it never opens them.
	if !(idx("10.20.0.0/16") < idx("@blocked4") && idx("@blocked4") < idx("0.0.0.0/0")) {
		t.Errorf("rules in the wrong order: %v", c.rules)
	}
	if !(idx("192.168.10.0/24") < idx("@blocked4")) {
		t.Errorf("the operator's private entry comes after the drop: %v", c.rules)
	}
	if idx("10.77.0.1 udp dport 53") > idx("th dport { 53, 853 }") {
		t.Errorf("DNS to the resolver is dropped before it is accepted: %v", c.rules)
	}
}

func TestVerify(t *testing.T) {
	rs := Render(testConfig(t), renderCases(t)["policies"].sandboxes, nil)
	good := Loaded{chains: map[string]int{}, dispatch: map[string]string{}, counters: map[string]Count{}, sets: map[string]int{}}
	for k, v := range rs.chains {
		good.chains[k] = v
	}
	for k, v := range rs.dispatch {
		good.dispatch[k] = v
	}
	for _, c := range rs.counters {
		good.counters[c] = Count{}
	}
	for k, v := range rs.sets {
		good.sets[k] = v
	}
	if err := rs.Verify(good); err != nil {
		t.Fatalf("Verify(as rendered) = %v", err)
	}
	tests := map[string]func(l *Loaded){
		"missing chain":  func(l *Loaded) { delete(l.chains, "sandbox_101") },
		"extra chain":    func(l *Loaded) { l.chains["evil"] = 1 },
		"rule removed":   func(l *Loaded) { l.chains["forward"]-- },
		"MAC redirected": func(l *Loaded) { l.dispatch["bc:24:11:00:00:02"] = "sandbox_100" },
		"MAC missing":    func(l *Loaded) { delete(l.dispatch, "bc:24:11:00:00:02") },
		"counter gone":   func(l *Loaded) { delete(l.counters, UnknownCounter) },
		"set emptied":    func(l *Loaded) { l.sets["blocked4"] = 0 },
		"nothing loaded": func(l *Loaded) { *l = Loaded{} },
	}
	for name, mutate := range tests {
		t.Run(name, func(t *testing.T) {
			l := Loaded{chains: map[string]int{}, dispatch: map[string]string{}, counters: map[string]Count{}, sets: map[string]int{}}
			for k, v := range good.chains {
				l.chains[k] = v
			}
			for k, v := range good.dispatch {
				l.dispatch[k] = v
			}
			for k, v := range good.counters {
				l.counters[k] = v
			}
			for k, v := range good.sets {
				l.sets[k] = v
			}
			mutate(&l)
			if err := rs.Verify(l); !errors.Is(err, ErrDrift) {
				t.Errorf("Verify = %v; want ErrDrift", err)
			}
		})
	}
}

func TestParseLoaded(t *testing.T) {
	out, err := os.ReadFile(filepath.Join("testdata", "list.json"))
	if err != nil {
		t.Fatal(err)
	}
	l, err := parseLoaded(out)
	if err != nil {
		t.Fatal(err)
	}
	if got := l.counters["dropped_101"]; got != (Count{Packets: 5, Bytes: 300}) {
		t.Errorf("counter dropped_101 = %+v; want 5 packets, 300 bytes", got)
	}
	if got := l.dispatch["bc:24:11:00:00:01"]; got != "sandbox_101" {
		t.Errorf("dispatch = %q; want sandbox_101", got)
	}
	if l.chains["sandbox_102"] != 1 || l.chains["input"] != 9 {
		t.Errorf("chains = %v; want sandbox_102 with 1 rule, input with 9", l.chains)
	}
	if l.sets["blocked4"] != 5 {
		t.Errorf("sets = %v; want blocked4 with 5 elements", l.sets)
	}
	if _, err := parseLoaded([]byte("{")); err == nil {
		t.Error("parseLoaded(garbage) = nil error")
	}
}
