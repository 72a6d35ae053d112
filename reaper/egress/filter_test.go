package egress

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/agentlab/terraform-provider-agentlab/internal/egressrule"
)

// fakeKernel is a kernel that loads every script it is given: List returns
// the shape of the last table applied, read from its text by a parser of
// its own (independent of Render's bookkeeping), changed by the patches
// applied since, with the counters as tampered by the test. applyErr
// simulates a failing nft.
type fakeKernel struct {
	loaded   *Loaded
	applied  []string
	applyErr error
	removed  int
	// lists and counterReads count full listings and counter-only ones,
	// objects the listings of one chain or map, patches the patches.
	lists, counterReads, objects, patches int
}

func (k *fakeKernel) Apply(_ context.Context, script string) error {
	if k.applyErr != nil {
		return k.applyErr
	}
	if !strings.Contains(script, "\ntable inet "+Table+" {\n") {
		if err := k.patch(script); err != nil {
			return err
		}
		k.patches++
		k.applied = append(k.applied, script)
		return nil
	}
	k.applied = append(k.applied, script)
	l := shapeOf(script)
	k.loaded = &l
	return nil
}

// patch applies a patch's commands to a copy of the loaded shape, and keeps
// it only when every command applies, as nft's transaction does; deleting
// what does not exist fails.
func (k *fakeKernel) patch(script string) error {
	if k.loaded == nil {
		return errors.New("no such table")
	}
	l := Loaded{chains: maps.Clone(k.loaded.chains), dispatch: maps.Clone(k.loaded.dispatch),
		counters: maps.Clone(k.loaded.counters), sets: maps.Clone(k.loaded.sets)}
	prefix := func(line, verb string) (string, bool) { return strings.CutPrefix(line, verb+" inet "+Table+" ") }
	for _, line := range strings.Split(script, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if rest, ok := prefix(line, "delete element"); ok {
			for _, m := range strings.Split(strings.Trim(strings.TrimPrefix(rest, "sandboxes"), " {}"), ", ") {
				if _, ok := l.dispatch[m]; !ok {
					return fmt.Errorf("delete element %s: no such element", m)
				}
				delete(l.dispatch, m)
			}
		} else if rest, ok := prefix(line, "add element"); ok {
			for _, e := range strings.Split(strings.Trim(strings.TrimPrefix(rest, "sandboxes"), " {}"), ", ") {
				m, target, _ := strings.Cut(e, " : goto ")
				l.dispatch[m] = target
			}
		} else if name, ok := prefix(line, "add counter"); ok {
			if _, ok := l.counters[name]; !ok {
				l.counters[name] = Count{}
			}
		} else if name, ok := prefix(line, "delete counter"); ok {
			if _, ok := l.counters[name]; !ok {
				return fmt.Errorf("delete counter %s: no such counter", name)
			}
			delete(l.counters, name)
		} else if name, ok := prefix(line, "add chain"); ok {
			l.chains[name] += 0
		} else if name, ok := prefix(line, "flush chain"); ok {
			if _, ok := l.chains[name]; !ok {
				return fmt.Errorf("flush chain %s: no such chain", name)
			}
			l.chains[name] = 0
		} else if name, ok := prefix(line, "delete chain"); ok {
			if l.chains[name] != 0 {
				return fmt.Errorf("delete chain %s: not empty", name)
			}
			delete(l.chains, name)
		} else if rest, ok := prefix(line, "add rule"); ok {
			name, _, _ := strings.Cut(rest, " ")
			if _, ok := l.chains[name]; !ok {
				return fmt.Errorf("add rule: no chain %s", name)
			}
			l.chains[name]++
		} else {
			return fmt.Errorf("fake kernel: cannot read %q", line)
		}
	}
	k.loaded = &l
	return nil
}

func (k *fakeKernel) ListObject(_ context.Context, kind, name string) (Loaded, error) {
	k.objects++
	if k.loaded == nil {
		return Loaded{}, errors.New("no such table")
	}
	switch n, ok := k.loaded.chains[name]; {
	case kind == "chain" && ok:
		return Loaded{chains: map[string]int{name: n}}, nil
	case kind == "map" && name == "sandboxes":
		return Loaded{dispatch: maps.Clone(k.loaded.dispatch)}, nil
	}
	return Loaded{}, fmt.Errorf("no such %s %s", kind, name)
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

	// Changed: a patch of the sandbox's chain; its counter stays as it is
	// loaded, and the table printed shows it.
	sb.Policy, sb.Allow = egressrule.Allowlist, rules(t, "192.0.2.0/24")
	lists := k.lists
	changes, err = f.Sync(ctx, []Sandbox{sb})
	if err != nil || len(changes) != 1 || changes[0].Kind != Changed {
		t.Fatalf("changed Sync = %+v, %v; want 101 changed", changes, err)
	}
	if k.patches != 1 || k.lists != lists {
		t.Errorf("changed Sync: %d patches, %d full listings; want one patch and no listing", k.patches, k.lists-lists)
	}
	if c := k.loaded.counters["dropped_101"]; c != (Count{Packets: 7, Bytes: 420}) {
		t.Errorf("counter dropped_101 after the patch = %+v; want 7 packets, 420 bytes kept", c)
	}
	if !strings.Contains(f.Ruleset(), "counter dropped_101 {\n\t\tpackets 7 bytes 420") {
		t.Errorf("the table printed does not show the counter:\n%s", f.Ruleset())
	}

	// Drift: someone removed a rule; the next full check (within
	// FullCheckEvery unchanged Syncs, the others reading only counters)
	// applies the table again.
	k.loaded.chains["forward"]--
	n := len(k.applied)
	lists = k.lists
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

// sameShape reports how the loaded shape differs from what a full rendering
// of sandboxes loads, counters' values aside.
func sameShape(t *testing.T, got *Loaded, cfg Config, sandboxes []Sandbox) {
	t.Helper()
	want := shapeOf(Render(cfg, sandboxes, nil).Text)
	if !maps.Equal(got.chains, want.chains) {
		t.Errorf("chains = %v; want %v", got.chains, want.chains)
	}
	if !maps.Equal(got.dispatch, want.dispatch) {
		t.Errorf("dispatch = %v; want %v", got.dispatch, want.dispatch)
	}
	if !slices.Equal(slices.Sorted(maps.Keys(got.counters)), slices.Sorted(maps.Keys(want.counters))) {
		t.Errorf("counters = %v; want %v", slices.Sorted(maps.Keys(got.counters)), slices.Sorted(maps.Keys(want.counters)))
	}
	if !maps.Equal(got.sets, want.sets) {
		t.Errorf("sets = %v; want %v", got.sets, want.sets)
	}
}

// countingKernel counts the scripts applied through it: patches, and whole
// tables.
type countingKernel struct {
	Kernel
	patches, wholes int
}

func (k *countingKernel) Apply(ctx context.Context, script string) error {
	err := k.Kernel.Apply(ctx, script)
	if err == nil && strings.Contains(script, "\ntable inet "+Table+" {\n") {
		k.wholes++
	} else if err == nil {
		k.patches++
	}
	return err
}

// TestFilterPatches: sandboxes added, removed or changed a few at a time
// patch the loaded table into exactly what a full rendering loads; more
// than MaxPatch at once replace it; a patch that does not fit the loaded
// table (someone changed it) falls back to replacing it, counted as drift.
func TestFilterPatches(t *testing.T) {
	k := &fakeKernel{}
	testPatches(t, k, func() Loaded { return *k.loaded }, func(mac string) { delete(k.loaded.dispatch, mac) })
}

// TestFilterPatchesNft runs TestFilterPatches through nft, in a network
// namespace of its own (root only).
func TestFilterPatchesNft(t *testing.T) {
	n := nsNft(t)
	ctx := context.Background()
	list := func() Loaded {
		l, err := n.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	tamper := func(mac string) {
		if err := n.Apply(ctx, fmt.Sprintf("delete element inet %s sandboxes { %s }\n", Table, mac)); err != nil {
			t.Fatal(err)
		}
	}
	testPatches(t, n, list, tamper)
}

// testPatches drives a filter over kernel; loaded reads what the kernel
// holds and tamper deletes a MAC from the dispatch map behind the filter's
// back.
func testPatches(t *testing.T, kernel Kernel, loaded func() Loaded, tamper func(mac string)) {
	ctx := context.Background()
	cfg := testConfig(t)
	m := &recMetrics{}
	k := &countingKernel{Kernel: kernel}
	f := New(cfg, k, nil, m)
	sb := func(vmid int, mac string, p egressrule.Policy, allow ...string) Sandbox {
		return Sandbox{VMID: vmid, MACs: []string{mac}, Policy: p, Allow: rules(t, allow...)}
	}
	a := sb(101, "bc:24:11:00:00:01", egressrule.Open)
	b := sb(102, "bc:24:11:00:00:02", egressrule.Allowlist, "192.0.2.0/24:443/tcp")
	c := sb(103, "bc:24:11:00:00:03", egressrule.None)
	sync := func(want int, sbs ...Sandbox) {
		t.Helper()
		changes, err := f.Sync(ctx, sbs)
		if err != nil || len(changes) != want {
			t.Fatalf("Sync = %+v, %v; want %d changes", changes, err, want)
		}
		if err := Render(cfg, sbs, nil).Verify(loaded()); err != nil {
			t.Errorf("after %d changes, the loaded table is not the one rendered: %v", want, err)
		}
	}
	sync(2, a, b)
	if k.patches != 0 || k.wholes != 1 {
		t.Fatalf("the first Sync: %d patches, %d tables; want the table applied whole", k.patches, k.wholes)
	}
	sync(1, a, b, c) // added
	sync(1, a, c)    // removed
	moved := c
	moved.MACs = []string{"bc:24:11:00:00:09"}
	sync(1, a, moved) // a new MAC
	// 102 comes back with 101's MAC: the lower VMID keeps it.
	clash := sb(102, "bc:24:11:00:00:01", egressrule.None)
	sync(1, a, moved, clash)
	sync(1, moved, clash) // 101 goes: 102 now gets the MAC
	if k.patches != 5 || k.wholes != 1 {
		t.Errorf("%d patches, %d tables; want 5 patches after the first table", k.patches, k.wholes)
	}

	// More than MaxPatch changes replace the table.
	var many []Sandbox
	for i := range MaxPatch + 1 {
		many = append(many, sb(200+i, fmt.Sprintf("bc:24:11:00:01:%02x", i), egressrule.Open))
	}
	sync(MaxPatch+3, many...) // 17 added, 2 removed
	if k.patches != 5 || k.wholes != 2 {
		t.Errorf("%d changes at once: %d patches, %d tables; want the table replaced", MaxPatch+3, k.patches-5, k.wholes-1)
	}

	// Someone deleted a sandbox's MAC from the map: the patch removing that
	// sandbox fails, and the whole table is applied instead.
	tamper(many[1].MACs[0])
	m.applies = nil
	sync(1, slices.Delete(slices.Clone(many), 1, 2)...)
	if len(m.applies) != 2 || m.applies[0] != "drift" || m.applies[1] != "ok" || k.wholes != 3 {
		t.Errorf("applies = %v, %d tables; want a failed patch (drift), then the table applied", m.applies, k.wholes-2)
	}
}

// TestFilterChurnFullCheck: a sandbox changing at every Sync is patched each
// time, and the whole loaded table is still checked every FullCheckEvery
// Syncs, before the patch that falls due.
func TestFilterChurnFullCheck(t *testing.T) {
	ctx := context.Background()
	k := &fakeKernel{}
	f := New(testConfig(t), k, nil, nil)
	var sbs []Sandbox
	for i := range 2*FullCheckEvery + 1 {
		sbs = append(sbs, Sandbox{VMID: 100 + i, MACs: []string{fmt.Sprintf("bc:24:11:00:02:%02x", i)}, Policy: egressrule.Open})
		if _, err := f.Sync(ctx, sbs); err != nil {
			t.Fatal(err)
		}
	}
	// The first Sync: a listing for the counters, the table, its check.
	// Then 2*FullCheckEvery patches, with a full check at every tenth.
	if k.patches != 2*FullCheckEvery || k.lists != 2+2 {
		t.Errorf("%d Syncs: %d patches, %d listings; want %d patches and 4 listings", len(sbs), k.patches, k.lists, 2*FullCheckEvery)
	}
	if err := Render(testConfig(t), sbs, nil).Verify(*k.loaded); err != nil {
		t.Errorf("after the churn: %v", err)
	}
}
