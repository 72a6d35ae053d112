// Command applybench measures `terraform apply` of a pool of sandboxes against the simulator
// with the realistic latency model, and reports the wall time as a ratio to the critical path:
// each sandbox's Proxmox task time plus its guest's boot, read from the latency model the
// simulator runs, scheduled in order on -parallelism slots as Terraform runs them. It also applies a single sandbox in the same run, as a measured
// baseline for one wave.
//
//	go run ./tools/applybench -provider-dir bin -n 50 -parallelism 10
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/agentlab/terraform-provider-agentlab/internal/pvesim"
	"github.com/agentlab/terraform-provider-agentlab/internal/tfcli"
	"github.com/agentlab/terraform-provider-agentlab/tools/internal/critical"
	"github.com/agentlab/terraform-provider-agentlab/tools/internal/routes"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "applybench:", err)
		os.Exit(1)
	}
}

type options struct {
	providerDir string
	terraform   string
	cli         tfcli.Info // what o.terraform is, for the report
	n           int
	parallelism int
}

func run(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("applybench", flag.ContinueOnError)
	var o options
	fs.StringVar(&o.providerDir, "provider-dir", "bin", "directory holding the built terraform-provider-agentlab")
	fs.StringVar(&o.terraform, "terraform", "", "terraform or tofu binary (default: the one on PATH)")
	fs.IntVar(&o.n, "n", 50, "sandboxes to apply")
	fs.IntVar(&o.parallelism, "parallelism", 10, "terraform -parallelism")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var err error
	if o.terraform, err = tfcli.Find(o.terraform); err != nil {
		return fmt.Errorf("%w (or pass -terraform)", err)
	}
	cli, err := tfcli.Detect(context.Background(), o.terraform)
	if err != nil {
		return fmt.Errorf("-terraform: %w", err)
	}
	o.cli = cli
	dir, err := filepath.Abs(o.providerDir)
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(dir, "terraform-provider-agentlab")); err != nil {
		return fmt.Errorf("no provider binary in %s: run make build first", dir)
	}
	o.providerDir = dir

	model := pvesim.RealisticLatency()
	tasks := sandboxTasks(model)

	one, err := applyOnce(o, 1, model)
	if err != nil {
		return fmt.Errorf("baseline apply of 1 sandbox: %w", err)
	}
	pool, err := applyOnce(o, o.n, model)
	if err != nil {
		return fmt.Errorf("apply of %d sandboxes: %w", o.n, err)
	}
	fmt.Fprintf(out, "cli: %s %s (%s)\n", o.cli.Kind, o.cli.Version, o.terraform)
	jobs := make([]time.Duration, len(pool.boots))
	for i, b := range pool.boots {
		jobs[i] = tasks + b
	}
	path := critical.Path(jobs, o.parallelism)
	fmt.Fprintf(out, "latency model: realistic with the capacity model (linked clone %v, upload %v, start %v, seed delete %v, guest boot %v)\n",
		model.LinkedClone, model.Upload, model.Start, model.VolumeDelete, critical.Describe(pool.boots))
	fmt.Fprintf(out, "critical path: %v (each sandbox's tasks, %v, plus its guest's boot, in order on %d slots)\n",
		path.Round(time.Millisecond), tasks, o.parallelism)
	fmt.Fprintf(out, "apply 1 sandbox (measured baseline): %v\n", one.wall.Round(time.Millisecond))
	fmt.Fprintf(out, "apply %d sandboxes, -parallelism=%d: %v\n", o.n, o.parallelism, pool.wall.Round(time.Millisecond))
	fmt.Fprintf(out, "ratio to critical path: %.3f (goal <= 1.05)\n", pool.wall.Seconds()/path.Seconds())
	fmt.Fprintf(out, "simulator: %d API requests, %d tasks for %d sandboxes (apply and destroy)\n", total(pool.stats), pool.stats.TasksStarted, o.n)
	fmt.Fprintf(out, "requests per sandbox (create with wait_for_ip, then destroy): %.1f (budget %d)\n",
		float64(total(pool.stats))/float64(o.n), requestBudget)
	fmt.Fprintf(out, "simulator's peak queue depth (calls waiting for an API worker): %d\n", pool.peakQueue)
	routes.Write(out, pool.stats, o.n)
	pool.timeline.write(out)
	return nil
}

// sandboxTasks is one sandbox's Proxmox task time under model, the tasks its
// creation waits for in order: the linked clone, the seed ISO's upload, the
// start and, once the guest has booted, the seed ISO's deletion (the
// benchmark's sandboxes keep the template's disk size, so no resize). The
// guest's boot comes on top.
func sandboxTasks(model pvesim.Latency) time.Duration {
	return model.LinkedClone + model.Upload + model.Start + model.VolumeDelete
}

// requestBudget is the most API requests one sandbox may cost, created with
// wait_for_ip and destroyed.
const requestBudget = 40

func total(st pvesim.Stats) int {
	n := 0
	for _, byStatus := range st.Requests {
		for _, c := range byStatus {
			n += c
		}
	}
	return n
}

// applyResult is what one apply measured.
type applyResult struct {
	wall  time.Duration // the apply
	stats pvesim.Stats  // apply and destroy
	// boots are the sandboxes' boot times in VMID order, as the simulator
	// drew them.
	boots []time.Duration
	// peakQueue is the most API calls that waited for a worker at once.
	peakQueue int
	// timeline is where the apply's time went.
	timeline timeline
}

// applyOnce starts a fresh simulator, applies n sandboxes and measures the apply's wall time,
// then destroys them (not timed).
func applyOnce(o options, n int, model pvesim.Latency) (applyResult, error) {
	const token = "root@pam!bench=applybench-secret"
	rec := &recorder{}
	srv, err := pvesim.New(pvesim.Options{
		Tokens:  []string{token},
		Latency: model,
		Logger:  slog.New(rec),
	})
	if err != nil {
		return applyResult{}, err
	}
	defer srv.Close()
	addr, _, _, err := srv.ServeLoopback()
	if err != nil {
		return applyResult{}, err
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}()

	work, err := os.MkdirTemp("", "applybench-")
	if err != nil {
		return applyResult{}, err
	}
	defer os.RemoveAll(work)
	// Both CLIs' addresses, so the override holds whichever of them runs.
	var overrides strings.Builder
	for _, k := range tfcli.Kinds() {
		fmt.Fprintf(&overrides, "    %q = %q\n", k.ProviderAddress(), o.providerDir)
	}
	cli := fmt.Sprintf(`provider_installation {
  dev_overrides {
%s  }
  direct {}
}
`, overrides.String())
	if err := os.WriteFile(filepath.Join(work, "cli.tfrc"), []byte(cli), 0o600); err != nil {
		return applyResult{}, err
	}
	cfg := fmt.Sprintf(`terraform {
  required_providers {
    agentlab = { source = %q }
  }
}

provider "agentlab" {
  endpoint  = "https://%s"
  api_token = %q
  insecure  = true
  node      = "pve"
}

resource "agentlab_sandbox" "bench" {
  count         = %d
  name          = "bench-${count.index}"
  template_vmid = 9000
  ttl           = "1h"
  wait_for_ip   = true
}
`, tfcli.Source, addr, token, n)
	if err := os.WriteFile(filepath.Join(work, "main.tf"), []byte(cfg), 0o600); err != nil {
		return applyResult{}, err
	}
	env := append(os.Environ(), "TF_CLI_CONFIG_FILE="+filepath.Join(work, "cli.tfrc"), "TF_IN_AUTOMATION=1")
	tf := func(args ...string) error {
		cmd := exec.Command(o.terraform, args...)
		cmd.Dir = work
		cmd.Env = env
		outb, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s %s: %w\n%s", filepath.Base(o.terraform), strings.Join(args, " "), err, outb)
		}
		return nil
	}
	start := time.Now()
	if err := tf("apply", "-auto-approve", "-input=false", fmt.Sprintf("-parallelism=%d", o.parallelism)); err != nil {
		return applyResult{}, err
	}
	end := time.Now()
	res := applyResult{wall: end.Sub(start)}
	var guests []guest
	for _, id := range srv.VMIDs() {
		if vm, ok := srv.VM(id); ok && vm.Running {
			res.boots = append(res.boots, critical.Boot(srv, id))
			guests = append(guests, guest{vmid: id, bootedAt: vm.StartedAt.Add(vm.BootTime)})
		}
	}
	res.timeline = analyse(rec.requests(start, end), guests, o.parallelism, start, end)
	if err := tf("destroy", "-auto-approve", "-input=false", fmt.Sprintf("-parallelism=%d", o.parallelism)); err != nil {
		return applyResult{}, err
	}
	res.stats = srv.Stats()
	res.peakQueue = srv.PeakQueueDepth()
	return res, nil
}
