// Command chaos is AgentLab's crash campaign: seeded rounds that kill -9 the
// Proxmox VE simulator, the provider plugin or terraform at a random point of
// an apply and of a destroy of several sandboxes, restart, converge, destroy,
// let agentlab-reaper prune, and account for every VM the simulator ever
// showed: destroyed by terraform, reaped or pruned by the reaper, destroyed by
// an operator after `qm unlock`, or left behind (with the reason). It runs
// the real binaries: agentlab-pvesim with --state-dir and the realistic
// latency model, terraform with the built provider through dev_overrides,
// and agentlab-reaper.
//
//	make chaos                       # 100 rounds
//	go run ./tools/chaos -bin bin -rounds 5 -seed 7
//
// It exits 1 when a round left something behind or did not converge.
// Linux only (it finds the provider plugin's process in /proc).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/agentlab/terraform-provider-agentlab/internal/tfcli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	code, err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
	}
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) (int, error) {
	fs := flag.NewFlagSet("chaos", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o Options
	var rounds int
	var keep, quiet bool
	fs.StringVar(&o.BinDir, "bin", "bin", "directory holding the built terraform-provider-agentlab, agentlab-pvesim and agentlab-reaper")
	fs.StringVar(&o.Terraform, "terraform", "", "terraform or tofu binary (default: the one on PATH)")
	fs.IntVar(&rounds, "rounds", 100, "rounds to run")
	fs.Uint64Var(&o.Seed, "seed", 1, "campaign seed; round R draws from (seed, R)")
	fs.IntVar(&o.FirstRound, "round", 1, "number of the first round (replay one round with -rounds 1)")
	fs.IntVar(&o.Sandboxes, "sandboxes", 5, "largest number of sandboxes a round applies")
	fs.Float64Var(&o.LatencyScale, "latency-scale", 1, "multiply the simulator's realistic latency model")
	fs.StringVar(&o.WorkDir, "work", "", "directory for the rounds' files (default: a temporary one, removed unless -keep)")
	fs.BoolVar(&keep, "keep", false, "keep the rounds' files (logs, state) for inspection")
	fs.BoolVar(&quiet, "q", false, "print only the final counts")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, nil
		}
		return 2, err
	}
	if fs.NArg() > 0 {
		return 2, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if rounds < 1 {
		return 2, fmt.Errorf("-rounds %d: want at least 1", rounds)
	}
	var err error
	if o.Terraform, err = tfcli.Find(o.Terraform); err != nil {
		return 2, fmt.Errorf("%w (or pass -terraform)", err)
	}
	dir, err := filepath.Abs(o.BinDir)
	if err != nil {
		return 2, err
	}
	o.BinDir = dir
	for _, b := range []string{"terraform-provider-agentlab", "agentlab-pvesim", "agentlab-reaper"} {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			return 2, fmt.Errorf("no %s in %s: run make build first", b, dir)
		}
	}
	if o.WorkDir == "" {
		if o.WorkDir, err = os.MkdirTemp("", "agentlab-chaos-"); err != nil {
			return 1, err
		}
		if !keep {
			defer os.RemoveAll(o.WorkDir)
		}
	}
	if !quiet {
		o.Progress = stderr
	}
	fmt.Fprintf(stderr, "chaos: %d rounds, seed %d, files in %s\n", rounds, o.Seed, o.WorkDir)
	rep, err := Run(ctx, o, rounds)
	rep.Print(stdout)
	if err != nil {
		return 1, err
	}
	if !rep.Clean() {
		return 1, errors.New("a round left something behind or did not converge (see above)")
	}
	return 0, nil
}
