package pve

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"time"
)

// VMEntry is one guest in the cluster's resource list.
type VMEntry struct {
	VMID     int
	Node     string
	Type     string // "qemu" or "lxc"
	Name     string
	Status   string // "running", "stopped", ...
	Tags     []string
	Template bool
	Lock     string
	Pool     string
	Uptime   time.Duration
	MaxMem   int64 // bytes
	MaxDisk  int64 // bytes
	CPUs     int
}

// Ref returns the entry's VMRef.
func (e VMEntry) Ref() VMRef { return VMRef{Node: e.Node, VMID: e.VMID} }

// HasTag reports whether the entry carries tag (tags are lower-case in PVE).
func (e VMEntry) HasTag(tag string) bool { return slices.Contains(e.Tags, tag) }

// ListVMs lists every guest of the cluster (QEMU VMs and containers) with one
// GET /cluster/resources?type=vm, sorted by VMID.
func (c *Client) ListVMs(ctx context.Context) ([]VMEntry, error) {
	var raw []struct {
		VMID     flexInt `json:"vmid"`
		Node     string  `json:"node"`
		Type     string  `json:"type"`
		Name     string  `json:"name"`
		Status   string  `json:"status"`
		Tags     string  `json:"tags"`
		Template flexInt `json:"template"`
		Lock     string  `json:"lock"`
		Pool     string  `json:"pool"`
		Uptime   flexInt `json:"uptime"`
		MaxMem   flexInt `json:"maxmem"`
		MaxDisk  flexInt `json:"maxdisk"`
		MaxCPU   flexInt `json:"maxcpu"`
	}
	if err := c.get(ctx, "/cluster/resources", url.Values{"type": {"vm"}}, &raw); err != nil {
		return nil, fmt.Errorf("list vms: %w", err)
	}
	out := make([]VMEntry, 0, len(raw))
	for _, r := range raw {
		out = append(out, VMEntry{
			VMID: int(r.VMID), Node: r.Node, Type: r.Type, Name: r.Name, Status: r.Status,
			Tags: SplitTags(r.Tags), Template: r.Template == 1, Lock: r.Lock, Pool: r.Pool,
			Uptime: time.Duration(r.Uptime) * time.Second, MaxMem: int64(r.MaxMem),
			MaxDisk: int64(r.MaxDisk), CPUs: int(r.MaxCPU),
		})
	}
	slices.SortFunc(out, func(a, b VMEntry) int { return a.VMID - b.VMID })
	return out, nil
}

// FindVM looks a guest up by VMID in the cluster's resource list. A missing
// guest gives an error for which IsNotFound is true.
func (c *Client) FindVM(ctx context.Context, vmid int) (VMEntry, error) {
	vms, err := c.ListVMs(ctx)
	if err != nil {
		return VMEntry{}, err
	}
	for _, v := range vms {
		if v.VMID == vmid {
			return v, nil
		}
	}
	return VMEntry{}, fmt.Errorf("vm %d: %w", vmid, ErrNotFound)
}
