package main

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/agentlab/terraform-provider-agentlab/internal/pve"
	"github.com/agentlab/terraform-provider-agentlab/reaper/sqlite"
)

// vmAddresses finds a sandbox's address for `agentlab-reaper ssh`: its node
// from the store, its IPv4 address from the guest agent.
type vmAddresses struct {
	pve *pve.Client
	db  *sqlite.DB
}

// addressWait bounds the wait for the guest agent's answer.
const addressWait = 15 * time.Second

// Address implements api.Addresser.
func (a vmAddresses) Address(ctx context.Context, vmid int) (netip.Addr, error) {
	l, err := a.db.Lease(ctx, vmid)
	if err != nil {
		return netip.Addr{}, err
	}
	if !l.State.Present() {
		return netip.Addr{}, fmt.Errorf("vm %d is %s", vmid, l.State)
	}
	ctx, cancel := context.WithTimeout(ctx, addressWait)
	defer cancel()
	return a.pve.WaitForIP(ctx, pve.VMRef{Node: l.Node, VMID: vmid})
}
