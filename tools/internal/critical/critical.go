// Package critical computes the critical path the benchmarks compare their
// wall times with: the time the Proxmox work of a pool of sandboxes cannot
// be faster than, read from the simulator's latency model.
package critical

import (
	"container/heap"
	"fmt"
	"slices"
	"time"

	"github.com/agentlab/terraform-provider-agentlab/internal/pvesim"
)

// Path returns how long jobs take when run in order on parallelism slots,
// each starting as soon as a slot frees: Terraform's schedule for count
// instances that depend on nothing (and a worker pool's), with each job's
// duration the Proxmox time it cannot avoid (its tasks and its guest's boot).
func Path(jobs []time.Duration, parallelism int) time.Duration {
	if parallelism < 1 {
		parallelism = 1
	}
	free := &durationHeap{}
	var end time.Duration
	for _, d := range jobs {
		start := time.Duration(0)
		if free.Len() == parallelism {
			start = heap.Pop(free).(time.Duration)
		}
		done := start + d
		heap.Push(free, done)
		end = max(end, done)
	}
	return end
}

// Boot returns how long guest vmid takes to boot in the simulator's model
// (from its start to its guest agent's address); call it while the guest
// runs.
func Boot(srv *pvesim.Server, vmid int) time.Duration {
	vm, _ := srv.VM(vmid)
	return vm.BootTime
}

// durationHeap is a min-heap of the times slots become free.
type durationHeap []time.Duration

func (h durationHeap) Len() int           { return len(h) }
func (h durationHeap) Less(i, j int) bool { return h[i] < h[j] }
func (h durationHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *durationHeap) Push(x any)        { *h = append(*h, x.(time.Duration)) }
func (h *durationHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// Describe summarises durations, such as the guests' boot times a run
// drew: the one value they all have, or their range and median.
func Describe(ds []time.Duration) string {
	if len(ds) == 0 {
		return "none"
	}
	s := slices.Sorted(slices.Values(ds))
	if s[0] == s[len(s)-1] {
		return s[0].String()
	}
	return fmt.Sprintf("%v to %v, median %v", s[0].Round(time.Millisecond), s[len(s)-1].Round(time.Millisecond), s[len(s)/2].Round(time.Millisecond))
}
