package provider

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Patterns for names the resource's validators and the import ID accept.
var (
	// dnsNamePattern is a DNS name as Proxmox VE accepts for VM and node names.
	dnsNamePattern = regexp.MustCompile(`^([a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?\.)*[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?$`)
	// storageIDPattern is a Proxmox VE storage ID.
	storageIDPattern = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9._-]*[a-zA-Z0-9]$`)
	// bridgePattern is a Linux bridge interface name.
	bridgePattern = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9_.-]{0,14}$`)
	// sshKeyPattern is one OpenSSH public key line.
	sshKeyPattern = regexp.MustCompile(`^(ssh-[a-z0-9-]+|ecdsa-sha2-[a-z0-9-]+|sk-[a-z0-9@.-]+) [A-Za-z0-9+/=]+( .*)?$`)
	// profileNamePattern is a profile name: a file name without a path.
	profileNamePattern = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._-]*$`)
)

// sandboxID returns the resource ID of a sandbox, "<node>/<vmid>".
func sandboxID(node string, vmid int64) string {
	return node + "/" + strconv.FormatInt(vmid, 10)
}

// parseSandboxID splits a resource or import ID "<node>/<vmid>".
func parseSandboxID(id string) (node string, vmid int64, err error) {
	node, rest, ok := strings.Cut(id, "/")
	if !ok || node == "" || !dnsNamePattern.MatchString(node) {
		return "", 0, fmt.Errorf("the ID %q is not <node>/<vmid>", id)
	}
	vmid, err = strconv.ParseInt(rest, 10, 64)
	if err != nil || vmid < 100 || vmid > 999999999 || strconv.FormatInt(vmid, 10) != rest {
		return "", 0, fmt.Errorf("the ID %q is not <node>/<vmid>: the VMID must be a number from 100 to 999999999", id)
	}
	return node, vmid, nil
}
