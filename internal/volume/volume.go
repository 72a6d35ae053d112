// Package volume holds the naming rules for the Proxmox volumes AgentLab
// makes and reads: who owns a volume (the rule PVE frees disks by), which
// template a linked clone's disk is based on, and the name of a sandbox's
// cloud-init seed ISO. The provider and the reaper both import it, so the two
// programs can never disagree on whose a volume is.
package volume

import (
	"strconv"
	"strings"
)

// name returns the last path element of a volume's name, without the
// storage prefix: "local-lvm:base-9000-disk-0/vm-101-disk-0" gives
// "vm-101-disk-0", "local:101/vm-101-disk-0.qcow2" gives "vm-101-disk-0.qcow2".
func name(volid string) string {
	_, n, ok := strings.Cut(volid, ":")
	if !ok {
		n = volid
	}
	if i := strings.LastIndex(n, "/"); i >= 0 {
		n = n[i+1:]
	}
	return n
}

// vmidAfter parses the VMID in "<prefix><vmid>-..." and reports whether s
// has that form.
func vmidAfter(s, prefix string) (int, bool) {
	rest, ok := strings.CutPrefix(s, prefix)
	if !ok {
		return 0, false
	}
	id, tail, ok := strings.Cut(rest, "-")
	if !ok || tail == "" || id == "" || id[0] == '0' {
		return 0, false
	}
	n, err := strconv.Atoi(id)
	if err != nil || n <= 0 {
		return 0, false
	}
	return n, true
}

// Owner returns the VMID that owns a volume, in PVE's naming: the disk
// "vm-<vmid>-..." or the template base "base-<vmid>-...", taken from the last
// path element, so a linked clone's "base-9000-disk-0/vm-101-disk-0" belongs
// to 101, not to its template. PVE frees exactly the volumes a destroyed
// VMID owns. ok is false for names without an owner (ISOs, snippets).
func Owner(volid string) (vmid int, ok bool) {
	n := name(volid)
	if id, ok := vmidAfter(n, "vm-"); ok {
		return id, true
	}
	return vmidAfter(n, "base-")
}

// IsBase reports whether volid is a template's base volume itself (not a
// linked clone based on one).
func IsBase(volid string) bool {
	_, ok := vmidAfter(name(volid), "base-")
	return ok
}

// Base returns the VMID of the template a volume is, or is linked to: the
// "base-<vmid>-..." element anywhere in its name. ok is false for a volume
// that is neither a base volume nor a linked clone of one.
func Base(volid string) (vmid int, ok bool) {
	_, n, found := strings.Cut(volid, ":")
	if !found {
		n = volid
	}
	for _, part := range strings.Split(n, "/") {
		if id, ok := vmidAfter(part, "base-"); ok {
			return id, true
		}
	}
	return 0, false
}

// seedPrefix and seedSuffix frame a seed ISO's file name.
const (
	seedPrefix = "agentlab-"
	seedSuffix = "-cidata.iso"
)

// SeedISOName is the file name of sandbox vmid's cloud-init seed ISO in its
// ISO storage: "agentlab-<vmid>-cidata.iso".
func SeedISOName(vmid int) string { return seedPrefix + strconv.Itoa(vmid) + seedSuffix }

// SeedISOVolid is the volid of sandbox vmid's seed ISO on storage:
// "<storage>:iso/agentlab-<vmid>-cidata.iso".
func SeedISOVolid(storage string, vmid int) string { return storage + ":iso/" + SeedISOName(vmid) }

// SeedISOOwner returns the VMID whose seed ISO volid (or a bare file name)
// names, and whether it names one at all.
func SeedISOOwner(volid string) (vmid int, ok bool) {
	n := name(volid)
	rest, ok := strings.CutSuffix(n, seedSuffix)
	if !ok {
		return 0, false
	}
	rest, ok = strings.CutPrefix(rest, seedPrefix)
	if !ok || rest == "" || rest[0] == '0' {
		return 0, false
	}
	id, err := strconv.Atoi(rest)
	if err != nil || id <= 0 {
		return 0, false
	}
	return id, true
}
