package pvesim

import (
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Fault injection (Options.FaultRate, Options.Seed).
//
// Every authenticated request to a served route, except POST /access/ticket,
// draws from a PRNG seeded with Options.Seed; with probability FaultRate it
// gets one fault, chosen by a second draw:
//
//   - FaultServerError: 500 with a transient PVE text (no quorum, cfs lock timeout);
//   - FaultProxy: 596 "Broken pipe" or "Connection timed out", non-JSON body;
//   - FaultLockTimeout: 500 "can't lock file '/var/lock/qemu-server/lock-N.conf' -
//     got timeout", only on calls that change a VM (non-GET with {vmid});
//     other calls get FaultServerError instead;
//   - FaultSlow: the answer is delayed by Options.FaultDelay, then served normally.
//
// Faults are injected after authentication and before parameter validation
// and the handler, so a failed call changed nothing. The draws happen in
// request order, so a given seed and sequence of calls gives the same faults.

var transientErrors = []string{
	"cluster not ready - no quorum?",
	"error during cfs-locked 'file-replication_cfg' operation: got lock request timeout",
}

func (s *Server) injectFault(c *call) *apiError {
	if s.opts.FaultRate <= 0 || c.route.NoAuth {
		return nil
	}
	s.mu.Lock()
	if s.faultRNG.Float64() >= s.opts.FaultRate {
		s.mu.Unlock()
		return nil
	}
	kind := s.faultRNG.IntN(4)
	pick := s.faultRNG.IntN(2)
	vmMutating := c.r.Method != http.MethodGet && strings.Contains(c.route.Path, "{vmid}")
	var name string
	switch kind {
	case 0:
		name = FaultServerError
	case 1:
		name = FaultProxy
	case 2:
		name = FaultLockTimeout
		if !vmMutating {
			name = FaultServerError
		}
	default:
		name = FaultSlow
	}
	s.stats.faults[name]++
	s.mu.Unlock()

	switch name {
	case FaultServerError:
		return fail("%s", transientErrors[pick])
	case FaultProxy:
		msg := []string{"Broken pipe", "Connection timed out"}[pick]
		return &apiError{status: 596, message: msg, nonJSON: true}
	case FaultLockTimeout:
		return fail("%s", lockTimeoutMsg(c.vars["vmid"]))
	default:
		d := s.opts.FaultDelay
		if d <= 0 {
			d = 2 * time.Second
		}
		s.sleep(c.r.Context(), d)
		return nil
	}
}

func lockTimeoutMsg(vmid any) string {
	return fmt.Sprintf("can't lock file '/var/lock/qemu-server/lock-%v.conf' - got timeout", vmid)
}
