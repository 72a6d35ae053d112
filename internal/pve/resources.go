package pve

import (
	"context"
	"encoding/json"
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
//
// The list is decoded in one pass over the response (see vmlist.go): with
// 10,000 guests it is the reaper's main cost per tick.
func (c *Client) ListVMs(ctx context.Context) ([]VMEntry, error) {
	var l vmList
	if err := c.get(ctx, "/cluster/resources", url.Values{"type": {"vm"}}, &l); err != nil {
		return nil, fmt.Errorf("list vms: %w", err)
	}
	return l.sorted(), nil
}

// vmFields are the numbers of one resource list item, as PVE sends them
// (JSON numbers, numeric strings, booleans or null, see flexInt).
type vmFields struct {
	VMID, Template, Uptime, MaxMem, MaxDisk, MaxCPU int64
}

// entry builds the VMEntry of an item from its numbers, its strings (in e)
// and its tags.
func (f vmFields) entry(e VMEntry, tags []string) VMEntry {
	e.VMID, e.Template, e.Uptime = int(f.VMID), f.Template == 1, time.Duration(f.Uptime)*time.Second
	e.MaxMem, e.MaxDisk, e.CPUs, e.Tags = f.MaxMem, f.MaxDisk, int(f.MaxCPU), tags
	return e
}

// vmList is the data of GET /cluster/resources?type=vm. send decodes it as
// it arrives with decodeStream, in one pass and without reflection, and
// falls back to encoding/json (vmListJSON) for anything that parser leaves
// to it.
type vmList struct {
	vms []VMEntry
}

// vmListJSON is a vmList that encoding/json decodes: the reference
// behaviour, which decodeStream reproduces.
type vmListJSON vmList

// sorted returns the guests sorted by VMID, never nil.
func (l vmList) sorted() []VMEntry {
	out := l.vms
	if out == nil {
		out = []VMEntry{}
	}
	slices.SortFunc(out, func(a, b VMEntry) int { return a.VMID - b.VMID })
	return out
}

// UnmarshalJSON implements json.Unmarshaler.
func (l *vmListJSON) UnmarshalJSON(b []byte) error {
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
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	l.vms = make([]VMEntry, 0, len(raw))
	for _, r := range raw {
		f := vmFields{VMID: int64(r.VMID), Template: int64(r.Template), Uptime: int64(r.Uptime),
			MaxMem: int64(r.MaxMem), MaxDisk: int64(r.MaxDisk), MaxCPU: int64(r.MaxCPU)}
		e := VMEntry{Node: r.Node, Type: r.Type, Name: r.Name, Status: r.Status, Lock: r.Lock, Pool: r.Pool}
		l.vms = append(l.vms, f.entry(e, splitTags(r.Tags)))
	}
	return nil
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
