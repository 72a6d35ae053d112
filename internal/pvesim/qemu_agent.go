package pvesim

import (
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"
)

// GuestIPv4 returns the IPv4 address the simulated guest agent of VM vmid
// reports: 10.77.X.Y/16, derived from the VMID.
func GuestIPv4(vmid int) netip.Addr {
	x := (vmid / 254) % 256
	y := vmid%254 + 1
	return netip.AddrFrom4([4]byte{10, 77, byte(x), byte(y)})
}

// handleAgentInterfaces is GET .../agent/network-get-interfaces. The agent
// answers only when enabled in the config and the VM runs; it comes up half
// way through Latency.GuestAgentIP (loopback and link-local only) and reports
// the IPv4 address once GuestAgentIP has passed since the start.
func handleAgentInterfaces(c *call) (any, error) {
	if err := c.checkNode(); err != nil {
		return nil, err
	}
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	v, err := s.vmLocked(c.node(), c.vmid())
	if err != nil {
		return nil, err
	}
	if !agentEnabled(v.Conf) {
		return nil, fail("No QEMU guest agent configured")
	}
	if !v.Running {
		return nil, fail("VM %d is not running", v.VMID)
	}
	up := s.clock.Now().Sub(v.StartedAt)
	delay := s.opts.Latency.GuestAgentIP
	if up < delay/2 {
		return nil, fail("QEMU guest agent is not running")
	}
	withIPv4 := up >= delay
	ifaces := []map[string]any{{
		"name":             "lo",
		"hardware-address": "00:00:00:00:00:00",
		"ip-addresses": []map[string]any{
			{"ip-address": "127.0.0.1", "ip-address-type": "ipv4", "prefix": 8},
			{"ip-address": "::1", "ip-address-type": "ipv6", "prefix": 128},
		},
		"statistics": ifaceStats(0),
	}}
	var nets []int
	for k := range v.Conf {
		if netKeyRE.MatchString(k) {
			n, _ := strconv.Atoi(strings.TrimPrefix(k, "net"))
			nets = append(nets, n)
		}
	}
	sort.Ints(nets)
	for i, n := range nets {
		nc, err := parseNet(v.Conf["net"+strconv.Itoa(n)])
		if err != nil {
			continue
		}
		mac := strings.ToLower(nc.mac)
		addrs := []map[string]any{}
		if withIPv4 && i == 0 {
			addrs = append(addrs, map[string]any{"ip-address": GuestIPv4(v.VMID).String(), "ip-address-type": "ipv4", "prefix": 16})
		}
		addrs = append(addrs, map[string]any{"ip-address": linkLocal(mac), "ip-address-type": "ipv6", "prefix": 64})
		ifaces = append(ifaces, map[string]any{
			"name":             fmt.Sprintf("ens%d", 18+n),
			"hardware-address": mac,
			"ip-addresses":     addrs,
			"statistics":       ifaceStats(v.VMID),
		})
	}
	return map[string]any{"result": ifaces}, nil
}

func ifaceStats(seed int) map[string]any {
	return map[string]any{
		"rx-bytes": 1024 * seed, "rx-dropped": 0, "rx-errs": 0, "rx-packets": 10 * seed,
		"tx-bytes": 512 * seed, "tx-dropped": 0, "tx-errs": 0, "tx-packets": 5 * seed,
	}
}

// linkLocal returns the EUI-64 link-local IPv6 address for a MAC.
func linkLocal(mac string) string {
	var b [6]byte
	for i, p := range strings.Split(mac, ":") {
		if i >= 6 {
			break
		}
		n, _ := strconv.ParseUint(p, 16, 8)
		b[i] = byte(n)
	}
	a := [16]byte{0xfe, 0x80, 8: b[0] ^ 2, 9: b[1], 10: b[2], 11: 0xff, 12: 0xfe, 13: b[3], 14: b[4], 15: b[5]}
	return netip.AddrFrom16(a).String()
}
