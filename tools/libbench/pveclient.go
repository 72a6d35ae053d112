package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"

	"github.com/agentlab/terraform-provider-agentlab/internal/pve"
)

// pveSandboxer makes sandboxes through internal/pve, as the provider does.
type pveSandboxer struct {
	c *pve.Client
}

// newPVESandboxer returns a sandboxer with an internal/pve client for
// endpoint and token that skips TLS verification.
func newPVESandboxer(ctx context.Context, endpoint, token string) (*pveSandboxer, error) {
	c, err := pve.New(ctx, pve.Config{Endpoint: endpoint, APIToken: token, Insecure: true})
	if err != nil {
		return nil, fmt.Errorf("internal/pve client: %w", err)
	}
	return &pveSandboxer{c: c}, nil
}

func (p *pveSandboxer) create(ctx context.Context, i int) (sandbox, error) {
	nonce := strconv.FormatUint(rand.Uint64(), 16)
	ref, err := p.c.Clone(ctx, pve.CloneRequest{
		Node:        node,
		SourceVMID:  templateVMID,
		Name:        sandboxName(i),
		Description: "libbench " + sandboxName(i) + " " + nonce,
		Nonce:       nonce,
	})
	sb := sandbox{vmid: ref.VMID}
	if err != nil {
		return sb, fmt.Errorf("Clone: %w", err)
	}
	if err := p.c.UpdateConfig(ctx, ref, pve.ConfigUpdate{Set: map[string]string{
		"cores":  strconv.Itoa(cores),
		"memory": strconv.Itoa(memoryMiB),
		"tags":   tags,
	}}); err != nil {
		return sb, fmt.Errorf("UpdateConfig: %w", err)
	}
	if err := p.c.Resize(ctx, ref, bootDisk, diskSize); err != nil {
		return sb, fmt.Errorf("Resize: %w", err)
	}
	if err := p.c.Start(ctx, ref); err != nil {
		return sb, fmt.Errorf("Start: %w", err)
	}
	sb.ip, err = p.c.WaitForIP(ctx, ref)
	if err != nil {
		return sb, fmt.Errorf("WaitForIP: %w", err)
	}
	return sb, nil
}

func (p *pveSandboxer) destroy(ctx context.Context, sb sandbox) error {
	return p.c.Destroy(ctx, pve.VMRef{Node: node, VMID: sb.vmid})
}
