package provider

import (
	"fmt"
	"strings"

	"github.com/agentlab/terraform-provider-agentlab/internal/lease"
	"github.com/agentlab/terraform-provider-agentlab/internal/pve"
)

// statusCloneUnfinished is the status of a sandbox whose clone failed without
// proof of its outcome. It marks the state as well as the private state does,
// because Terraform drops a resource's private state when it replaces it.
const statusCloneUnfinished = "clone-unfinished"

// vmIdentity is what the VM found at a sandbox's VMID is to that sandbox.
type vmIdentity int

const (
	// vmOurs is the sandbox itself, finished or half-made.
	vmOurs vmIdentity = iota
	// vmPlaceholder is the config placeholder of the sandbox's clone, which
	// never finished: only a clone lock, no metadata, no tag. PVE leaves it
	// when it dies mid-clone, and the lock outlives the crash.
	vmPlaceholder
	// vmOther is another VM: the sandbox is gone and its VMID reused.
	vmOther
)

// identify decides whose the VM with config cfg is. priv is the sandbox's
// metadata as last written or read (nil when unknown, e.g. for states from
// older providers), cloneInFlight whether the sandbox's clone to this VMID
// failed without proof of its outcome.
//
// The sandbox's nonce in the description proves the VM ours, tag or no tag:
// the tag is written in a second call after the clone, so a half-made
// sandbox may lack it. A clone placeholder is ours only when a clone to this
// VMID was in flight: the provider never forgets a VMID it allocated until
// it has proved the VM gone or destroyed it.
func identify(cfg pve.VMConfig, priv *lease.Metadata, cloneInFlight bool) vmIdentity {
	if priv != nil && priv.Nonce != "" && strings.Contains(cfg.Description(), priv.Nonce) {
		return vmOurs
	}
	if cloneInFlight && isClonePlaceholder(cfg) {
		return vmPlaceholder
	}
	if !lease.Owned(cfg.Tags()) {
		return vmOther
	}
	if m, err := lease.Decode(cfg.Description()); err == nil && priv != nil && m.Nonce != priv.Nonce {
		return vmOther
	}
	return vmOurs
}

// isClonePlaceholder reports whether cfg is what an unfinished clone leaves:
// neither AgentLab's tag nor its metadata, and a clone (or create) lock or,
// once an operator has removed that lock with qm unlock, no name either (PVE
// writes the placeholder with nothing but the lock, the name comes last).
func isClonePlaceholder(cfg pve.VMConfig) bool {
	if lease.Owned(cfg.Tags()) {
		return false
	}
	if _, err := lease.Decode(cfg.Description()); err == nil {
		return false
	}
	switch cfg.Lock() {
	case "clone", "create":
		return true
	case "":
		return cfg.Name() == ""
	}
	return false
}

// unlockHint tells the operator how to free a VM whose config lock an API
// token cannot override (skiplock is root-only).
func unlockHint(ref pve.VMRef, lock string) string {
	what := "a lock"
	if lock != "" {
		what = fmt.Sprintf("the lock %q", lock)
	}
	return fmt.Sprintf("VM %d on node %s carries %s, left by an operation that did not finish (for a clone "+
		"placeholder: Proxmox VE stopped mid-clone). An API token cannot remove a lock. If no task for VM %d "+
		"is still running on %s, run this on node %s as root:\n\n    qm unlock %d\n\nthen run terraform apply "+
		"(or terraform destroy) again.", ref.VMID, ref.Node, what, ref.VMID, ref.Node, ref.Node, ref.VMID)
}
