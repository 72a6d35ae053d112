package pvesim

import (
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"
)

// GuestIPv4 returns the IPv4 address the simulated guest agent of VM vmid
// reports for a DHCP lease (its first NIC without ipconfig0, or with
// ip=dhcp, on any bridge): 10.77.X.Y/16, derived from the VMID.
func GuestIPv4(vmid int) netip.Addr {
	x := (vmid / 254) % 256
	y := vmid%254 + 1
	return netip.AddrFrom4([4]byte{10, 77, byte(x), byte(y)})
}

// handleAgentInterfaces is GET .../agent/network-get-interfaces. The agent
// answers only when enabled in the config, the VM runs and has a disk to
// boot from; it comes up half way through the VM's boot time (boot.go;
// loopback and link-local only) and reports the IPv4 address cloud-init's
// ipconfig0 gives it once the boot time has passed. Until the agent is up a
// call waits Service.AgentPing (qemu-server's guest-ping timeout) and fails
// "QEMU guest agent is not running", holding its worker meanwhile.
func handleAgentInterfaces(c *call) (any, error) {
	if err := c.checkNode(); err != nil {
		return nil, err
	}
	s := c.s
	s.mu.Lock()
	v, err := s.vmLocked(c.node(), c.vmid())
	if err != nil {
		s.mu.Unlock()
		return nil, err
	}
	if !agentEnabled(v.Conf) {
		s.mu.Unlock()
		return nil, fail("No QEMU guest agent configured")
	}
	if !v.Running {
		s.mu.Unlock()
		return nil, fail("VM %d is not running", v.VMID)
	}
	up := s.clock.Now().Sub(v.StartedAt)
	boot := s.bootTime(v.VMID, v.PID)
	if up < boot/2 || !hasBootDisk(v.Conf) {
		s.mu.Unlock()
		s.sleep(c.r.Context(), s.opts.Latency.Service.AgentPing)
		return nil, fail("QEMU guest agent is not running")
	}
	defer s.mu.Unlock()
	withIPv4 := up >= boot
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
	for _, n := range nets {
		nc, err := parseNet(v.Conf["net"+strconv.Itoa(n)])
		if err != nil {
			continue
		}
		mac := strings.ToLower(nc.mac)
		addrs := []map[string]any{}
		if withIPv4 {
			if a, ok := guestAddress(v, n); ok {
				addrs = append(addrs, map[string]any{"ip-address": a.Addr().String(), "ip-address-type": "ipv4", "prefix": a.Bits()})
			}
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

// hasBootDisk reports whether the config has a disk a guest could boot from
// (not a CD-ROM, not the cloud-init drive).
func hasBootDisk(conf map[string]string) bool {
	for k, val := range conf {
		if !driveKeyRE.MatchString(k) || strings.HasPrefix(k, "unused") || strings.HasPrefix(k, "efidisk") || strings.HasPrefix(k, "tpmstate") {
			continue
		}
		d := parseDrive(val)
		if !d.isCDROM() && !d.isCloudInit() {
			return true
		}
	}
	return false
}

// guestAddress is the IPv4 address the guest configures on netN: the static
// address of ipconfigN ("ip=192.0.2.10/24,gw=..."), or, with "ip=dhcp" or
// no ipconfigN (cloud-init's fallback is DHCP on the first NIC), the lease of
// the simulated DHCP server every bridge has, GuestIPv4 in 10.77.0.0/16 (the
// sandbox subnet AgentLab's docs use). Without a cloud-init drive ipconfigN
// is not applied. IPv6-only configs and secondary NICs without ipconfigN get
// no IPv4 address.
func guestAddress(v *vmState, n int) (netip.Prefix, bool) {
	ipc, has := v.Conf["ipconfig"+strconv.Itoa(n)]
	if !hasCloudInitDrive(v.Conf) {
		has = false
	}
	ip := "dhcp"
	if has {
		ip = ""
		for _, part := range strings.Split(ipc, ",") {
			if k, val, ok := strings.Cut(part, "="); ok && k == "ip" {
				ip = val
			}
		}
	} else if n != firstNet(v.Conf) {
		return netip.Prefix{}, false
	}
	switch ip {
	case "":
		return netip.Prefix{}, false
	case "dhcp":
		return netip.PrefixFrom(GuestIPv4(v.VMID), 16), true
	}
	p, err := netip.ParsePrefix(ip)
	if err != nil || !p.Addr().Is4() {
		return netip.Prefix{}, false
	}
	return p, true
}

func hasCloudInitDrive(conf map[string]string) bool {
	for k, val := range conf {
		if driveKeyRE.MatchString(k) && parseDrive(val).isCloudInit() {
			return true
		}
	}
	return false
}

// firstNet is the lowest N of the config's netN keys (-1 when none).
func firstNet(conf map[string]string) int {
	first := -1
	for k := range conf {
		if netKeyRE.MatchString(k) {
			if n, _ := strconv.Atoi(strings.TrimPrefix(k, "net")); first < 0 || n < first {
				first = n
			}
		}
	}
	return first
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
