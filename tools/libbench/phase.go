package main

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/agentlab/terraform-provider-agentlab/internal/pvesim"
	"github.com/agentlab/terraform-provider-agentlab/tools/internal/critical"
)

// phase is what one phase measured.
type phase struct {
	name        string
	wall        time.Duration   // creating all sandboxes
	durs        []time.Duration // each successful sandbox's create time
	boots       []time.Duration // each created guest's boot time, in creation order
	createStats pvesim.Stats    // simulator counters after creation
	peakQueue   int             // most calls waiting for an API worker at once, during creation
	totalStats  pvesim.Stats    // simulator counters after destruction too
	destroyWall time.Duration
	errs        []error // failed creates and destroys, and leftover VMs
}

func (p phase) failed() bool { return len(p.errs) > 0 }

// runPhase starts a fresh simulator, creates o.n sandboxes through the
// sandboxer newSandboxer returns, then destroys every VM made and checks that
// none is left.
func runPhase(ctx context.Context, name string, model pvesim.Latency, o options, newSandboxer func(*simulator) (sandboxer, error)) (phase, error) {
	sim, err := startSimulator(model)
	if err != nil {
		return phase{}, err
	}
	defer sim.stop() //nolint:errcheck // nothing to do about a failed stop at the end
	s, err := newSandboxer(sim)
	if err != nil {
		return phase{}, err
	}

	p := phase{name: name}
	created, wall := runPool(ctx, o.n, o.workers, s.create)
	p.wall = wall
	p.createStats = sim.srv.Stats()
	p.peakQueue = sim.srv.PeakQueueDepth()
	var made []sandbox
	for i, oc := range created {
		if oc.err != nil {
			p.errs = append(p.errs, fmt.Errorf("create %s: %w", sandboxName(i), oc.err))
		} else {
			p.durs = append(p.durs, oc.dur)
		}
		if oc.sb.vmid != 0 {
			made = append(made, oc.sb)
			if vm, ok := sim.srv.VM(oc.sb.vmid); ok && vm.Running {
				p.boots = append(p.boots, critical.Boot(sim.srv, oc.sb.vmid))
			}
		}
	}

	destroyed, dwall := runPool(ctx, len(made), o.workers, func(ctx context.Context, i int) (sandbox, error) {
		return made[i], s.destroy(ctx, made[i])
	})
	p.destroyWall = dwall
	p.totalStats = sim.srv.Stats()
	for _, oc := range destroyed {
		if oc.err != nil {
			p.errs = append(p.errs, fmt.Errorf("destroy vm %d: %w", oc.sb.vmid, oc.err))
		}
	}
	if left := slices.DeleteFunc(sim.srv.VMIDs(), func(id int) bool { return id == templateVMID }); len(left) > 0 {
		p.errs = append(p.errs, fmt.Errorf("vms left after destroy: %v", left))
	}
	return p, nil
}
