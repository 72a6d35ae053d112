package pvesim

import (
	"fmt"
	"net/http"
	"strings"
)

// Lost answers (Options.LostAnswers).
//
// The fault injection of faults.go fails a call before it acts. A lost
// answer is the other half of a client's nightmare: the call acted (a clone
// or a destroy task started, a config change was written) and then the
// answer never arrived. A client must find out what happened by reading the
// state (clone nonce, config digest, task list) rather than by retrying
// blindly. The draws come from their own PRNG stream seeded with
// Options.Seed, one per call the mode covers, in request order.

// Lost-answer modes.
const (
	// LostDrop closes the connection without an answer.
	LostDrop = "drop"
	// LostError answers 500 with a transient text although the call acted.
	LostError = "500"
)

// Calls a lost answer can hit, the values of LostAnswers.Calls.
const (
	LostClone  = "clone"  // POST .../clone
	LostConfig = "config" // PUT and POST .../config
	LostStart  = "start"  // POST .../status/start
	LostDelete = "delete" // DELETE /nodes/{node}/qemu/{vmid}
)

// LostAnswers configures the lost-answer fault mode.
type LostAnswers struct {
	// Rate is the probability (0..1) that a covered call's answer is lost
	// after the call acted. Zero turns the mode off.
	Rate float64
	// Mode is LostDrop (the default when empty) or LostError.
	Mode string
	// Calls are the calls covered; empty means all four.
	Calls []string
	// Limit, when positive, is how many answers are lost at most (a test
	// loses exactly the first answer with Rate 1 and Limit 1).
	Limit int
}

func (la LostAnswers) validate() error {
	if la.Rate < 0 || la.Rate > 1 {
		return fmt.Errorf("lost-answer rate %v: want a value from 0 to 1", la.Rate)
	}
	if la.Mode != "" && la.Mode != LostDrop && la.Mode != LostError {
		return fmt.Errorf("lost-answer mode %q: want %s or %s", la.Mode, LostDrop, LostError)
	}
	for _, c := range la.Calls {
		if lostCallRoute(c) == "" {
			return fmt.Errorf("lost-answer call %q: want clone, config, start or delete", c)
		}
	}
	return nil
}

// ParseLostCalls parses a comma-separated list of lost-answer calls
// ("clone,config"); "all" or empty means all four.
func ParseLostCalls(v string) ([]string, error) {
	if v == "" || v == "all" {
		return nil, nil
	}
	var out []string
	for _, c := range strings.Split(v, ",") {
		c = strings.TrimSpace(c)
		if lostCallRoute(c) == "" {
			return nil, fmt.Errorf("lost-answer call %q: want clone, config, start or delete", c)
		}
		out = append(out, c)
	}
	return out, nil
}

func lostCallRoute(name string) string {
	switch name {
	case LostClone:
		return "POST /nodes/{node}/qemu/{vmid}/clone"
	case LostConfig:
		return "* /nodes/{node}/qemu/{vmid}/config"
	case LostStart:
		return "POST /nodes/{node}/qemu/{vmid}/status/start"
	case LostDelete:
		return "DELETE /nodes/{node}/qemu/{vmid}"
	}
	return ""
}

// covers reports whether the mode applies to route r.
func (la LostAnswers) covers(r *Route) bool {
	if la.Rate <= 0 || r == nil {
		return false
	}
	calls := la.Calls
	if len(calls) == 0 {
		calls = []string{LostClone, LostConfig, LostStart, LostDelete}
	}
	for _, c := range calls {
		m, p, _ := strings.Cut(lostCallRoute(c), " ")
		if p == r.Path && (m == r.Method || (m == "*" && r.Method != http.MethodGet)) {
			return true
		}
	}
	return false
}

// loseAnswer decides, after a covered call acted, whether its answer is
// lost; it returns nil to answer normally.
func (s *Server) loseAnswer(c *call) *apiError {
	la := s.opts.LostAnswers
	if !la.covers(c.route) {
		return nil
	}
	s.mu.Lock()
	lost := s.lostRNG.Float64() < la.Rate && (la.Limit <= 0 || s.stats.faults[FaultLostAnswer] < la.Limit)
	if lost {
		s.stats.faults[FaultLostAnswer]++
	}
	s.mu.Unlock()
	if !lost {
		return nil
	}
	if la.Mode == LostError {
		return fail("%s", transientErrors[0])
	}
	return errNoAnswer
}
