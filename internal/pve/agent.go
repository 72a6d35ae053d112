package pve

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// AgentInterface is one network interface reported by the guest agent.
type AgentInterface struct {
	Name        string         `json:"name"`
	MAC         string         `json:"hardware-address"`
	IPAddresses []AgentAddress `json:"ip-addresses"`
}

// AgentAddress is one address of an AgentInterface.
type AgentAddress struct {
	Address string `json:"ip-address"`
	Type    string `json:"ip-address-type"` // "ipv4" or "ipv6"
	Prefix  int    `json:"prefix"`
}

// AgentInterfaces asks the guest agent for the guest's network interfaces,
// retrying transient failures. "QEMU guest agent is not running" is returned
// as an *APIError; WaitForIP treats it as "not yet".
func (c *Client) AgentInterfaces(ctx context.Context, ref VMRef) ([]AgentInterface, error) {
	if err := ref.validate(); err != nil {
		return nil, err
	}
	var out struct {
		Result []AgentInterface `json:"result"`
	}
	if err := c.get(ctx, pathf("/nodes/%s/qemu/%s/agent/network-get-interfaces", ref.Node, ref.VMID), nil, &out); err != nil {
		return nil, err
	}
	return out.Result, nil
}

// Agent polling is paced to the boot time, which for cloud images with
// cloud-init is 20 to 60 s, most of a sandbox's creation. Times count from
// the guest's start when this client started it (Start records it), else
// from the call, whose first poll is then immediate (a guest that already
// runs answers at once). While no boot has been seen on a node, polls back
// off from agentPollMin (agentPollFirst after a start) by half again each
// time up to agentPollMax. Once the client has seen guests on the node boot
// (the shortest of the last few boots, from the start to the first answer
// with an address), the next poll waits until that time has passed
// (agentBootLead), and later ones follow at agentPollFraction of the time
// waited, within [agentPollMin, agentPollMax]: a handful of polls per boot,
// an IP seen at most 5 % late. A guest up at that first look shrinks the
// expected boot (durationLog.early). Before any boot was seen, a guest whose
// agent has answered (its boot is under way, the address not there yet) is
// polled that way too: its polls are cheap, and the first boots of an apply
// are then seen as promptly as the later ones.
//
// A poll to a guest whose agent does not run yet holds a pvedaemon worker for
// qemu-server's 3 s guest-ping timeout, and a node has 3 of them by default
// for every protected call (clones, starts, config changes, every client's
// agent polls). So a client sends at most agentColdProbes such polls to a
// node at once: whatever its other guests do, a worker stays free for its
// other calls. The limit holds for the polls likely to find no agent: every
// poll before any boot was seen on the node, and, after, the polls to a
// guest whose last poll found no agent. A guest's first poll at the learnt
// boot time, and polls to guests whose agent has answered, are not limited
// (most guests' agents run by then, and waiting for a slot would only make
// their boots seen late).
const (
	// agentColdProbes is the most polls in flight per node to guests whose
	// agent has not answered yet.
	agentColdProbes = 2

	agentPollMin      = 250 * time.Millisecond
	agentPollFirst    = time.Second // a guest just started, no boot seen yet
	agentPollMax      = 5 * time.Second
	agentPollFraction = 0.05
	agentBootLead     = 1.0
	// agentBootKind is the key of boot times in the client's duration log.
	agentBootKind = "guest-agent-ip"
)

// agentPollDelay returns the delay before the next guest agent poll after
// elapsed time spent waiting, prev the previous delay (0 before the first
// poll), boot the boot time learnt on the node (0 when none) and up whether
// the guest's agent has answered.
func agentPollDelay(elapsed, prev, boot time.Duration, up bool) time.Duration {
	if boot <= 0 && !up {
		if prev == 0 {
			return agentPollMin
		}
		return min(prev*3/2, agentPollMax)
	}
	if lead := time.Duration(float64(boot) * agentBootLead); elapsed < lead {
		return lead - elapsed
	}
	return min(max(time.Duration(float64(elapsed)*agentPollFraction), agentPollMin), agentPollMax)
}

// WaitForIP waits until the guest agent reports a usable IPv4 address (not
// loopback, not link-local) and returns it. When several interfaces have one,
// those whose MAC matches one of the guest's netN devices (read from its
// config then) are preferred (a container bridge such as docker0 is not the
// guest's address). "QEMU guest agent is
// not running" means "not yet"; a stopped guest or a guest without agent
// fails at once. Polls are paced to the boot times seen before on the node
// (see agentPollDelay). The context bounds the wait: give it a deadline.
func (c *Client) WaitForIP(ctx context.Context, ref VMRef) (netip.Addr, error) {
	if err := ref.validate(); err != nil {
		return netip.Addr{}, err
	}
	now := c.clock.Now()
	start, fresh := c.boots.take(ref, now)
	var macs map[string]bool // the guest's NIC MACs, read when the agent reports several candidates
	learned := c.tasks.learned
	boot := learned.expect(ref.Node, agentBootKind)
	firstBoot := boot // what the first poll was paced to
	path := pathf("/nodes/%s/qemu/%s/agent/network-get-interfaces", ref.Node, ref.VMID)
	var delay time.Duration
	if fresh {
		// just started by this client: no guest answers at once, nor
		// within agentPollFirst when no boot was seen yet
		delay = agentPollDelay(c.clock.Now().Sub(start), 0, boot, false)
		if boot <= 0 {
			delay = agentPollFirst
		}
		if err := c.sleep(ctx, delay); err != nil {
			return netip.Addr{}, fmt.Errorf("wait for ip of %s: %w", ref, err)
		}
	}
	failures := 0
	notYet := fresh  // a poll found the guest still booting, or it was just started
	up := false      // the agent has answered
	noAgent := false // the last poll found no agent
	var lastNotYet time.Duration
	for {
		var out struct {
			Result []AgentInterface `json:"result"`
		}
		release := func() {}
		if !up && (boot <= 0 || noAgent) {
			var err error
			if release, err = c.probes.acquire(ctx, ref.Node); err != nil {
				return netip.Addr{}, fmt.Errorf("wait for ip of %s: %w", ref, err)
			}
		}
		sent := c.clock.Now().Sub(start)
		err := c.send(ctx, request{method: http.MethodGet, path: path}, &out)
		release()
		noAgent = err != nil && matchesAny(err, []string{"guest agent is not running"})
		switch {
		case err == nil:
			failures = 0
			up = true
			if macs == nil && usableIPv4Interfaces(out.Result) > 1 {
				if macs, err = c.guestMACs(ctx, ref); err != nil {
					return netip.Addr{}, fmt.Errorf("wait for ip of %s: %w", ref, err)
				}
			}
			if ip := pickIPv4(out.Result, macs); ip.IsValid() {
				switch {
				case fresh && lastNotYet == 0 && firstBoot > 0:
					// up at the first poll, at the expected boot time
					learned.early(ref.Node, agentBootKind, sent)
				case notYet:
					// A boot seen, between the last poll that found the
					// guest booting and this one; a guest up at the first
					// poll was up before the wait and teaches nothing. The
					// later bound, but no more than agentPollFraction past
					// the earlier one, so that a first boot seen through
					// coarse polls does not set the lead past the next.
					seen := sent
					if lastNotYet > 0 {
						seen = min(seen, time.Duration(float64(lastNotYet)*(1+agentPollFraction)))
					}
					learned.add(ref.Node, agentBootKind, seen)
				}
				return ip, nil
			}
			notYet, lastNotYet = true, sent // the agent runs, the network is not up yet
		case ctx.Err() != nil:
			return netip.Addr{}, fmt.Errorf("wait for ip of %s: %w", ref, ctx.Err())
		case matchesAny(err, []string{"guest agent is not running"}):
			notYet, lastNotYet = true, sent // the guest is still booting
		case IsTransient(err):
			failures++
			if failures >= c.retry.MaxAttempts {
				return netip.Addr{}, fmt.Errorf("wait for ip of %s: %w", ref, err)
			}
		case matchesAny(err, []string{"no qemu guest agent configured"}):
			return netip.Addr{}, fmt.Errorf("wait for ip of %s: the guest agent is not enabled (set agent=1 in the template and install qemu-guest-agent in the image): %w", ref, err)
		default:
			return netip.Addr{}, fmt.Errorf("wait for ip of %s: %w", ref, err)
		}
		// A boot seen meanwhile on the node (another guest of the same
		// apply) paces the rest of this wait.
		boot = learned.expect(ref.Node, agentBootKind)
		delay = agentPollDelay(c.clock.Now().Sub(start), delay, boot, up)
		if err := c.sleep(ctx, delay); err != nil {
			return netip.Addr{}, fmt.Errorf("wait for ip of %s: %w", ref, err)
		}
	}
}

// guestMACs returns the lower-case MACs of the guest's netN devices.
func (c *Client) guestMACs(ctx context.Context, ref VMRef) (map[string]bool, error) {
	cfg, err := c.Config(ctx, ref)
	if err != nil {
		return nil, err
	}
	macs := map[string]bool{}
	for _, n := range cfg.NICs() {
		if n.MAC != "" {
			macs[strings.ToLower(n.MAC)] = true
		}
	}
	return macs, nil
}

// usableIPv4Interfaces counts the interfaces with a usable IPv4 address.
func usableIPv4Interfaces(ifaces []AgentInterface) int {
	n := 0
	for _, i := range ifaces {
		if pickIPv4([]AgentInterface{i}, nil).IsValid() {
			n++
		}
	}
	return n
}

// pickIPv4 returns the first usable IPv4 address, looking only at interfaces
// with a MAC in macs when any interface has one.
func pickIPv4(ifaces []AgentInterface, macs map[string]bool) netip.Addr {
	matched := false
	for _, i := range ifaces {
		if macs[strings.ToLower(i.MAC)] {
			matched = true
			break
		}
	}
	for _, i := range ifaces {
		if matched && !macs[strings.ToLower(i.MAC)] {
			continue
		}
		for _, a := range i.IPAddresses {
			ip, err := netip.ParseAddr(a.Address)
			if err != nil || !ip.Is4() || ip.IsLoopback() || ip.IsLinkLocalUnicast() || ip.IsUnspecified() {
				continue
			}
			return ip
		}
	}
	return netip.Addr{}
}

// bootLog remembers when the client started which guest, so that WaitForIP
// counts the boot from the start.
type bootLog struct {
	mu sync.Mutex
	at map[VMRef]time.Time
}

// bootLogTTL is how long a recorded start stays usable.
const bootLogTTL = 10 * time.Minute

// started records that ref was started at t.
func (b *bootLog) started(ref VMRef, t time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for r, at := range b.at {
		if t.Sub(at) > bootLogTTL {
			delete(b.at, r)
		}
	}
	b.at[ref] = t
}

// take returns and forgets when ref was started; fresh is false (and start
// is now) when the client did not start it in the last bootLogTTL.
func (b *bootLog) take(ref VMRef, now time.Time) (start time.Time, fresh bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	at, ok := b.at[ref]
	delete(b.at, ref)
	if !ok || now.Sub(at) > bootLogTTL || at.After(now) {
		return now, false
	}
	return at, true
}

// probeLimiter bounds, per node, the agent polls in flight to guests whose
// agent has not answered yet (agentColdProbes).
type probeLimiter struct {
	mu    sync.Mutex
	nodes map[string]chan struct{}
}

func newProbeLimiter() *probeLimiter {
	return &probeLimiter{nodes: map[string]chan struct{}{}}
}

// acquire waits for a probe slot on node and returns the function that
// frees it.
func (p *probeLimiter) acquire(ctx context.Context, node string) (func(), error) {
	p.mu.Lock()
	slots := p.nodes[node]
	if slots == nil {
		slots = make(chan struct{}, agentColdProbes)
		p.nodes[node] = slots
	}
	p.mu.Unlock()
	select {
	case slots <- struct{}{}:
		return func() { <-slots }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
