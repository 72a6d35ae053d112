package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/agentlab/terraform-provider-agentlab/internal/pvesim"
	"github.com/agentlab/terraform-provider-agentlab/reaper/reapertest"
)

// Phases of a round, as the ledger records them.
const (
	phaseApplyFault   = "terraform apply, with a kill"
	phaseApply        = "terraform apply"
	phaseDestroyFault = "terraform destroy, with a kill"
	phaseDestroy      = "terraform destroy"
	phaseOperator     = "operator"
	phaseReaper       = "reaper"
)

// Kill targets.
const (
	targetSim       = "pvesim"    // the Proxmox node: kill -9, back after a short outage
	targetProvider  = "provider"  // the provider plugin: terraform sees it crash
	targetTerraform = "terraform" // terraform and its plugin: a lost CI runner
)

const (
	token       = "root@pam!chaos=chaos-secret"
	convergeMax = 4 // applies or destroys tried before a round is called unconverged
	pollEvery   = 100 * time.Millisecond
)

// errHarness marks an error of the harness itself (a process that cannot be
// started), as opposed to a fault the round provoked.
var errHarness = errors.New("harness")

// reUnlock finds the VMIDs in the operator command the provider's error names.
var reUnlock = regexp.MustCompile(`qm unlock (\d+)`)

// round is one seeded round: apply with a kill, converge, destroy with a
// kill, converge, let the reaper clean up, account for every VM.
type round struct {
	o    Options
	n    int
	rng  *rand.Rand
	dir  string
	rep  *Report
	sim  *simProcess
	led  *ledger
	api  *reapertest.PVE
	env  []string
	runs int // terraform commands run, numbering their logs

	// pollMu serialises listings with each other and with a crash of the
	// simulator, so that the ledger never takes an old listing for a new one.
	pollMu sync.Mutex
	logf   func(format string, args ...any)
}

// terraform starts a terraform command of the round.
func (r *round) terraform(args ...string) (*tfRun, error) {
	r.runs++
	log := filepath.Join(r.dir, fmt.Sprintf("terraform-%02d-%s.log", r.runs, args[0]))
	return startTerraform(r.o.Terraform, r.dir, log, r.env, args...)
}

func runRound(ctx context.Context, o Options, n int, rep *Report) error {
	dir := filepath.Join(o.WorkDir, fmt.Sprintf("round-%03d", n))
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	simLog, err := os.Create(filepath.Join(dir, "pvesim.log"))
	if err != nil {
		return err
	}
	defer simLog.Close()
	r := &round{o: o, n: n, rng: rand.New(rand.NewPCG(o.Seed, uint64(n))), dir: dir, rep: rep, led: newLedger()}
	r.logf = func(format string, args ...any) {
		fmt.Fprintf(o.Progress, "round %d: %s\n", n, fmt.Sprintf(format, args...))
	}
	r.sim = &simProcess{bin: filepath.Join(o.BinDir, "agentlab-pvesim"), stateDir: filepath.Join(dir, "pvesim"),
		token: token, scale: o.LatencyScale, seed: o.Seed ^ uint64(n), log: simLog}
	if err := r.sim.start(ctx); err != nil {
		return err
	}
	defer r.sim.kill()
	r.api = &reapertest.PVE{Endpoint: r.sim.endpoint, Token: token, HTTP: &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, // the simulator's self-signed certificate, on loopback
	}}
	if err := r.writeTerraform(2 + r.rng.IntN(o.Sandboxes-1)); err != nil {
		return err
	}

	pollCtx, stopPoll := context.WithCancel(ctx)
	polled := make(chan struct{})
	go func() {
		defer close(polled)
		t := time.NewTicker(pollEvery)
		defer t.Stop()
		for {
			r.poll(pollCtx)
			select {
			case <-pollCtx.Done():
				return
			case <-t.C:
			}
		}
	}()
	defer func() { stopPoll(); <-polled }()

	if err := r.faultyRun(ctx, phaseApplyFault, "apply"); errors.Is(err, errHarness) {
		return err
	}
	if r.converge(ctx, phaseApply, "apply") {
		if err := r.faultyRun(ctx, phaseDestroyFault, "destroy", len(r.led.alive())); errors.Is(err, errHarness) {
			return err
		}
	}
	// Even after an apply that did not converge: destroy what can be
	// destroyed, so that the reaper's part still runs.
	r.converge(ctx, phaseDestroy, "destroy")
	if out, err := r.terraformOutput(ctx, "state", "list"); err != nil {
		r.fail("terraform state list: %v", err)
	} else if s := strings.TrimSpace(out); s != "" {
		r.fail("terraform state still lists after destroy:\n%s", s)
	}
	if err := r.reaperPhase(ctx); err != nil {
		return err
	}
	r.led.setPhase("end")
	if !r.poll(ctx) {
		return errors.New("the simulator does not answer at the end of the round")
	}
	r.account(ctx)
	return nil
}

// fail records that the round did not converge.
func (r *round) fail(format string, args ...any) {
	msg := fmt.Sprintf("round %d (-seed %d -round %d): %s", r.n, r.o.Seed, r.n, fmt.Sprintf(format, args...))
	r.rep.Failures = append(r.rep.Failures, msg)
	r.logf("FAILED: %s", fmt.Sprintf(format, args...))
}

// writeTerraform writes the CLI configuration (dev_overrides to the built
// provider) and a configuration of count sandboxes.
func (r *round) writeTerraform(count int) error {
	cli := fmt.Sprintf(`provider_installation {
  dev_overrides {
    "registry.terraform.io/agentlab/agentlab" = %q
    "registry.opentofu.org/agentlab/agentlab" = %q
  }
  direct {}
}
`, r.o.BinDir, r.o.BinDir)
	if err := os.WriteFile(filepath.Join(r.dir, "cli.tfrc"), []byte(cli), 0o600); err != nil {
		return err
	}
	cfg := fmt.Sprintf(`terraform {
  required_providers {
    agentlab = { source = "agentlab/agentlab" }
  }
}

provider "agentlab" {
  endpoint  = %q
  api_token = %q
  insecure  = true
  node      = "pve"
}

resource "agentlab_sandbox" "chaos" {
  count         = %d
  name          = "chaos-${count.index}"
  template_vmid = 9000
  ttl           = "1h"
}
`, r.sim.endpoint, token, count)
	if err := os.WriteFile(filepath.Join(r.dir, "main.tf"), []byte(cfg), 0o600); err != nil {
		return err
	}
	r.env = append(os.Environ(), "TF_CLI_CONFIG_FILE="+filepath.Join(r.dir, "cli.tfrc"), "TF_IN_AUTOMATION=1",
		"CHECKPOINT_DISABLE=1")
	r.logf("%d sandboxes", count)
	return nil
}

// poll lists the VMs once and feeds the ledger; false when the simulator did
// not answer (it may be down).
func (r *round) poll(ctx context.Context) bool {
	r.pollMu.Lock()
	defer r.pollMu.Unlock()
	var vms []vmSeen
	if err := r.api.Do(ctx, http.MethodGet, "/cluster/resources", url.Values{"type": {"vm"}}, &vms); err != nil {
		return false
	}
	r.led.observe(vms)
	return true
}

func (r *round) tfArgs(verb string) []string {
	return []string{verb, "-auto-approve", "-input=false", "-no-color", "-parallelism=10"}
}

// killWindow is the span in which a kill falls: most of what one apply (or
// destroy) of a wave of sandboxes takes under the latency model, plus
// terraform's own start-up. A kill can still miss a command that ends early;
// the report counts those.
func (r *round) killWindow(verb string) time.Duration {
	l := pvesim.RealisticLatency().Scaled(r.o.LatencyScale)
	d := l.LinkedClone + l.ConfigTask + l.Upload + l.Resize + l.Start
	if verb == "destroy" {
		d = l.Stop + l.Destroy + l.VolumeDelete
	}
	return (d + 1500*time.Millisecond) * 4 / 5
}

// faultyRun runs terraform verb and kill -9s one of the processes at a
// random point of it. destroyBefore is the number of VMs before a destroy.
func (r *round) faultyRun(ctx context.Context, phase, verb string, destroyBefore ...int) error {
	r.led.setPhase(phase)
	targets := []string{targetSim, targetProvider, targetTerraform}
	target := targets[r.rng.IntN(len(targets))]
	delay := time.Duration(r.rng.Int64N(int64(r.killWindow(verb))))
	downtime := time.Duration(r.rng.Int64N(int64(time.Second)))
	run, err := r.terraform(r.tfArgs(verb)...)
	if err != nil {
		return fmt.Errorf("%w: %v", errHarness, err)
	}
	timer := time.NewTimer(delay)
	defer timer.Stop()
	select {
	case <-run.done:
		r.rep.Missed[fmt.Sprintf("%s: %s", verb, target)]++
		r.logf("%s finished before the kill of %s at %s", verb, target, delay)
		r.led.setPhase(phase + " (after)")
		r.poll(ctx)
		return run.err
	case <-timer.C:
	}
	// A fresh listing, so that the point is exact and a VM destroyed just
	// before a kill of the simulator is not taken for one it lost.
	r.poll(ctx)
	point := applyPoint(r.led.alive())
	if verb == "destroy" {
		point = destroyPoint(destroyBefore[0], len(r.led.alive()))
	}
	landed := true
	switch target {
	case targetSim:
		if err := r.crashSim(ctx, downtime); err != nil {
			run.killGroup()
			return err
		}
	case targetProvider:
		pid := r.waitProvider(run)
		if pid == 0 {
			landed = false
			break
		}
		_ = killPID(pid)
	case targetTerraform:
		if run.exited() {
			landed = false
			break
		}
		run.killGroup()
	}
	key := fmt.Sprintf("%s: %s, %s", verb, target, point)
	if landed {
		r.rep.Kills[key]++
	} else {
		r.rep.Missed[fmt.Sprintf("%s: %s", verb, target)]++
	}
	err = run.wait(3 * time.Minute)
	r.logf("%s: kill -9 %s at %s (%s): %s", verb, target, delay.Round(time.Millisecond), point, outcomeLine(err, run.out.String()))
	r.led.setPhase(phase + " (after)")
	r.poll(ctx)
	r.followError(ctx, run.out.String())
	return err
}

// followError plays the operator who reads a failed command's errors: when
// they name `qm unlock N`, the operator runs it. It reports false when the
// operator could not.
func (r *round) followError(ctx context.Context, out string) bool {
	var ids []int
	for _, m := range reUnlock.FindAllStringSubmatch(out, -1) {
		if id, err := strconv.Atoi(m[1]); err == nil && !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return true
	}
	if err := r.unlock(ctx, ids, false); err != nil {
		r.fail("operator: qm unlock %v: %v", ids, err)
		return false
	}
	return true
}

// crashSim kills the simulator with SIGKILL and starts it again on the same
// port and state directory after downtime, with no listing in between.
func (r *round) crashSim(ctx context.Context, downtime time.Duration) error {
	r.pollMu.Lock()
	defer r.pollMu.Unlock()
	r.sim.kill()
	select {
	case <-time.After(downtime): // the outage itself, not a wait for an event
	case <-ctx.Done():
	}
	if err := r.sim.start(ctx); err != nil {
		return fmt.Errorf("%w: restart the simulator: %v", errHarness, err)
	}
	r.led.simRestarted()
	return nil
}

// waitProvider returns the provider plugin's pid once terraform has started
// it, or 0 when terraform ends first.
func (r *round) waitProvider(run *tfRun) int {
	bin := filepath.Join(r.o.BinDir, "terraform-provider-agentlab")
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		if pid := run.providerPID(bin); pid != 0 {
			return pid
		}
		select {
		case <-run.done:
			return 0
		case <-t.C:
		}
	}
}

// converge runs terraform verb until it succeeds, playing the operator when
// the provider's error asks for `qm unlock N`. It reports success.
func (r *round) converge(ctx context.Context, phase, verb string) bool {
	var last string
	for attempt := 1; attempt <= convergeMax; attempt++ {
		r.led.setPhase(phase)
		run, err := r.terraform(r.tfArgs(verb)...)
		if err != nil {
			r.fail("%s: %v", verb, err)
			return false
		}
		err = run.wait(3 * time.Minute)
		r.poll(ctx)
		out := run.out.String()
		if err == nil {
			if attempt > 1 {
				r.logf("%s converged at attempt %d", verb, attempt)
			}
			return true
		}
		last = errorExcerpt(out)
		r.logf("%s attempt %d failed: %s", verb, attempt, firstLine(last))
		if !r.followError(ctx, out) {
			return false
		}
	}
	r.fail("%s did not succeed in %d attempts; last error:\n%s", verb, convergeMax, last)
	return false
}

// terraformOutput runs a terraform command to completion and returns its output.
func (r *round) terraformOutput(_ context.Context, args ...string) (string, error) {
	run, err := r.terraform(args...)
	if err != nil {
		return "", err
	}
	err = run.wait(time.Minute)
	return run.out.String(), err
}

// errorExcerpt returns the Error: blocks of terraform's output (or its tail).
func errorExcerpt(out string) string {
	if i := strings.Index(out, "Error:"); i >= 0 {
		out = out[i:]
	} else if len(out) > 600 {
		out = out[len(out)-600:]
	}
	if len(out) > 1500 {
		out = out[:1500] + "..."
	}
	return strings.TrimSpace(out)
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}

// outcomeLine says how a terraform command ended.
func outcomeLine(err error, out string) string {
	if err == nil {
		return "it succeeded"
	}
	if ex := errorExcerpt(out); strings.HasPrefix(ex, "Error:") {
		return "it failed: " + firstLine(strings.TrimPrefix(ex, "Error:"))
	}
	return "it ended: " + err.Error()
}
