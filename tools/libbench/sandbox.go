package main

import (
	"context"
	"net/netip"
	"strconv"
)

// What every sandbox is made of, in both phases.
const (
	node         = "pve"
	templateVMID = 9000
	bootDisk     = "scsi0"
	diskSize     = "20G" // the template's disk is 8G
	cores        = 2
	memoryMiB    = 2048
	tags         = "agentlab;libbench"
)

// sandbox is a VM a sandboxer made.
type sandbox struct {
	vmid int        // 0 when no VM was made
	ip   netip.Addr // the guest agent's IPv4 address, once known
}

// sandboxer creates and destroys sandboxes through one client library.
type sandboxer interface {
	// create makes sandbox i: clone the template with an automatically
	// chosen VMID, configure, resize, start and wait for the guest's IPv4
	// address. On failure the returned sandbox names the VM if one was made.
	create(ctx context.Context, i int) (sandbox, error)
	// destroy stops and deletes a sandbox's VM.
	destroy(ctx context.Context, sb sandbox) error
}

func sandboxName(i int) string { return "bench-" + strconv.Itoa(i) }

// usableIPv4 reports whether ip can be the guest's address: IPv4, not
// loopback, link-local or unspecified.
func usableIPv4(ip netip.Addr) bool {
	ip = ip.Unmap()
	return ip.Is4() && !ip.IsLoopback() && !ip.IsLinkLocalUnicast() && !ip.IsUnspecified()
}
