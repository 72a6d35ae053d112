package egress

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentlab/terraform-provider-agentlab/internal/egressrule"
)

// The end-to-end test builds, in network namespaces of its own, a host
// ("proxmox": the agent bridge, the reaper's table, a management address),
// a sandbox behind the bridge ("guest") and the rest of the world ("world":
// public, private, unique-local and DNS hosts), then checks from the guest
// what each policy lets through. Nothing touches the machine's own network:
// every address and every nft command lives in these namespaces.

// helperEnv selects the helper mode of the test binary, run inside a
// namespace with ip netns exec.
const helperEnv = "AGENTLAB_EGRESS_HELPER"

// TestNetnsHelper is not a test: re-executed inside a namespace with
// AGENTLAB_EGRESS_HELPER set, it serves (serve) or probes (probe) the
// addresses given in AGENTLAB_EGRESS_ARGS.
func TestNetnsHelper(t *testing.T) {
	mode := os.Getenv(helperEnv)
	if mode == "" {
		t.Skip("helper process for TestEgressNamespaces")
	}
	targets := strings.Fields(os.Getenv("AGENTLAB_EGRESS_ARGS"))
	switch mode {
	case "serve":
		serveTargets(targets)
	case "probe":
		probeTargets(targets)
	}
	os.Exit(0)
}

// serveTargets listens on every target (tcp/ADDR:PORT or udp/ADDR:PORT),
// answering "hello ADDR:PORT", prints "ready" and serves until killed.
func serveTargets(targets []string) {
	for _, tg := range targets {
		proto, addr, _ := strings.Cut(tg, "/")
		banner := []byte("hello " + addr + "\n")
		if proto == "udp" {
			pc, err := net.ListenPacket("udp", addr)
			if err != nil {
				fmt.Println("error:", err)
				os.Exit(1)
			}
			go func() {
				buf := make([]byte, 512)
				for {
					_, from, err := pc.ReadFrom(buf)
					if err != nil {
						return
					}
					_, _ = pc.WriteTo(banner, from)
				}
			}()
			continue
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				_, _ = c.Write(banner)
				_ = c.Close()
			}
		}()
	}
	fmt.Println("ready")
	select {}
}

// probeTimeout bounds one probe: a dropped packet shows as a timeout.
const probeTimeout = 1500 * time.Millisecond

// probeTargets tries every target at once and prints a JSON object: target
// -> "ok" when the server's banner came back, else the error.
func probeTargets(targets []string) {
	results := map[string]string{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, tg := range targets {
		wg.Go(func() {
			res := probe(tg)
			mu.Lock()
			results[tg] = res
			mu.Unlock()
		})
	}
	wg.Wait()
	_ = json.NewEncoder(os.Stdout).Encode(results)
}

func probe(tg string) string {
	proto, addr, _ := strings.Cut(tg, "/")
	c, err := net.DialTimeout(proto, addr, probeTimeout)
	if err != nil {
		return err.Error()
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(probeTimeout))
	if proto == "udp" {
		if _, err := c.Write([]byte("q")); err != nil {
			return err.Error()
		}
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err.Error()
	}
	if want := "hello " + addr + "\n"; line != want {
		return fmt.Sprintf("got %q; want %q", line, want)
	}
	return "ok"
}

// lab is the namespaces of one test.
type lab struct {
	t                  *testing.T
	host, guest, world string
	bridge, guestMAC   string
	hostNft            Nft
	helperBin          string
}

// run runs a command and fails the test on error.
func (l *lab) run(args ...string) {
	l.t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		l.t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func newLab(t *testing.T) *lab {
	if os.Geteuid() != 0 {
		t.Skip("egress end-to-end test skipped: it needs root to create network namespaces")
	}
	for _, c := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(c); err != nil {
			t.Skipf("egress end-to-end test skipped: %s not found (install iproute2 and nftables)", c)
		}
	}
	suffix := fmt.Sprintf("%d", os.Getpid()%100000)
	l := &lab{t: t, host: "aghost" + suffix, guest: "agguest" + suffix, world: "agworld" + suffix,
		bridge: "agbr0", guestMAC: "bc:24:11:0e:9a:01"}
	l.hostNft = Nft{Command: []string{"ip", "netns", "exec", l.host, "nft"}}
	for _, ns := range []string{l.host, l.guest, l.world} {
		if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
			t.Skipf("egress end-to-end test skipped: cannot create network namespace %s: %v %s", ns, err, out)
		}
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
		// No duplicate address detection: addresses, link-local ones
		// included, are usable at once instead of after a second or two.
		l.run("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
	}
	var err error
	if l.helperBin, err = os.Executable(); err != nil {
		t.Fatal(err)
	}
	h, g, w := l.host, l.guest, l.world
	l.run("ip", "netns", "exec", h, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1", "net.ipv6.conf.default.forwarding=1")
	// The Proxmox host: the agent bridge with the gateway address, and a
	// management address of its own on a dummy interface.
	l.run("ip", "-n", h, "link", "set", "lo", "up")
	l.run("ip", "-n", h, "link", "add", l.bridge, "type", "bridge")
	l.run("ip", "-n", h, "addr", "add", "10.77.0.1/16", "dev", l.bridge)
	l.run("ip", "-n", h, "addr", "add", "2001:db8:77::1/64", "dev", l.bridge, "nodad")
	l.run("ip", "-n", h, "link", "set", l.bridge, "up")
	l.run("ip", "-n", h, "addr", "add", "192.0.2.1/32", "dev", "lo")
	// The sandbox: a tap-like veth whose host end is a bridge port.
	l.run("ip", "-n", g, "link", "set", "lo", "up")
	l.run("ip", "-n", g, "link", "add", "eth0", "address", l.guestMAC, "type", "veth", "peer", "name", "tap101i0", "netns", h)
	l.run("ip", "-n", h, "link", "set", "tap101i0", "master", l.bridge, "up")
	l.run("ip", "-n", g, "addr", "add", "10.77.0.10/16", "dev", "eth0")
	l.run("ip", "-n", g, "addr", "add", "2001:db8:77::10/64", "dev", "eth0", "nodad")
	l.run("ip", "-n", g, "link", "set", "eth0", "up")
	l.run("ip", "-n", g, "route", "add", "default", "via", "10.77.0.1")
	l.run("ip", "-n", g, "-6", "route", "add", "default", "via", "2001:db8:77::1")
	// The world behind the host's uplink: public, private, unique-local and
	// DNS hosts, all on one link.
	l.run("ip", "-n", w, "link", "set", "lo", "up")
	l.run("ip", "-n", w, "link", "add", "eth0", "type", "veth", "peer", "name", "uplink", "netns", h)
	for _, a := range []string{"203.0.113.10/24", "192.168.50.10/24", "192.168.60.10/24", "198.51.100.53/24"} {
		l.run("ip", "-n", w, "addr", "add", a, "dev", "eth0")
	}
	for _, a := range []string{"fd00:50::10/64", "2001:db8:99::10/64"} {
		l.run("ip", "-n", w, "addr", "add", a, "dev", "eth0", "nodad")
	}
	for _, a := range []string{"203.0.113.1/24", "192.168.50.1/24", "192.168.60.1/24", "198.51.100.1/24"} {
		l.run("ip", "-n", h, "addr", "add", a, "dev", "uplink")
	}
	for _, a := range []string{"fd00:50::1/64", "2001:db8:99::1/64"} {
		l.run("ip", "-n", h, "addr", "add", a, "dev", "uplink", "nodad")
	}
	l.run("ip", "-n", w, "link", "set", "eth0", "up")
	l.run("ip", "-n", h, "link", "set", "uplink", "up")
	l.run("ip", "-n", w, "route", "add", "10.77.0.0/16", "via", "203.0.113.1")
	l.run("ip", "-n", w, "-6", "route", "add", "2001:db8:77::/64", "via", "2001:db8:99::1")
	return l
}

// serve starts servers for targets in namespace ns and waits for them to be
// bound.
func (l *lab) serve(ns string, targets ...string) {
	l.t.Helper()
	cmd := exec.Command("ip", "netns", "exec", ns, l.helperBin, "-test.run=^TestNetnsHelper$")
	cmd.Env = append(os.Environ(), helperEnv+"=serve", "AGENTLAB_EGRESS_ARGS="+strings.Join(targets, " "))
	out, err := cmd.StdoutPipe()
	if err != nil {
		l.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "ready\n" {
		l.t.Fatalf("servers in %s: %q, %v", ns, line, err)
	}
}

// probe tries targets from the guest and returns which answered.
func (l *lab) probe(targets ...string) map[string]string {
	l.t.Helper()
	cmd := exec.Command("ip", "netns", "exec", l.guest, l.helperBin, "-test.run=^TestNetnsHelper$")
	cmd.Env = append(os.Environ(), helperEnv+"=probe", "AGENTLAB_EGRESS_ARGS="+strings.Join(targets, " "))
	out, err := cmd.Output()
	if err != nil {
		l.t.Fatalf("probe: %v", err)
	}
	var res map[string]string
	if err := json.Unmarshal(out, &res); err != nil {
		l.t.Fatalf("probe output %q: %v", out, err)
	}
	return res
}

// The probes, named for what they stand for.
const (
	public      = "tcp/203.0.113.10:80"
	public6     = "tcp/[2001:db8:99::10]:80"
	publicDNS   = "udp/203.0.113.10:53"
	otherDNS    = "udp/198.51.100.53:53"
	private50   = "tcp/192.168.50.10:80"
	private60   = "tcp/192.168.60.10:80"
	ula         = "tcp/[fd00:50::10]:80"
	resolver    = "udp/10.77.0.1:53"
	resolverTCP = "tcp/10.77.0.1:53"
	guestListen = "tcp/10.77.0.1:8846"
	hostSSH     = "tcp/10.77.0.1:22"
	hostMgmt    = "tcp/192.0.2.1:80"
	hostUplink  = "tcp/203.0.113.1:80"
)

func TestEgressNamespaces(t *testing.T) {
	l := newLab(t)
	l.serve(l.host, resolver, resolverTCP, guestListen, hostSSH, hostMgmt, hostUplink)
	l.serve(l.world, public, public6, publicDNS, otherDNS, private50, private60, ula)
	all := []string{public, public6, publicDNS, otherDNS, private50, private60, ula, resolver, resolverTCP, guestListen, hostSSH, hostMgmt, hostUplink}

	// Without the table, everything answers: the lab itself works, so a
	// blocked probe below is the table's doing.
	for tg, res := range l.probe(all...) {
		if res != "ok" {
			t.Fatalf("before the table: %s: %s; want every probe to answer", tg, res)
		}
	}

	// A table of another owner, which Close must leave alone.
	if err := l.hostNft.Apply(context.Background(), "table inet other {\n\tchain c {\n\t}\n}\n"); err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		Bridge: l.bridge, Subnet: netip.MustParsePrefix("10.77.0.0/16"), Resolver: netip.MustParseAddr("10.77.0.1"),
		Guest: netip.MustParseAddrPort("10.77.0.1:8846"),
	}
	f := New(cfg, l.hostNft, nil, nil)
	sandbox := func(p egressrule.Policy, allow ...string) []Sandbox {
		rules, err := egressrule.ParseList(allow)
		if err != nil {
			t.Fatal(err)
		}
		return []Sandbox{{VMID: 101, MACs: []string{strings.ToUpper(l.guestMAC)}, Policy: p, Allow: rules}}
	}
	open := []string{public, public6, resolver, resolverTCP, guestListen}
	tests := []struct {
		name      string
		sandboxes []Sandbox
		reach     []string
	}{
		{"open", sandbox(egressrule.Open), open},
		{"open with one private CIDR", sandbox(egressrule.Open, "192.168.50.0/24"), append(open, private50)},
		{"allowlist", sandbox(egressrule.Allowlist, "203.0.113.10:80/tcp"), []string{public, resolver, resolverTCP, guestListen}},
		{"none", sandbox(egressrule.None, "192.168.50.0/24"), []string{guestListen}},
		{"unknown MAC gets the baseline", nil, open},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := f.Sync(context.Background(), tt.sandboxes); err != nil {
				t.Fatalf("Sync: %v", err)
			}
			// After the first, each Sync is a patch of one sandbox: what the
			// kernel holds is what the whole table would be.
			loaded, err := l.hostNft.List(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if err := Render(cfg, tt.sandboxes, nil).Verify(loaded); err != nil {
				t.Errorf("the loaded table is not the one rendered: %v", err)
			}
			got := l.probe(all...)
			for _, tg := range all {
				want := contains(tt.reach, tg)
				if ok := got[tg] == "ok"; ok != want {
					t.Errorf("%s: reached = %v (%s); want %v", tg, ok, got[tg], want)
				}
			}
		})
	}

	loaded, err := l.hostNft.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if c := loaded.Counters()[UnknownCounter]; c.Packets == 0 {
		t.Errorf("counter %s = %+v; want dropped packets counted", UnknownCounter, c)
	}

	if err := f.Close(context.Background()); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := l.hostNft.List(context.Background()); err == nil {
		t.Errorf("table inet %s still loaded after Close", Table)
	}
	if _, err := l.hostNft.run(context.Background(), "", "list", "table", "inet", "other"); err != nil {
		t.Errorf("Close removed another table: %v", err)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
