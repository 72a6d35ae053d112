// Package egress is the reaper's egress filter: it renders one nftables table
// (inet agentlab) that keeps sandboxes on the agent bridge away from private
// networks and the Proxmox host, applies it atomically with nft -f, checks
// what the kernel loaded against what it rendered, reads the per-sandbox
// counters of dropped packets and removes the table, and only that table, on
// shutdown.
//
// Sandboxes are told apart by the MAC addresses of their NICs on the bridge:
// the reaper knows them from the VM's config (net0=virtio=BC:24:11:...) as
// soon as the VM exists, with no guest agent and no DHCP lease to read. A
// guest can forge its source MAC; Proxmox VE's firewall (firewall=1 on the
// NIC, whose MAC filter is on by default) drops such frames, and a forged MAC
// still gets the baseline policy below, never more.
//
// What the table does for traffic arriving from the bridge:
//   - established and related flows pass (replies, and flows opened from
//     outside);
//   - DHCP, IPv6 neighbour discovery and the reaper's guest listener always
//     reach the host;
//   - every sandbox then follows its policy (see egressrule): open reaches the
//     internet minus RFC 1918, 100.64.0.0/10, 169.254.0.0/16, fc00::/7 and
//     fe80::/10; allowlist reaches only its entries; none reaches nothing
//     else. DNS goes only to the configured resolver, nothing else reaches the
//     host's own addresses, and an allow-list entry opens a private range only
//     when it lies inside it (0.0.0.0/0:443 opens the internet's port 443, not
//     the LAN's);
//   - a MAC that belongs to no known sandbox gets the open policy with the
//     operator's allow list: the baseline every VM on the bridge is held to.
//     A sandbox whose metadata is broken gets none (fail closed).
package egress

import (
	"net"
	"net/netip"
	"slices"

	"github.com/agentlab/terraform-provider-agentlab/internal/egressrule"
)

// Table is the nftables table the reaper owns, in family inet. It touches no
// other table.
const Table = "agentlab"

// Config is what the ruleset is rendered from: the reaper's egress and guest
// settings.
type Config struct {
	// Bridge is the agent bridge, e.g. vmbr1.
	Bridge string
	// Subnet is the sandboxes' IPv4 range; packets from the bridge with
	// another IPv4 source are dropped.
	Subnet netip.Prefix
	// Resolver is the only DNS server sandboxes may query.
	Resolver netip.Addr
	// Guest is the reaper's guest listener; the zero value means none. An
	// unspecified address (0.0.0.0) admits the port on every host address.
	Guest netip.AddrPort
	// Allow holds the operator's entries, open to every sandbox whose policy
	// is not none.
	Allow []egressrule.Rule
}

// Sandbox is one sandbox as the filter sees it.
type Sandbox struct {
	// VMID is the Proxmox VM ID.
	VMID int
	// MACs are the MAC addresses of the VM's NICs on the bridge; malformed
	// ones are left out.
	MACs []string
	// Policy is the sandbox's egress policy.
	Policy egressrule.Policy
	// Allow holds the sandbox's own allow-list entries.
	Allow []egressrule.Rule
	// Broken says the sandbox's metadata could not be read or is invalid:
	// it gets None, whatever Policy says.
	Broken bool
}

// normalize returns s with MACs lower-case and sorted and the policy a
// known one, so that two equal sandboxes compare equal.
func (s Sandbox) normalize() Sandbox {
	macs := make([]string, 0, len(s.MACs))
	for _, m := range s.MACs {
		// Only a well-formed Ethernet address reaches the script.
		if hw, err := net.ParseMAC(m); err == nil && len(hw) == 6 {
			macs = append(macs, hw.String())
		}
	}
	slices.Sort(macs)
	s.MACs = slices.Compact(macs)
	if s.Broken {
		s.Policy, s.Allow = egressrule.None, nil
	}
	if s.Policy == "" {
		s.Policy = egressrule.Open
	}
	return s
}

// equal reports whether a and b, normalised, call for the same rules.
func (s Sandbox) equal(o Sandbox) bool {
	return s.VMID == o.VMID && s.Policy == o.Policy && s.Broken == o.Broken &&
		slices.Equal(s.MACs, o.MACs) && slices.Equal(s.Allow, o.Allow)
}

// Blocked returns the destination ranges no sandbox reaches unless an allow
// entry inside one of them opens it: RFC 1918, CGNAT, link-local and IPv6
// unique-local and link-local.
func Blocked() []netip.Prefix {
	return []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"),
		netip.MustParsePrefix("100.64.0.0/10"),
		netip.MustParsePrefix("169.254.0.0/16"),
		netip.MustParsePrefix("172.16.0.0/12"),
		netip.MustParsePrefix("192.168.0.0/16"),
		netip.MustParsePrefix("fc00::/7"),
		netip.MustParsePrefix("fe80::/10"),
	}
}

// insideBlocked reports whether p lies entirely inside one blocked range.
func insideBlocked(p netip.Prefix) bool {
	for _, b := range Blocked() {
		if b.Addr().Is4() == p.Addr().Is4() && b.Bits() <= p.Bits() && b.Contains(p.Addr()) {
			return true
		}
	}
	return false
}
