package main

import (
	"fmt"
	"slices"
	"strings"
	"sync"
)

// vmSeen is one VM as /cluster/resources shows it.
type vmSeen struct {
	VMID     int    `json:"vmid"`
	Name     string `json:"name"`
	Tags     string `json:"tags"`
	Lock     string `json:"lock"`
	Template int    `json:"template"`
}

// tagged reports whether the VM carries the agentlab ownership tag.
func (v vmSeen) tagged() bool {
	return slices.Contains(strings.FieldsFunc(v.Tags, func(r rune) bool { return r == ';' || r == ',' || r == ' ' }), "agentlab")
}

// vmLife is one VM from the poll that first showed it to the one that no
// longer did. A VMID reused after a destroy starts a new life.
type vmLife struct {
	VMID int
	Born string // phase in which it was first seen
	Gone string // phase in which it disappeared; "" while it exists
	Last vmSeen // what the last poll showed

	Operator     bool // an operator had to unlock it
	ReaperListed bool // agentlab-reaper orphans listed it
	LeaseEnded   bool // the harness shortened its lease for the reaper to reap it
}

// phaseLost is the phase a VM disappears in when it vanishes across a
// restart of the simulator: the simulator lost a change it had answered.
const phaseLost = "lost in a simulator restart"

// ledger records every VM any poll has shown, in which phase it appeared and
// in which it disappeared. It is the campaign's oracle: it reads the
// simulator's API, not the provider's or the reaper's view.
type ledger struct {
	mu        sync.Mutex
	phase     string
	restarted bool // the simulator restarted since the last poll
	live      map[int]*vmLife
	lives     []*vmLife
}

func newLedger() *ledger { return &ledger{live: map[int]*vmLife{}} }

// setPhase names what the harness does from now on.
func (l *ledger) setPhase(p string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.phase = p
}

// currentPhase returns the phase set last.
func (l *ledger) currentPhase() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.phase
}

// simRestarted notes that the simulator came back from a crash: VMs missing
// at the next poll were lost by it, not destroyed by anyone.
func (l *ledger) simRestarted() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.restarted = true
}

// observe records one complete listing of the VMs. Templates are not
// sandboxes and are ignored.
func (l *ledger) observe(vms []vmSeen) {
	l.mu.Lock()
	defer l.mu.Unlock()
	seen := map[int]bool{}
	for _, v := range vms {
		if v.Template != 0 {
			continue
		}
		seen[v.VMID] = true
		if life := l.live[v.VMID]; life != nil {
			life.Last = v
			continue
		}
		life := &vmLife{VMID: v.VMID, Born: l.phase, Last: v}
		l.live[v.VMID] = life
		l.lives = append(l.lives, life)
	}
	gone := l.phase
	if l.restarted {
		gone = phaseLost
	}
	for id, life := range l.live {
		if !seen[id] {
			life.Gone = gone
			delete(l.live, id)
		}
	}
	l.restarted = false
}

// alive returns copies of the VMs that exist now, by VMID.
func (l *ledger) alive() []vmLife {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []vmLife
	for _, life := range l.live {
		out = append(out, *life)
	}
	slices.SortFunc(out, func(a, b vmLife) int { return a.VMID - b.VMID })
	return out
}

// mark changes the live VM vmid's record.
func (l *ledger) mark(vmid int, f func(*vmLife)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if life := l.live[vmid]; life != nil {
		f(life)
	}
}

// markGone changes the record of the last life of VM vmid if it ended in
// phase (a VMID may have had several lives).
func (l *ledger) markGone(vmid int, phase string, f func(*vmLife)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := len(l.lives) - 1; i >= 0; i-- {
		if life := l.lives[i]; life.VMID == vmid {
			if life.Gone == phase {
				f(life)
			}
			return
		}
	}
}

// all returns copies of every life recorded.
func (l *ledger) all() []vmLife {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]vmLife, len(l.lives))
	for i, life := range l.lives {
		out[i] = *life
	}
	return out
}

// applyPoint names where in an apply the sandboxes were when a kill fell,
// from the last poll: no VM yet, a clone running (lock: clone), a clone done
// but not yet tagged, or every VM tagged (configuring, starting or done).
func applyPoint(vms []vmLife) string {
	if len(vms) == 0 {
		return "before any clone"
	}
	point := "all tagged"
	for _, v := range vms {
		switch {
		case v.Last.Lock == "clone":
			return "mid-clone"
		case !v.Last.tagged():
			point = "cloned, not yet tagged"
		}
	}
	return point
}

// destroyPoint names how far a destroy of `before` VMs had come.
func destroyPoint(before, now int) string {
	switch {
	case now >= before:
		return "none destroyed yet"
	case now == 0:
		return "all destroyed"
	}
	return "some destroyed"
}

// Outcomes of a VM's life.
const (
	outTerraform = "destroyed by terraform"
	outReaped    = "reaped by the reaper at lease end"
	outPruned    = "pruned by the reaper as an orphan"
	outReaper    = "removed by the reaper"
	outOperator  = "destroyed by the operator"
)

// outcome classifies a finished round's VM: what removed it, or why it is
// still there (left is true then).
func outcome(v vmLife) (what string, left bool) {
	switch {
	case v.Gone == phaseLost:
		return "vanished: the simulator lost it in a restart", true
	case strings.HasPrefix(v.Gone, "terraform"):
		return outTerraform, false
	case v.Gone == phaseOperator:
		return outOperator, false
	case v.Gone == phaseReaper && v.LeaseEnded:
		return outReaped, false
	case v.Gone == phaseReaper && v.ReaperListed:
		return outPruned, false
	case v.Gone == phaseReaper:
		return outReaper, false
	case v.Gone != "":
		return "removed during " + v.Gone, false
	}
	return "left behind: " + leftReason(v), true
}

// leftReason says what kind of VM is left.
func leftReason(v vmLife) string {
	listed := ""
	if !v.ReaperListed {
		listed = ", not listed by agentlab-reaper orphans"
	}
	switch {
	case v.Last.Lock == "clone":
		return "clone placeholder (lock: clone)" + listed
	case v.Last.Lock != "":
		return fmt.Sprintf("locked VM (lock: %s)", v.Last.Lock) + listed
	case v.Last.tagged():
		return "tagged sandbox the reaper did not remove"
	case v.Last.Name == "":
		return "untagged nameless VM (half-made clone)" + listed
	}
	return "untagged VM with the provider's name" + listed
}
