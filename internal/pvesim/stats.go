package pvesim

import "strconv"

// Stats are counters of what the simulator answered.
type Stats struct {
	// Requests counts answers by route ("GET /version", "unknown" for paths
	// no route serves) and HTTP status.
	Requests map[string]map[int]int
	// Faults counts injected faults by kind (FaultServerError, ...).
	Faults map[string]int
	// FaultsInjected is the total of Faults.
	FaultsInjected int
	// TasksStarted counts worker tasks started.
	TasksStarted int
}

// Kinds of injected faults, the keys of Stats.Faults.
const (
	FaultServerError = "server-error" // 500 with a transient PVE text
	FaultProxy       = "proxy"        // 596 with a non-JSON body
	FaultLockTimeout = "lock-timeout" // 500 can't lock file ... got timeout
	FaultSlow        = "slow"         // the answer is delayed, then served normally
)

type statsCounters struct {
	requests map[string]map[int]int
	faults   map[string]int
	tasks    int
}

func (sc *statsCounters) init() {
	sc.requests = map[string]map[int]int{}
	sc.faults = map[string]int{}
}

func (s *Server) countRequest(route string, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
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
	out := Stats{Requests: map[string]map[int]int{}, Faults: map[string]int{}, TasksStarted: s.stats.tasks}
	for r, m := range s.stats.requests {
		c := map[int]int{}
		for k, v := range m {
			c[k] = v
		}
		out.Requests[r] = c
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
		" tasks=" + strconv.Itoa(st.TasksStarted)
}
