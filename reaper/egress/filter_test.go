package egress

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/agentlab/terraform-provider-agentlab/internal/egressrule"
)

// fakeKernel is a kernel that loads every script it is given: List returns
// the shape of the last script applied, read from its text by a parser of
// its own (independent of Render's bookkeeping), with the counters as
// tampered by the test. applyErr simulates a failing nft.
type fakeKernel struct {
	loaded   *Loaded
	applied  []string
	applyErr error
	removed  int
	// lists and counterReads count full listings and counter-only ones.
	lists, counterReads int
}

func (k *fakeKernel) Apply(_ context.Context, script string) error {
	if k.applyErr != nil {
		return k.applyErr
	}
	k.applied = append(k.applied, script)
	l := shapeOf(script)
	k.loaded = &l
	return nil
}

func (k *fakeKernel) List(context.Context) (Loaded, error) {
	k.lists++
	if k.loaded == nil {
		return Loaded{}, errors.New("no such table")
	}
	return *k.loaded, nil
}

func (k *fakeKernel) Counters(ctx context.Context) (Loaded, error) {
	k.counterReads++
	l, err := k.List(ctx)
	k.lists--
	return Loaded{counters: l.counters}, err
}

func (k *fakeKernel) Remove(context.Context) error { k.removed++; k.loaded = nil; return nil }

// shapeOf reads the table's shape from a rendered script.
func shapeOf(script string) Loaded {
	l := Loaded{chains: map[string]int{}, dispatch: map[string]string{}, counters: map[string]Count{}, sets: map[string]int{}}
	var chain, counter string
	for _, line := range strings.Split(script, "\n") {
		line = strings.TrimSpace(line)
		f := strings.Fields(line)
		switch {
		case len(f) == 3 && f[0] == "chain":
			chain = f[1]
			l.chains[chain] = 0
		case len(f) == 3 && f[0] == "counter":
			counter = f[1]
		case counter != "" && len(f) == 4 && f[0] == "packets":
			var c Count
			fmt.Sscanf(line, "packets %d bytes %d", &c.Packets, &c.Bytes)
			l.counters[counter], counter = c, ""
		case len(f) == 3 && f[0] == "set":
			chain = ""
			l.sets[f[1]] = 0
			counter = f[1]
		case strings.HasPrefix(line, "elements = { ") && counter != "":
			l.sets[counter] = len(strings.Split(strings.Trim(line, "elements={} "), ","))
			counter = ""
		case len(f) >= 4 && f[1] == ":" && f[2] == "goto":
			l.dispatch[f[0]] = strings.TrimSuffix(f[3], ",")
		case line == "}":
			chain = ""
		case chain != "" && !strings.HasPrefix(line, "type filter hook"):
			l.chains[chain]++
		}
	}
	return l
}

type recMetrics struct {
	applies []string
	packets map[string]uint64
}

func (m *recMetrics) EgressApply(r string) { m.applies = append(m.applies, r) }
func (m *recMetrics) SetEgressDropped(p, _ map[string]uint64) {
	m.packets = p
}

func TestFilterSync(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig(t)
	k := &fakeKernel{}
	m := &recMetrics{}
	f := New(cfg, k, nil, m)
	sb := Sandbox{VMID: 101, MACs: []string{"BC:24:11:00:00:01"}, Policy: egressrule.Open}

	changes, err := f.Sync(ctx, []Sandbox{sb})
	if err != nil {
		t.Fatal(err)
	}
	if len(changes) != 1 || changes[0].Kind != Added || !strings.Contains(changes[0].Reason(), "policy open, MAC bc:24:11:00:00:01") {
		t.Fatalf("first Sync changes = %+v; want 101 added", changes)
	}
	if len(k.applied) != 1 {
		t.Fatalf("applied %d scripts; want 1", len(k.applied))
	}

	// Unchanged: nothing applied, counters published.
	k.loaded.counters["dropped_101"] = Count{Packets: 7, Bytes: 420}
	if changes, err := f.Sync(ctx, []Sandbox{sb}); err != nil || len(changes) != 0 {
		t.Fatalf("unchanged Sync = %+v, %v; want no change", changes, err)
	}
	if len(k.applied) != 1 {
		t.Errorf("an unchanged Sync applied the table again")
	}
	if m.packets["101"] != 7 {
		t.Errorf("published packets = %v; want 101: 7", m.packets)
	}

	// Changed: applied again, counters carried into the new table.
	sb.Policy, sb.Allow = egressrule.Allowlist, rules(t, "192.0.2.0/24")
	changes, err = f.Sync(ctx, []Sandbox{sb})
	if err != nil || len(changes) != 1 || changes[0].Kind != Changed {
		t.Fatalf("changed Sync = %+v, %v; want 101 changed", changes, err)
	}
	if last := k.applied[len(k.applied)-1]; !strings.Contains(last, "counter dropped_101 {\n\t\tpackets 7 bytes 420") {
		t.Errorf("the new table does not carry the counter over:\n%s", last)
	}

	// Drift: someone removed a rule; the next full check (within
	// FullCheckEvery unchanged Syncs, the others reading only counters)
	// applies the table again.
	k.loaded.chains["forward"]--
	n := len(k.applied)
	lists := k.lists
	for range FullCheckEvery {
		if _, err := f.Sync(ctx, []Sandbox{sb}); err != nil {
			t.Fatal(err)
		}
	}
	if k.lists-lists < 1 || k.lists-lists > 2 || k.counterReads == 0 {
		t.Errorf("%d unchanged Syncs listed the table %d times and read counters %d times; want one or two full checks, the rest counters",
			FullCheckEvery, k.lists-lists, k.counterReads)
	}
	if len(k.applied) != n+1 || m.applies[len(m.applies)-2] != "drift" {
		t.Errorf("drift: applied %d more, metrics %v; want one re-apply counted as drift", len(k.applied)-n, m.applies)
	}

	// A failed apply changes nothing the filter remembers: the same
	// sandboxes are reported again once it works.
	k.applyErr = errors.New("boom")
	if _, err := f.Sync(ctx, nil); err == nil {
		t.Fatal("Sync with a failing nft = nil error")
	}
	k.applyErr = nil
	changes, err = f.Sync(ctx, nil)
	if err != nil || len(changes) != 1 || changes[0].Kind != Removed {
		t.Fatalf("Sync after a failure = %+v, %v; want 101 removed", changes, err)
	}

	if err := f.Close(ctx); err != nil || k.removed != 1 {
		t.Errorf("Close = %v, removed %d times; want once", err, k.removed)
	}
}
