// Command jobbench measures concurrent jobs end to end: `terraform apply` of
// -n agentlab_job resources with the real terraform, the locally built
// provider and agentlab-reaper, against the simulator with the realistic
// latency model, whose --guest-exec really runs each job's runner (so it
// needs root). Each job checks out a small git repository served on
// loopback, runs a task of a known length (-task) and uploads an artifact
// whose sha256 the bench checks. It reports the apply's wall time as a
// ratio to the critical path computed from the model the simulator ran, the
// time until the reaper destroyed every job's VM, the API requests per job
// and the simulator's peak queue depth.
//
//	go run ./tools/jobbench -bin bin -n 20 -parallelism 20
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/agentlab/terraform-provider-agentlab/internal/pvesim"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == pvesim.GuestInitArg {
		// This process is a guest's init, started by the simulator's
		// guest execution (the bench runs the simulator in-process).
		os.Exit(pvesim.GuestInit(os.Args[2:]))
	}
	err := run(os.Args[1:], os.Stdout)
	var skip *skipError
	switch {
	case errors.As(err, &skip):
		fmt.Println("jobbench: skipped:", skip.reason)
	case err != nil:
		fmt.Fprintln(os.Stderr, "jobbench:", err)
		os.Exit(1)
	}
}

// skipError is a machine the bench cannot run on; it says what is missing.
type skipError struct{ reason string }

func (e *skipError) Error() string { return "skipped: " + e.reason }
