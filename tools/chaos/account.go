package main

import (
	"context"
	"net/http"
	"net/url"

	"github.com/agentlab/terraform-provider-agentlab/internal/volume"
)

// seedISOs lists the seed ISOs on the node's ISO storage, by owner VMID.
func (r *round) seedISOs(ctx context.Context) (map[string]int, error) {
	var items []struct {
		Volid string `json:"volid"`
	}
	if err := r.api.Do(ctx, http.MethodGet, "/nodes/pve/storage/local/content", url.Values{"content": {"iso"}}, &items); err != nil {
		return nil, err
	}
	out := map[string]int{}
	for _, it := range items {
		if id, ok := volume.SeedISOOwner(it.Volid); ok {
			out[it.Volid] = id
		}
	}
	return out, nil
}

// account classifies every VM of the round and every seed ISO left.
func (r *round) account(ctx context.Context) {
	for _, v := range r.led.all() {
		r.rep.VMs++
		if v.Operator {
			r.rep.NeededOperator++
		}
		what, left := outcome(v)
		if left {
			r.rep.Left[what]++
			r.logf("VM %d: %s", v.VMID, what)
			continue
		}
		r.rep.Outcomes[what]++
	}
	isos, err := r.seedISOs(ctx)
	if err != nil {
		r.fail("list ISOs: %v", err)
		return
	}
	alive := map[int]bool{}
	for _, v := range r.led.alive() {
		alive[v.VMID] = true
	}
	for volid, id := range isos {
		reason := "seed ISO of a VM that is gone"
		if alive[id] {
			reason = "seed ISO of a VM left behind"
		}
		r.rep.ISOsLeft[reason]++
		r.logf("ISO %s: %s", volid, reason)
	}
}
