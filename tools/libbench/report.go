package main

import (
	"cmp"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/agentlab/terraform-provider-agentlab/internal/pvesim"
	"github.com/agentlab/terraform-provider-agentlab/tools/internal/critical"
)

// writeReport prints both phases side by side with the ratios (a)/(b).
func writeReport(out io.Writer, o options, model pvesim.Latency, a, b phase) {
	tasks := model.LinkedClone + model.Resize + model.Start
	pathOf := func(p phase) time.Duration {
		jobs := make([]time.Duration, len(p.boots))
		for i, b := range p.boots {
			jobs[i] = tasks + b
		}
		return critical.Path(jobs, o.workers)
	}
	fmt.Fprintf(out, "libbench: %d sandboxes per phase, %d workers, latency model %q\n", o.n, o.workers, o.latencyName)
	fmt.Fprintf(out, "  tasks: linked clone %v, config %v, resize %v, start %v; guest boot (agent IP) %v median\n",
		model.LinkedClone, model.ConfigTask, model.Resize, model.Start, model.GuestAgentIP)
	fmt.Fprintf(out, "  critical path: each sandbox's tasks (clone+resize+start, %v) plus its guest's boot, in order on %d workers\n",
		tasks, o.workers)
	fmt.Fprintf(out, "  library phase's guest agent polls: %v\n\n", newPollSchedule(o.libAgentPoll))

	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "\t(a) %s\t(b) %s\t(a)/(b)\t\n", a.name, b.name)
	row := func(label string, x, y float64, format string) {
		fmt.Fprintf(tw, "%s\t"+format+"\t"+format+"\t%.2f\t\n", label, x, y, ratio(x, y))
	}
	row(fmt.Sprintf("create wall time, %d sandboxes (s)", o.n), a.wall.Seconds(), b.wall.Seconds(), "%.3f")
	pa, pb := pathOf(a), pathOf(b)
	row("critical path (s)", pa.Seconds(), pb.Seconds(), "%.3f")
	row("ratio of wall time to critical path", ratio(a.wall.Seconds(), pa.Seconds()), ratio(b.wall.Seconds(), pb.Seconds()), "%.3f")
	row("mean per-sandbox create (s)", mean(a.durs).Seconds(), mean(b.durs).Seconds(), "%.3f")
	row("fastest per-sandbox create (s)", fastest(a.durs).Seconds(), fastest(b.durs).Seconds(), "%.3f")
	row("slowest per-sandbox create (s)", slowest(a.durs).Seconds(), slowest(b.durs).Seconds(), "%.3f")
	row("API requests, create", float64(requests(a.createStats)), float64(requests(b.createStats)), "%.0f")
	row("API requests, create+destroy", float64(requests(a.totalStats)), float64(requests(b.totalStats)), "%.0f")
	row("API requests per sandbox, create+destroy", float64(requests(a.totalStats))/float64(o.n), float64(requests(b.totalStats))/float64(o.n), "%.1f")
	row("peak queue depth during creation", float64(a.peakQueue), float64(b.peakQueue), "%.0f")
	row("tasks started, create+destroy", float64(a.totalStats.TasksStarted), float64(b.totalStats.TasksStarted), "%.0f")
	row("destroy wall time, not in the above (s)", a.destroyWall.Seconds(), b.destroyWall.Seconds(), "%.3f")
	row("failures", float64(len(a.errs)), float64(len(b.errs)), "%.0f")
	tw.Flush()

	fmt.Fprintf(out, "\nAPI requests during creation, by route and status:\n")
	writeRoutes(out, a, b)
	for _, p := range []phase{a, b} {
		for _, err := range p.errs {
			fmt.Fprintf(out, "%s: %v\n", p.name, err)
		}
	}
}

// writeRoutes prints the creation requests of both phases per route and status.
func writeRoutes(out io.Writer, a, b phase) {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "  route\tstatus\t(a)\t(b)\t\n")
	for _, k := range routeStatuses(a.createStats, b.createStats) {
		fmt.Fprintf(tw, "  %s\t%d\t%d\t%d\t\n", k.route, k.status,
			a.createStats.Requests[k.route][k.status], b.createStats.Requests[k.route][k.status])
	}
	tw.Flush()
}

type routeStatus struct {
	route  string
	status int
}

// routeStatuses lists every (route, status) either stats counted, sorted.
func routeStatuses(stats ...pvesim.Stats) []routeStatus {
	seen := map[routeStatus]bool{}
	for _, st := range stats {
		for r, byStatus := range st.Requests {
			for s := range byStatus {
				seen[routeStatus{r, s}] = true
			}
		}
	}
	return slices.SortedFunc(maps.Keys(seen), func(x, y routeStatus) int {
		return cmp.Or(strings.Compare(x.route, y.route), cmp.Compare(x.status, y.status))
	})
}

// requests is the number of answers the simulator gave.
func requests(st pvesim.Stats) int {
	n := 0
	for route := range st.Requests {
		n += st.RequestCount(route)
	}
	return n
}

func ratio(x, y float64) float64 {
	if y == 0 {
		return 0
	}
	return x / y
}

func mean(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	return sum / time.Duration(len(ds))
}

func fastest(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	return slices.Min(ds)
}

func slowest(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	return slices.Max(ds)
}
