package pve

import (
	"context"
	"testing"
	"time"
)

// TestFindTemplateRemembers: a template's entry is looked up once a minute,
// not on every call; ForgetTemplate and time make it look again; a VM that
// is not a template and a missing VM are looked up every time.
func TestFindTemplateRemembers(t *testing.T) {
	f := newFakePVE(t)
	f.addVM(100, "a plain vm")
	c, clk := newTestClient(t, f.srv)
	lists := func() int { f.mu.Lock(); defer f.mu.Unlock(); return f.resourceLists }
	ctx := context.Background()
	steps := []struct {
		name  string
		do    func()
		vmid  int
		found bool
		lists int // total after the step
	}{
		{"first lookup", nil, 9000, true, 1},
		{"remembered", nil, 9000, true, 1},
		{"remembered until the minute is up", func() { clk.After(templateTTL - time.Second) }, 9000, true, 1},
		{"looked up again after a minute", func() { clk.After(time.Second) }, 9000, true, 2},
		{"forgotten", func() { c.ForgetTemplate(9000) }, 9000, true, 3},
		{"remembered again", nil, 9000, true, 3},
		{"not a template", nil, 100, true, 4},
		{"not a template, not remembered", nil, 100, true, 5},
		{"missing", nil, 777, false, 6},
		{"missing, not remembered", nil, 777, false, 7},
	}
	for _, st := range steps {
		if st.do != nil {
			st.do()
		}
		e, err := c.FindTemplate(ctx, st.vmid)
		switch {
		case st.found && (err != nil || e.VMID != st.vmid || e.Node != "pve"):
			t.Errorf("%s: got %+v, %v; want vm %d on pve", st.name, e, err, st.vmid)
		case !st.found && !IsNotFound(err):
			t.Errorf("%s: got %v; want not found", st.name, err)
		}
		if got := lists(); got != st.lists {
			t.Errorf("%s: got %d resource lists in all; want %d", st.name, got, st.lists)
		}
	}
}
