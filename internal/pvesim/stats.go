package pvesim

import "strconv"

// Stats are counters of what the simulator answered.
type Stats struct {
	// Requests counts answers by route ("GET /version", "unknown" for paths
	// no route serves) and HTTP status; status 0 counts connections closed
	// without an answer (queue limit, lost answers).
	Requests map[string]map[int]int
	// Faults counts injected faults by kind (FaultServerError, ...).
	Faults map[string]int
	// FaultsInjected is the total of Faults.
	FaultsInjected int
	// TasksStarted counts worker tasks started.
	TasksStarted int
	// Total counts every answered request (Requests summed), and ByKind the
	// same by kind of call (KindRead, KindConfigRead, KindConfigWrite,
	// KindTaskStart, KindResources).
	Total  int
	ByKind map[string]int
	// PeakQueueDepth is the largest number of calls that waited for an API
	// worker at once (both pools together; see (*Server).PeakQueueDepth), and
	// PeakQueueByPool the same per pool (PoolProxy, PoolDaemon).
	PeakQueueDepth  int
	PeakQueueByPool map[string]int
}

// Kinds of injected faults, the keys of Stats.Faults.
const (
	FaultServerError = "server-error" // 500 with a transient PVE text
	FaultProxy       = "proxy"        // 596 with a non-JSON body
	FaultLockTimeout = "lock-timeout" // 500 can't lock file ... got timeout
	FaultSlow        = "slow"         // the answer is delayed, then served normally
	// FaultLostAnswer: the call acted, then its answer was lost (Options.LostAnswers).
	FaultLostAnswer = "lost-answer"
	// FaultQueueFull and FaultQueueTimeout are the capacity model's refusals:
	// connection closed (queue limit) and 596 after the queue timeout.
	FaultQueueFull    = "queue-full"
	FaultQueueTimeout = "queue-timeout"
)

type statsCounters struct {
	requests  map[string]map[int]int
	byKind    map[string]int
	faults    map[string]int
	tasks     int
	peakQueue int
}

func (sc *statsCounters) init() {
	sc.requests = map[string]map[int]int{}
	sc.byKind = map[string]int{}
	sc.faults = map[string]int{}
}

func (s *Server) countRequest(route, kind string, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.byKind[kind]++
	m := s.stats.requests[route]
	if m == nil {
		m = map[int]int{}
		s.stats.requests[route] = m
	}
	m[status]++
}

// Stats returns a copy of the counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := Stats{Requests: map[string]map[int]int{}, Faults: map[string]int{}, TasksStarted: s.stats.tasks,
		ByKind: map[string]int{}, PeakQueueDepth: s.stats.peakQueue, PeakQueueByPool: map[string]int{}}
	for r, m := range s.stats.requests {
		c := map[int]int{}
		for k, v := range m {
			c[k] = v
			out.Total += v
		}
		out.Requests[r] = c
	}
	for k, v := range s.stats.byKind {
		out.ByKind[k] = v
	}
	for _, p := range []*pool{s.proxyPool, s.daemonPool} {
		if p != nil {
			out.PeakQueueByPool[p.name] = p.peak
		}
	}
	for k, v := range s.stats.faults {
		out.Faults[k] = v
		out.FaultsInjected += v
	}
	return out
}

// RequestCount returns how many answers route ("METHOD /path/template") got,
// over all statuses.
func (st Stats) RequestCount(route string) int {
	n := 0
	for _, v := range st.Requests[route] {
		n += v
	}
	return n
}

// String summarises the stats in one line.
func (st Stats) String() string {
	total := 0
	for _, m := range st.Requests {
		for _, v := range m {
			total += v
		}
	}
	return "requests=" + strconv.Itoa(total) + " faults=" + strconv.Itoa(st.FaultsInjected) +
		" tasks=" + strconv.Itoa(st.TasksStarted) + " peak_queue=" + strconv.Itoa(st.PeakQueueDepth)
}
