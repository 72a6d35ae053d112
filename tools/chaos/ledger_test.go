package main

import (
	"testing"
)

func TestLedgerLives(t *testing.T) {
	l := newLedger()
	tmpl := vmSeen{VMID: 9000, Template: 1}
	l.setPhase(phaseApply)
	l.observe([]vmSeen{tmpl, {VMID: 100, Lock: "clone"}})
	l.observe([]vmSeen{tmpl, {VMID: 100, Name: "a", Tags: "agentlab"}, {VMID: 101}})
	l.setPhase(phaseDestroy)
	l.observe([]vmSeen{tmpl, {VMID: 101}})
	l.setPhase(phaseApply)
	l.observe([]vmSeen{tmpl, {VMID: 100}, {VMID: 101}}) // VMID 100 reused: a new VM
	l.simRestarted()
	l.observe([]vmSeen{tmpl, {VMID: 100}})

	type want struct {
		vmid       int
		born, gone string
	}
	wants := []want{
		{100, phaseApply, phaseDestroy},
		{101, phaseApply, phaseLost},
		{100, phaseApply, ""},
	}
	all := l.all()
	if len(all) != len(wants) {
		t.Fatalf("got %d lives; want %d: %+v", len(all), len(wants), all)
	}
	for i, w := range wants {
		if got := all[i]; got.VMID != w.vmid || got.Born != w.born || got.Gone != w.gone {
			t.Errorf("life %d = VM %d born %q gone %q; want VM %d born %q gone %q", i, got.VMID, got.Born, got.Gone, w.vmid, w.born, w.gone)
		}
	}
	if got := all[0].Last; got.Name != "a" || !got.tagged() {
		t.Errorf("first life's last sight = %+v; want name a, tagged", got)
	}
	if alive := l.alive(); len(alive) != 1 || alive[0].VMID != 100 {
		t.Errorf("alive = %+v; want only VM 100", alive)
	}

	// markGone changes only the last life of a VMID, and only if it ended in the phase.
	l.markGone(101, phaseLost, func(v *vmLife) { v.ReaperListed = true })
	l.markGone(100, phaseDestroy, func(v *vmLife) { v.ReaperListed = true })
	all = l.all()
	if !all[1].ReaperListed || all[0].ReaperListed || all[2].ReaperListed {
		t.Errorf("markGone changed the wrong lives: %+v", all)
	}
}

func TestOutcome(t *testing.T) {
	for _, tc := range []struct {
		name string
		life vmLife
		want string
		left bool
	}{
		{"destroyed by apply", vmLife{Gone: phaseApply}, outTerraform, false},
		{"destroyed by a killed destroy", vmLife{Gone: phaseDestroyFault + " (after)"}, outTerraform, false},
		{"operator", vmLife{Gone: phaseOperator, Operator: true}, outOperator, false},
		{"lease ended", vmLife{Gone: phaseReaper, LeaseEnded: true}, outReaped, false},
		{"pruned", vmLife{Gone: phaseReaper, ReaperListed: true}, outPruned, false},
		{"reaper", vmLife{Gone: phaseReaper}, outReaper, false},
		{"lost", vmLife{Gone: phaseLost}, "vanished: the simulator lost it in a restart", true},
		{"placeholder", vmLife{Last: vmSeen{Lock: "clone"}}, "left behind: clone placeholder (lock: clone), not listed by agentlab-reaper orphans", true},
		{"listed placeholder", vmLife{Last: vmSeen{Lock: "clone"}, ReaperListed: true}, "left behind: clone placeholder (lock: clone)", true},
		{"tagged", vmLife{Last: vmSeen{Tags: "agentlab;agentlab-exp-1"}}, "left behind: tagged sandbox the reaper did not remove", true},
		{"half-made", vmLife{Last: vmSeen{}}, "left behind: untagged nameless VM (half-made clone), not listed by agentlab-reaper orphans", true},
		{"untagged", vmLife{Last: vmSeen{Name: "x"}, ReaperListed: true}, "left behind: untagged VM with the provider's name", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, left := outcome(tc.life)
			if got != tc.want || left != tc.left {
				t.Errorf("outcome = %q, left %v; want %q, left %v", got, left, tc.want, tc.left)
			}
		})
	}
}

func TestKillPoints(t *testing.T) {
	for _, tc := range []struct {
		name string
		vms  []vmLife
		want string
	}{
		{"none", nil, "before any clone"},
		{"cloning", []vmLife{{Last: vmSeen{Tags: "agentlab"}}, {Last: vmSeen{Lock: "clone"}}}, "mid-clone"},
		{"untagged", []vmLife{{Last: vmSeen{Tags: "agentlab"}}, {Last: vmSeen{Name: "a"}}}, "cloned, not yet tagged"},
		{"tagged", []vmLife{{Last: vmSeen{Tags: "agentlab-exp-5;agentlab"}}}, "all tagged"},
	} {
		if got := applyPoint(tc.vms); got != tc.want {
			t.Errorf("%s: applyPoint = %q; want %q", tc.name, got, tc.want)
		}
	}
	for _, tc := range []struct {
		before, now int
		want        string
	}{{3, 3, "none destroyed yet"}, {3, 1, "some destroyed"}, {3, 0, "all destroyed"}} {
		if got := destroyPoint(tc.before, tc.now); got != tc.want {
			t.Errorf("destroyPoint(%d, %d) = %q; want %q", tc.before, tc.now, got, tc.want)
		}
	}
}
