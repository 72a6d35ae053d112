package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/netip"

	"github.com/Telmate/proxmox-api-go/proxmox"

	"github.com/agentlab/terraform-provider-agentlab/internal/pve"
)

// libTaskTimeout is the library's task timeout in seconds (the value
// internal/pve gives it too).
const libTaskTimeout = 300

// errAgentNotRunning is the text GetVmAgentNetworkInterfaces returns while
// the guest agent does not answer yet.
const errAgentNotRunning = "guest agent is not running"

// libSandboxer makes sandboxes with the Telmate library alone, through one
// shared client, as a provider built directly on the library does.
type libSandboxer struct {
	c    *proxmox.Client
	poll pollSchedule
}

// newLibSandboxer returns a sandboxer with a library client for endpoint
// (with or without /api2/json) and token (USER@REALM!ID=SECRET) that skips
// TLS verification.
func newLibSandboxer(endpoint, token string, poll pollSchedule) (*libSandboxer, error) {
	base, err := pve.NormalizeEndpoint(endpoint)
	if err != nil {
		return nil, err
	}
	tokenID, secret, err := pve.ParseAPIToken(token)
	if err != nil {
		return nil, err
	}
	tlsConf := &tls.Config{InsecureSkipVerify: true} //nolint:gosec // the simulator's self-signed certificate
	c, err := proxmox.NewClient(base, nil, "", tlsConf, "", libTaskTimeout, false)
	if err != nil {
		return nil, fmt.Errorf("library client: %w", err)
	}
	var id proxmox.ApiTokenID
	if err := id.Parse(tokenID); err != nil {
		return nil, fmt.Errorf("library token id %q: %w", tokenID, err)
	}
	c.SetAPIToken(id, proxmox.ApiTokenSecret(secret))
	return &libSandboxer{c: c, poll: poll}, nil
}

// qemuRef addresses a VM on the node without a lookup.
func qemuRef(vmid int) *proxmox.VmRef {
	r := proxmox.NewVmRef(proxmox.GuestID(vmid))
	r.SetNode(node)
	r.SetVmType(proxmox.GuestQemu)
	return r
}

func (l *libSandboxer) create(ctx context.Context, i int) (sandbox, error) {
	name := proxmox.GuestName(sandboxName(i))
	// No ID: the library picks one itself (guestCreateLoop_Unsafe, under the
	// client's guest-creation mutex).
	vmr, err := qemuRef(templateVMID).CloneQemu(ctx, proxmox.CloneQemuTarget{
		Linked: &proxmox.CloneLinked{Node: node, Name: &name},
	}, l.c)
	if err != nil {
		return sandbox{}, fmt.Errorf("CloneQemu: %w", err)
	}
	sb := sandbox{vmid: int(vmr.VmId())}
	if _, err := l.c.SetVmConfig(vmr, map[string]any{
		"cores":       cores,
		"memory":      memoryMiB,
		"tags":        tags,
		"description": "libbench " + string(name),
	}); err != nil {
		return sb, fmt.Errorf("SetVmConfig: %w", err)
	}
	if _, err := l.c.ResizeQemuDiskRaw(ctx, vmr, bootDisk, diskSize); err != nil {
		return sb, fmt.Errorf("ResizeQemuDiskRaw: %w", err)
	}
	if _, err := l.c.StartVm(ctx, vmr); err != nil {
		return sb, fmt.Errorf("StartVm: %w", err)
	}
	sb.ip, err = l.waitForIP(ctx, vmr)
	return sb, err
}

// waitForIP polls GetVmAgentNetworkInterfaces until it reports a usable
// IPv4 address, treating "guest agent is not running" as "not yet".
func (l *libSandboxer) waitForIP(ctx context.Context, vmr *proxmox.VmRef) (netip.Addr, error) {
	for wait := l.poll.first(); ; wait = l.poll.next(wait) {
		ifaces, err := l.c.GetVmAgentNetworkInterfaces(ctx, vmr)
		switch {
		case err == nil:
			if ip, ok := firstUsableIPv4(ifaces); ok {
				return ip, nil
			}
		case err.Error() != errAgentNotRunning:
			return netip.Addr{}, fmt.Errorf("GetVmAgentNetworkInterfaces: %w", err)
		}
		if err := sleepCtx(ctx, wait); err != nil {
			return netip.Addr{}, fmt.Errorf("wait for the guest agent's ip: %w", err)
		}
	}
}

func firstUsableIPv4(ifaces []proxmox.AgentNetworkInterface) (netip.Addr, bool) {
	for _, iface := range ifaces {
		for _, raw := range iface.IpAddresses {
			if ip, ok := netip.AddrFromSlice(raw); ok && usableIPv4(ip) {
				return ip.Unmap(), true
			}
		}
	}
	return netip.Addr{}, false
}

// destroy stops the VM (the library's DeleteVm does not) and deletes it.
func (l *libSandboxer) destroy(ctx context.Context, sb sandbox) error {
	vmr := qemuRef(sb.vmid)
	_, stopErr := l.c.StopVm(ctx, vmr)
	if _, err := l.c.DeleteVm(ctx, vmr); err != nil {
		return errors.Join(fmt.Errorf("DeleteVm: %w", err), stopErr)
	}
	return nil
}
