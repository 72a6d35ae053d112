#!/usr/bin/env bash
# Builds AgentLab's VM template on a Proxmox VE host from a Debian cloud
# image: cloud-init, qemu-guest-agent, curl, git and age installed with
# virt-customize (libguestfs-tools), and the template's age identity at
# /etc/agentlab/age.key (root, 0400) inside the image. The identity
# stays on the host in /etc/agentlab/templates/VMID.age-identity (0600) and
# its public recipient in VMID.age-recipient: secrets for sandboxes cloned
# from this template are encrypted to that recipient. The provider attaches
# its own NoCloud ISO, so the template has no cloud-init drive. Idempotent:
# an existing VMID is left alone (qm destroy it to rebuild). Dry run by
# default; --apply to change the host.
#
#   scripts/host/build-template.sh [--apply] [--vmid 9000] [--name debian-13-agentlab]
#       [--storage local-lvm] [--bridge vmbr1] [--image-url URL]
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
. "$(dirname "$0")/lib.sh"

vmid=9000 name=debian-13-agentlab storage=local-lvm bridge=vmbr1
url=https://cloud.debian.org/images/cloud/trixie/latest/debian-13-genericcloud-amd64.qcow2
parse_mode "$@"
set -- "${REST[@]+"${REST[@]}"}"
while [ $# -gt 0 ]; do
	case "$1" in
	--vmid) vmid=${2:?--vmid needs a free VMID, e.g. 9000}; shift 2 ;;
	--name) name=${2:?--name needs the template name}; shift 2 ;;
	--storage) storage=${2:?--storage needs a storage for disk images, e.g. local-lvm}; shift 2 ;;
	--bridge) bridge=${2:?--bridge needs the agent bridge, e.g. vmbr1}; shift 2 ;;
	--image-url) url=${2:?--image-url needs a qcow2 cloud image URL}; shift 2 ;;
	-h | --help) sed -n '2,14p' "$0"; exit 0 ;;
	*) die "unknown argument $1 (see --help)" ;;
	esac
done
[[ $vmid =~ ^[1-9][0-9]{2,8}$ ]] || die "--vmid $vmid: want a VMID from 100 to 999999999"
[[ $name =~ ^[A-Za-z0-9][A-Za-z0-9.-]*$ ]] || die "--name $name: a VM name is letters, digits, dots and dashes"

if have qm && qm status "$vmid" >/dev/null 2>&1; then
	echo "ok: VM $vmid exists; to rebuild the template run: qm destroy $vmid, then this script again"
	finish
	exit 0
fi

work=/var/lib/agentlab/template-build
image=$work/$(basename "$url")
disk=$work/$vmid.qcow2
keys=/etc/agentlab/templates
identity=$keys/$vmid.age-identity

# 1. Tools: virt-customize and age-keygen.
pkgs=()
have virt-customize || pkgs+=(libguestfs-tools)
have age-keygen || pkgs+=(age)
[ ${#pkgs[@]} -eq 0 ] || run apt-get install -y "${pkgs[@]}"

# 2. The template's age identity (kept across rebuilds: rotating it is a
#    separate, deliberate step, see docs/host-setup.md).
if [ -s "$identity" ]; then
	echo "ok: $identity exists"
else
	run install -d -m 0700 "$keys"
	run age-keygen -o "$identity"
fi
if [ "$APPLY" = 1 ]; then
	chmod 0600 "$identity"
	age-keygen -y "$identity" >"$keys/$vmid.age-recipient"
	echo "+ wrote $keys/$vmid.age-recipient: $(cat "$keys/$vmid.age-recipient")"
else
	echo "would write $keys/$vmid.age-recipient (age-keygen -y $identity)"
fi

# 3. The image, customised.
run install -d -m 0700 "$work"
[ -s "$image" ] || run curl -fL --retry 3 -o "$image" "$url"
run cp "$image" "$disk"
run virt-customize -a "$disk" \
	--install cloud-init,qemu-guest-agent,curl,git,age \
	--run-command 'systemctl enable qemu-guest-agent' \
	--mkdir /etc/agentlab \
	--upload "$identity:/etc/agentlab/age.key" \
	--chmod 0400:/etc/agentlab/age.key \
	--run-command 'cloud-init clean --logs --seed' \
	--truncate /etc/machine-id

# 4. The VM, made a template.
run qm create "$vmid" --name "$name" --ostype l26 --cores 2 --memory 2048 \
	--net0 "virtio,bridge=$bridge" --scsihw virtio-scsi-single \
	--agent enabled=1 --serial0 socket --vga serial0
run qm set "$vmid" --scsi0 "$storage:0,import-from=$disk" --boot order=scsi0
run qm template "$vmid"
run rm -f "$disk"
finish
