package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"
)

// Options configure a campaign.
type Options struct {
	// BinDir holds terraform-provider-agentlab, agentlab-pvesim and agentlab-reaper.
	BinDir string
	// Terraform is the terraform (or tofu) binary.
	Terraform string
	// WorkDir holds one directory per round (state, logs, terraform files).
	WorkDir string
	// Seed makes the campaign reproducible: round r draws from (Seed, r).
	Seed uint64
	// FirstRound is the number of the first round (to replay one round).
	FirstRound int
	// Sandboxes is the largest number of sandboxes a round applies (at least 2).
	Sandboxes int
	// LatencyScale multiplies the simulator's realistic latency model.
	LatencyScale float64
	// Progress receives one line per step; nil discards them.
	Progress io.Writer
}

// Report counts what a campaign did and found.
type Report struct {
	Rounds int
	// Kills counts kills that landed, by "phase: target, point".
	Kills map[string]int
	// Missed counts kills that fell after the command had finished.
	Missed map[string]int
	// VMs is the number of VMs created (every life the polls saw).
	VMs int
	// Outcomes counts VMs by what removed them.
	Outcomes map[string]int
	// NeededOperator counts VMs an operator had to unlock (qm unlock).
	NeededOperator int
	// Left counts VMs left at the end of a round, by reason.
	Left map[string]int
	// ISOsLeft counts seed ISOs left on storage at the end of a round, by reason.
	ISOsLeft map[string]int
	// Gaps counts missing features the campaign had to work around, by description.
	Gaps map[string]int
	// Failures lists rounds that did not converge, with their seed.
	Failures []string
}

func newReport() *Report {
	return &Report{Kills: map[string]int{}, Missed: map[string]int{}, Outcomes: map[string]int{},
		Left: map[string]int{}, ISOsLeft: map[string]int{}, Gaps: map[string]int{}}
}

// Clean reports whether nothing was left, lost or unconverged.
func (r *Report) Clean() bool {
	return len(r.Left) == 0 && len(r.ISOsLeft) == 0 && len(r.Failures) == 0
}

// Run runs rounds rounds and returns their counts. An error means the harness
// itself could not run (a binary missing, no port); what the rounds find is
// in the report.
func Run(ctx context.Context, o Options, rounds int) (*Report, error) {
	if o.Sandboxes < 2 {
		o.Sandboxes = 2
	}
	if o.LatencyScale <= 0 {
		o.LatencyScale = 1
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	rep := newReport()
	for i := 0; i < rounds; i++ {
		n := o.FirstRound + i
		start := time.Now()
		if err := runRound(ctx, o, n, rep); err != nil {
			return rep, fmt.Errorf("round %d: %w", n, err)
		}
		rep.Rounds++
		fmt.Fprintf(o.Progress, "round %d done in %s\n", n, time.Since(start).Round(100*time.Millisecond))
	}
	return rep, nil
}

// Print writes the report as the counts make chaos shows.
func (r *Report) Print(w io.Writer) {
	fmt.Fprintf(w, "rounds: %d\n", r.Rounds)
	total := func(m map[string]int) int {
		n := 0
		for _, v := range m {
			n += v
		}
		return n
	}
	section := func(title string, m map[string]int) {
		fmt.Fprintf(w, "%s: %d\n", title, total(m))
		for _, k := range slices.Sorted(maps.Keys(m)) {
			fmt.Fprintf(w, "  %5d  %s\n", m[k], k)
		}
	}
	section("kills that landed, by phase, target and point", r.Kills)
	section("kills that missed (the command had finished)", r.Missed)
	fmt.Fprintf(w, "VMs created: %d\n", r.VMs)
	section("VMs removed, by what removed them", r.Outcomes)
	fmt.Fprintf(w, "VMs that needed an operator's qm unlock: %d\n", r.NeededOperator)
	section("VMs left behind or lost, by reason", r.Left)
	section("seed ISOs left on storage", r.ISOsLeft)
	section("missing features worked around", r.Gaps)
	fmt.Fprintf(w, "rounds that did not converge: %d\n", len(r.Failures))
	for _, f := range r.Failures {
		fmt.Fprintf(w, "  %s\n", strings.ReplaceAll(f, "\n", "\n    "))
	}
}
