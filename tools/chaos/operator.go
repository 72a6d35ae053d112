package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/agentlab/terraform-provider-agentlab/internal/pvesim"
)

// unlock plays the operator who runs `qm unlock N` (and `qm destroy N` when
// destroy is set) on the node: no API call can clear a clone lock, so the
// harness stops the simulator, clears the locks through its Go API on the
// state directory, and starts it again.
func (r *round) unlock(ctx context.Context, ids []int, destroy bool) error {
	prev := r.led.currentPhase()
	r.led.setPhase(phaseOperator)
	defer r.led.setPhase(prev)
	for _, id := range ids {
		r.led.mark(id, func(v *vmLife) { v.Operator = true })
	}
	r.sim.stop()
	srv, err := pvesim.New(pvesim.Options{StateDir: r.sim.stateDir, Tokens: []string{token},
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return err
	}
	for _, id := range ids {
		if err := srv.SetLock(id, ""); err != nil {
			r.logf("operator: qm unlock %d: %v", id, err)
		}
	}
	if err := srv.Close(); err != nil {
		return err
	}
	if err := r.sim.start(ctx); err != nil {
		return err
	}
	r.logf("operator: qm unlock %v", ids)
	if !destroy {
		return nil
	}
	for _, id := range ids {
		if err := r.destroyVM(ctx, id); err != nil {
			return fmt.Errorf("qm destroy %d: %w", id, err)
		}
	}
	r.poll(ctx)
	r.logf("operator: qm destroy %v", ids)
	return nil
}

// destroyVM deletes VM vmid through the API and waits for the task.
func (r *round) destroyVM(ctx context.Context, vmid int) error {
	var upid string
	path := fmt.Sprintf("/nodes/pve/qemu/%d", vmid)
	if err := r.api.Do(ctx, http.MethodDelete, path+"?purge=1&destroy-unreferenced-disks=1", nil, &upid); err != nil {
		return err
	}
	return r.waitTask(ctx, upid)
}

// waitTask polls a task until it stops.
func (r *round) waitTask(ctx context.Context, upid string) error {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		var st struct {
			Status     string `json:"status"`
			ExitStatus string `json:"exitstatus"`
		}
		if err := r.api.Do(ctx, http.MethodGet, "/nodes/pve/tasks/"+url.PathEscape(upid)+"/status", nil, &st); err != nil {
			return err
		}
		if st.Status == "stopped" {
			if st.ExitStatus != "OK" {
				return fmt.Errorf("task %s: %s", upid, st.ExitStatus)
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}
