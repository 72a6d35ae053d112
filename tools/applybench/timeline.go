package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/agentlab/terraform-provider-agentlab/internal/volume"
)

// The simulator logs every request it served at debug level ("request",
// with its path, route, status and duration). applybench records those
// lines to show where the apply's wall time goes beyond the critical path:
// how late each boot was seen, how long the seed's removal took, how long
// calls waited for an API worker.

// served is one request the simulator answered.
type served struct {
	end    time.Time     // when it was answered
	dur    time.Duration // from its arrival to its answer (queueing included)
	method string
	path   string // unescaped
	route  string
	status int
}

// recorder is a slog.Handler that keeps the simulator's request lines.
type recorder struct {
	mu   sync.Mutex
	reqs []served
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }

func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	if rec.Message != "request" {
		return nil
	}
	s := served{end: rec.Time}
	rec.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "method":
			s.method = a.Value.String()
		case "path":
			s.path, _ = url.PathUnescape(a.Value.String())
		case "route":
			s.route = a.Value.String()
		case "status":
			s.status = int(a.Value.Int64())
		case "duration":
			s.dur = a.Value.Duration()
		}
		return true
	})
	r.mu.Lock()
	r.reqs = append(r.reqs, s)
	r.mu.Unlock()
	return nil
}

func (r *recorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *recorder) WithGroup(string) slog.Handler      { return r }

// requests returns the requests answered in [from, to].
func (r *recorder) requests(from, to time.Time) []served {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []served
	for _, s := range r.reqs {
		if !s.end.Before(from) && !s.end.After(to) {
			out = append(out, s)
		}
	}
	return out
}

// guest is what the simulator knew of one sandbox's guest after the apply.
type guest struct {
	vmid     int
	bootedAt time.Time // its start plus its boot time: the agent reports the address from then on
}

// timeline is where an apply's time went, from the simulator's side.
type timeline struct {
	// head is from the apply's start to the first clone request's arrival:
	// terraform's plan and the provider's start.
	head time.Duration
	// late are, per guest in VMID order, how long after its boot the answer
	// with its address was sent back: the first agent answer sent after the
	// boot (the handler runs after the call's queueing and service time,
	// just before it answers, so that answer has the address).
	late []time.Duration
	// firstWave is the number of guests created before any boot was seen
	// (the first -parallelism of them).
	firstWave int
	// retire are, per guest, from that answer to the answer of its seed
	// ISO's delete request (the eject, then the delete that starts the
	// imgdel task).
	retire []time.Duration
	// tail is from the last seed delete's answer to the apply's end (the
	// imgdel task, its detection, terraform writing the state).
	tail time.Duration
	// wait is the mean time from arrival to answer, by route.
	wait map[string]time.Duration
	// count is the number of requests by route.
	count map[string]int
}

// analyse reads the requests answered during an apply from start to end.
func analyse(reqs []served, guests []guest, firstWave int, start, end time.Time) timeline {
	tl := timeline{wait: map[string]time.Duration{}, count: map[string]int{}}
	var firstClone time.Time
	var lastDelete time.Time
	total := map[string]time.Duration{}
	for _, s := range reqs {
		key := s.route
		if s.status != 200 {
			key += " (" + strconv.Itoa(s.status) + ")"
		}
		total[key] += s.dur
		tl.count[key]++
		if strings.HasSuffix(s.route, "/clone") && s.method == "POST" {
			if arr := s.end.Add(-s.dur); firstClone.IsZero() || arr.Before(firstClone) {
				firstClone = arr
			}
		}
	}
	for r, d := range total {
		tl.wait[r] = d / time.Duration(tl.count[r])
	}
	tl.firstWave = firstWave
	if !firstClone.IsZero() {
		tl.head = firstClone.Sub(start)
	}
	for _, g := range guests {
		agent := "/qemu/" + strconv.Itoa(g.vmid) + "/agent/"
		seed := volume.SeedISOName(g.vmid)
		var seen, deleted time.Time
		for _, s := range reqs {
			switch {
			case seen.IsZero() && strings.Contains(s.path, agent) && s.status == 200 && !s.end.Before(g.bootedAt):
				seen = s.end
			case !seen.IsZero() && s.method == "DELETE" && strings.HasSuffix(s.path, seed):
				deleted = s.end
			}
		}
		if seen.IsZero() {
			continue
		}
		tl.late = append(tl.late, seen.Sub(g.bootedAt))
		if !deleted.IsZero() {
			tl.retire = append(tl.retire, deleted.Sub(seen))
			if deleted.After(lastDelete) {
				lastDelete = deleted
			}
		}
	}
	if !lastDelete.IsZero() {
		tl.tail = end.Sub(lastDelete)
	}
	return tl
}

// write reports the timeline.
func (tl timeline) write(out io.Writer) {
	fmt.Fprintf(out, "where the time went (from the simulator's request log):\n")
	fmt.Fprintf(out, "  apply start to the first clone request: %v (terraform's plan, the provider's start, the template lookup)\n", tl.head.Round(time.Millisecond))
	fmt.Fprintf(out, "  boot to the answer with its address: %s\n", spread(tl.late))
	if n := min(tl.firstWave, len(tl.late)); n > 0 && n < len(tl.late) {
		fmt.Fprintf(out, "    the first %d, booting before any boot was seen: %s\n", n, spread(tl.late[:n]))
		fmt.Fprintf(out, "    the others: %s\n", spread(tl.late[n:]))
	}
	fmt.Fprintf(out, "  that answer to the seed's delete request answered (eject, delete): %s\n", spread(tl.retire))
	fmt.Fprintf(out, "  last seed delete answered to the apply's end: %v (imgdel task, its detection, terraform's end)\n", tl.tail.Round(time.Millisecond))
	routes := make([]string, 0, len(tl.wait))
	for r := range tl.wait {
		routes = append(routes, r)
	}
	slices.SortFunc(routes, func(a, b string) int { return tl.count[b] - tl.count[a] })
	fmt.Fprintf(out, "  mean time from arrival to answer (queueing and service), apply only:\n")
	for _, r := range routes {
		fmt.Fprintf(out, "    %8v  %5d  %s\n", tl.wait[r].Round(100*time.Microsecond), tl.count[r], r)
	}
}

// spread is "mean M, median D, max X" of ds.
func spread(ds []time.Duration) string {
	if len(ds) == 0 {
		return "none"
	}
	s := slices.Sorted(slices.Values(ds))
	var sum time.Duration
	for _, d := range s {
		sum += d
	}
	r := func(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
	return fmt.Sprintf("mean %v, median %v, max %v (%d sandboxes)", r(sum/time.Duration(len(s))), r(s[len(s)/2]), r(s[len(s)-1]), len(s))
}
