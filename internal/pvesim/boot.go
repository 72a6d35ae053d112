package pvesim

import (
	"fmt"
	"hash/fnv"
	"math"
	"time"
)

// Guest boot times (Latency.GuestAgentIP, BootMin, BootMax).
//
// A cloud image's guest agent reports an address once the guest has booted
// and cloud-init has configured its network; on real hosts that takes 20 to
// 60 s, most boots near the short end. With BootMax > GuestAgentIP, each
// start draws its boot time from [BootMin, BootMax] so that GuestAgentIP is
// the median: BootMin + (BootMax-BootMin)·u^k with u uniform in [0,1) and k
// chosen so that u = 0.5 gives the median. The draw is a hash of
// Options.Seed, the VMID and the start's PID, so a seed gives the same boots
// whatever the order of calls.

// bootTime returns how long VM vmid, started as process pid, takes to boot.
func (s *Server) bootTime(vmid, pid int) time.Duration {
	l := s.opts.Latency
	med, lo, hi := l.GuestAgentIP, l.BootMin, l.BootMax
	if hi <= med || med <= 0 {
		return med
	}
	if lo <= 0 || lo > med {
		lo = med
	}
	if lo == med {
		// No lower spread: the median is also the minimum.
		return med + time.Duration(float64(hi-med)*bootDraw(s.opts.Seed, vmid, pid))
	}
	k := math.Log(float64(med-lo)/float64(hi-lo)) / math.Log(0.5)
	u := bootDraw(s.opts.Seed, vmid, pid)
	return lo + time.Duration(float64(hi-lo)*math.Pow(u, k))
}

// bootDraw is a uniform number in [0,1) fixed by seed, vmid and pid.
func bootDraw(seed int64, vmid, pid int) float64 {
	h := fnv.New64a()
	fmt.Fprintf(h, "boot:%d:%d:%d", seed, vmid, pid)
	return float64(h.Sum64()>>11) / (1 << 53)
}

// WithBoot returns l with the boot time named by v: "realistic" (20 to 60 s,
// median 25 s), "zero" (the agent answers as soon as the VM runs) or a Go
// duration (every boot takes exactly that long). It is the --boot flag.
func WithBoot(l Latency, v string) (Latency, error) {
	r := RealisticLatency()
	switch v {
	case "realistic":
		l.GuestAgentIP, l.BootMin, l.BootMax = r.GuestAgentIP, r.BootMin, r.BootMax
	case "zero":
		l.GuestAgentIP, l.BootMin, l.BootMax = 0, 0, 0
	default:
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return l, fmt.Errorf("boot time %q: want realistic, zero or a duration like 25s", v)
		}
		l.GuestAgentIP, l.BootMin, l.BootMax = d, 0, 0
	}
	return l, nil
}
