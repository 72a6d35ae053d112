// Command libbench compares creating sandboxes through the Telmate client
// library (github.com/Telmate/proxmox-api-go) directly with creating them
// through internal/pve, against the in-process simulator with the realistic
// latency model.
//
// Each phase starts a fresh simulator and creates n sandboxes on a pool of
// workers, each sandbox in the provider's order: auto-VMID linked clone of
// template 9000, configure (cores, memory, tags), resize scsi0, start, wait
// for the guest agent's IPv4 address. The creation is what is compared; the
// sandboxes are then destroyed (timed apart) and the simulator is checked to
// hold none. The report gives each phase's wall time, per-sandbox create
// times and the simulator's request counts, and the ratios (a)/(b). The
// phases are:
//
//   - (a) library: one shared *proxmox.Client with an API token, as a provider
//     built on the library would use it. The auto-VMID clone is the library's
//     own (VmRef.CloneQemu without an ID), which holds the client's
//     guest-creation mutex across /cluster/nextid, the clone POST and the
//     whole clone task wait. Every task wait polls every 2 s.
//   - (b) internal/pve: its Clone (NewVMID 0), UpdateConfig, Resize, Start
//     and WaitForIP, the calls the provider makes.
//
// The library has no helper that waits for the guest agent, so libbench polls
// GetVmAgentNetworkInterfaces itself; -lib-agent-poll sets the interval (by
// default internal/pve's own backoff, so that the difference measured is the
// library's; 5s models the Telmate provider's additional_wait).
//
//	go run ./tools/libbench -n 50 -workers 10
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/agentlab/terraform-provider-agentlab/internal/pvesim"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "libbench:", err)
		os.Exit(1)
	}
}

// options are the command-line settings.
type options struct {
	n            int
	workers      int
	timeout      time.Duration
	latencyName  string
	libAgentPoll time.Duration
}

func parseOptions(args []string) (options, error) {
	fs := flag.NewFlagSet("libbench", flag.ContinueOnError)
	var o options
	fs.IntVar(&o.n, "n", 50, "sandboxes to create in each phase")
	fs.IntVar(&o.workers, "workers", 10, "sandboxes created concurrently")
	fs.DurationVar(&o.timeout, "timeout", 20*time.Minute, "bound on the whole run")
	fs.StringVar(&o.latencyName, "latency", "realistic", "simulator latency model: realistic or zero")
	fs.DurationVar(&o.libAgentPoll, "lib-agent-poll", 0,
		"interval between the library phase's guest agent polls (0: internal/pve's backoff, 250ms growing to 5s)")
	if err := fs.Parse(args); err != nil {
		return options{}, err
	}
	if o.n < 1 || o.workers < 1 {
		return options{}, fmt.Errorf("-n and -workers must be at least 1 (got %d and %d)", o.n, o.workers)
	}
	if o.libAgentPoll < 0 {
		return options{}, fmt.Errorf("-lib-agent-poll must not be negative (got %v)", o.libAgentPoll)
	}
	return o, nil
}

func run(ctx context.Context, args []string, out io.Writer) error {
	o, err := parseOptions(args)
	if err != nil {
		return err
	}
	model, err := pvesim.ParseLatency(o.latencyName)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()

	lib, err := runPhase(ctx, "library", model, o, func(sim *simulator) (sandboxer, error) {
		return newLibSandboxer(sim.endpoint, sim.token, newPollSchedule(o.libAgentPoll))
	})
	if err != nil {
		return fmt.Errorf("library phase: %w", err)
	}
	pv, err := runPhase(ctx, "internal/pve", model, o, func(sim *simulator) (sandboxer, error) {
		return newPVESandboxer(ctx, sim.endpoint, sim.token)
	})
	if err != nil {
		return fmt.Errorf("internal/pve phase: %w", err)
	}
	writeReport(out, o, model, lib, pv)
	if lib.failed() || pv.failed() {
		return fmt.Errorf("%d library and %d internal/pve sandboxes failed (see above)", len(lib.errs), len(pv.errs))
	}
	return nil
}
