#!/usr/bin/env bash
# Creates the agent bridge (vmbr1, 10.77.0.0/16 by default) on a Proxmox VE
# host, NATs it out of the uplink, and serves DHCP and DNS on it with dnsmasq.
# Idempotent. Dry run by default; --apply to change the host.
#
#   scripts/host/setup-network.sh [--apply] [--bridge vmbr1] [--subnet 10.77.0.0/16]
#       [--gateway 10.77.0.1] [--dhcp-range 10.77.0.10,10.77.255.254] [--uplink vmbr0]
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
. "$(dirname "$0")/lib.sh"

bridge=vmbr1 subnet=10.77.0.0/16 gateway=10.77.0.1 range=10.77.0.10,10.77.255.254 uplink=vmbr0
parse_mode "$@"
set -- "${REST[@]+"${REST[@]}"}"
while [ $# -gt 0 ]; do
	case "$1" in
	--bridge) bridge=${2:?--bridge needs a name, e.g. vmbr1}; shift 2 ;;
	--subnet) subnet=${2:?--subnet needs a CIDR, e.g. 10.77.0.0/16}; shift 2 ;;
	--gateway) gateway=${2:?--gateway needs the bridge address, e.g. 10.77.0.1}; shift 2 ;;
	--dhcp-range) range=${2:?--dhcp-range needs FIRST,LAST}; shift 2 ;;
	--uplink) uplink=${2:?--uplink needs the bridge with the default route, e.g. vmbr0}; shift 2 ;;
	-h | --help) sed -n '2,8p' "$0"; exit 0 ;;
	*) die "unknown argument $1 (see --help)" ;;
	esac
done
[[ $bridge =~ ^vmbr[0-9]+$ ]] || die "--bridge $bridge: Proxmox VE bridges are named vmbrN"
[[ $subnet =~ ^([0-9]{1,3}\.){3}[0-9]{1,3}/([0-9]|[12][0-9]|3[0-2])$ ]] || die "--subnet $subnet: want an IPv4 CIDR such as 10.77.0.0/16"
[[ $gateway =~ ^([0-9]{1,3}\.){3}[0-9]{1,3}$ ]] || die "--gateway $gateway: want an IPv4 address such as 10.77.0.1"
[[ $range =~ ^([0-9]{1,3}\.){3}[0-9]{1,3},([0-9]{1,3}\.){3}[0-9]{1,3}$ ]] || die "--dhcp-range $range: want FIRST,LAST such as 10.77.0.10,10.77.255.254"
prefix=${subnet#*/}

# 1. The bridge, with NAT to the uplink (ifupdown2 reads interfaces.d on Proxmox VE).
iface=/etc/network/interfaces.d/agentlab-$bridge
if [ -f /etc/network/interfaces ] && ! grep -q '^source .*interfaces.d' /etc/network/interfaces; then
	echo "warning: /etc/network/interfaces does not source /etc/network/interfaces.d/*; add the line 'source /etc/network/interfaces.d/*'" >&2
fi
if write_file "$iface" 0644 "# AgentLab sandboxes' bridge; written by scripts/host/setup-network.sh.
auto $bridge
iface $bridge inet static
	address $gateway/$prefix
	bridge-ports none
	bridge-stp off
	bridge-fd 0
	post-up   iptables -t nat -A POSTROUTING -s $subnet -o $uplink -j MASQUERADE
	post-down iptables -t nat -D POSTROUTING -s $subnet -o $uplink -j MASQUERADE"; then
	run ifreload -a
fi
if write_file /etc/sysctl.d/90-agentlab.conf 0644 "# AgentLab: route sandboxes' traffic to the uplink.
net.ipv4.ip_forward = 1"; then
	run sysctl --system
fi

# 2. DHCP and DNS for the sandboxes.
if ! dpkg -s dnsmasq >/dev/null 2>&1; then
	run apt-get install -y dnsmasq
fi
if write_file "/etc/dnsmasq.d/agentlab-$bridge.conf" 0644 "# AgentLab sandboxes: DHCP and DNS on $bridge only; written by scripts/host/setup-network.sh.
interface=$bridge
bind-interfaces
except-interface=lo
dhcp-range=$range,12h
dhcp-option=option:router,$gateway
dhcp-option=option:dns-server,$gateway"; then
	run systemctl enable dnsmasq
	run systemctl restart dnsmasq
fi
finish
