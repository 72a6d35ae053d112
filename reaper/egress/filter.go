package egress

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/agentlab/terraform-provider-agentlab/internal/egressrule"
)

// Kernel is what the filter needs of nftables; Nft is one.
type Kernel interface {
	Apply(ctx context.Context, script string) error
	List(ctx context.Context) (Loaded, error)
	// Counters lists the counters only (Loaded holds nothing else).
	Counters(ctx context.Context) (Loaded, error)
	// ListObject lists one object of the table, kind "chain" (its rules)
	// or "map" (its elements).
	ListObject(ctx context.Context, kind, name string) (Loaded, error)
	Remove(ctx context.Context) error
}

// FullCheckEvery is how many unchanged Syncs in a row only read the
// counters (which shows a removed or replaced table) before one lists the
// whole table and compares it with the rendering: listing a table of 1,000
// sandboxes takes nft about 2 s.
const FullCheckEvery = 10

// Metrics receives what the filter counts; *metrics.Metrics is one.
type Metrics interface {
	// EgressApply counts an application of the table by result: "ok",
	// "error", or "drift" (the loaded table differed and was replaced).
	EgressApply(result string)
	// SetEgressDropped sets the dropped-packet counters by sandbox ("101",
	// or "unknown" for MACs of no known sandbox).
	SetEgressDropped(packets, bytes map[string]uint64)
}

// ChangeKind says how a sandbox's rules changed.
type ChangeKind string

// The kinds of change.
const (
	Added   ChangeKind = "added"
	Changed ChangeKind = "changed"
	Removed ChangeKind = "removed"
)

// Change is one sandbox whose rules a Sync changed.
type Change struct {
	// Kind says what happened to the sandbox's rules.
	Kind ChangeKind
	// Sandbox is the sandbox as now filtered (as it was, for Removed).
	Sandbox Sandbox
}

// Reason describes the change for the audit log.
func (c Change) Reason() string {
	s := c.Sandbox
	if c.Kind == Removed {
		return "egress rules removed (sandbox gone from the bridge)"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "egress rules %s: policy %s", c.Kind, s.Policy)
	if s.Broken {
		b.WriteString(" (metadata unreadable or invalid: fail closed)")
	}
	if len(s.Allow) > 0 {
		entries := make([]string, len(s.Allow))
		for i, r := range s.Allow {
			entries[i] = r.String()
		}
		fmt.Fprintf(&b, ", allow %s", strings.Join(entries, " "))
	}
	if len(s.MACs) == 0 {
		b.WriteString(", no NIC on the bridge")
	} else {
		fmt.Fprintf(&b, ", MAC %s", strings.Join(s.MACs, " "))
	}
	return b.String()
}

// Filter keeps the table in the kernel in line with the sandboxes it is
// given. Create it with New; it is safe for concurrent use.
type Filter struct {
	cfg    Config
	kernel Kernel
	log    *slog.Logger
	m      Metrics

	mu      sync.Mutex
	current map[int]Sandbox // as applied
	rs      Ruleset
	applied bool
	light   int              // unchanged or patching Syncs since the last full check
	counts  map[string]Count // the counters as last read
}

// New returns a filter that renders from cfg and applies through kernel.
// log and m may be nil.
func New(cfg Config, kernel Kernel, log *slog.Logger, m Metrics) *Filter {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if m == nil {
		m = noMetrics{}
	}
	return &Filter{cfg: cfg, kernel: kernel, log: log, m: m, current: map[int]Sandbox{}}
}

// Sync makes the loaded table filter sandboxes: when they differ from what
// was applied, or when the loaded table no longer is what was rendered, it
// renders the table again (counters carried over) and applies it in one
// transaction, then checks what the kernel loaded. Up to MaxPatch changed
// sandboxes are applied as a patch of the loaded table (see patch.go);
// should the patch fail, the whole table is replaced. It returns the
// sandboxes whose rules changed; on an error nothing is taken as applied
// and the next Sync tries again.
func (f *Filter) Sync(ctx context.Context, sandboxes []Sandbox) ([]Change, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	want := make(map[int]Sandbox, len(sandboxes))
	for _, s := range sandboxes {
		want[s.VMID] = s.normalize()
	}
	changes := diff(f.current, want)
	patchable := f.applied && len(changes) > 0 && len(changes) <= MaxPatch
	var loaded Loaded // the table as listed, with listErr, once listed
	var listErr error
	listed := false

	if f.applied && f.light < FullCheckEvery-1 && (len(changes) == 0 || patchable) {
		// The last full check is recent: unchanged, the counters tell
		// whether the table is still ours; changed, a patch does it.
		if len(changes) > 0 {
			if f.patch(ctx, want, changes) {
				f.light++
				return changes, nil
			}
		} else if l, err := f.kernel.Counters(ctx); err == nil && slices.Equal(f.rs.counters, slices.Sorted(maps.Keys(l.counters))) {
			f.light++
			f.publish(l)
			return nil, nil
		}
	} else if f.applied {
		// A full check is due: the loaded table must be the one rendered
		// before anything is patched into it.
		f.light = 0
		loaded, listErr = f.kernel.List(ctx)
		listed = true
		err := listErr
		if err == nil {
			err = f.rs.Verify(loaded)
		}
		if err == nil {
			f.publish(loaded)
			if len(changes) == 0 {
				return nil, nil
			}
			if patchable && f.patch(ctx, want, changes) {
				return changes, nil
			}
		} else {
			f.log.Warn("egress table is not as rendered; applying it again", "table", "inet "+Table, "err", err)
			f.m.EgressApply("drift")
		}
	}
	f.light = 0
	if !listed {
		loaded, listErr = f.kernel.List(ctx)
	}
	counters := map[string]Count{}
	if listErr == nil {
		counters = loaded.counters
	}
	list := slices.Collect(maps.Values(want))
	rs := Render(f.cfg, list, counters)
	if err := f.kernel.Apply(ctx, rs.Text); err != nil {
		f.m.EgressApply("error")
		return nil, fmt.Errorf("apply egress table: %w", err)
	}
	loaded, err := f.kernel.List(ctx)
	if err == nil {
		err = rs.Verify(loaded)
	}
	if err != nil {
		f.m.EgressApply("error")
		return nil, fmt.Errorf("check egress table after applying it: %w", err)
	}
	f.m.EgressApply("ok")
	f.current, f.rs, f.applied = want, rs, true
	f.publish(loaded)
	f.log.Info("egress table applied", "table", "inet "+Table, "sandboxes", len(want), "changes", len(changes))
	return changes, nil
}

// patch applies changes, which turn the sandboxes applied into want, as a
// patch of the loaded table, and reports whether that worked. When it did
// not (the loaded table is not what the filter applied, or nft failed), the
// caller replaces the whole table.
func (f *Filter) patch(ctx context.Context, want map[int]Sandbox, changes []Change) bool {
	rs := Render(f.cfg, slices.Collect(maps.Values(want)), f.counts)
	if err := f.applyPatch(ctx, rs, changes); err != nil {
		f.log.Warn("egress patch failed; replacing the whole table", "table", "inet "+Table, "err", err)
		f.m.EgressApply("drift")
		return false
	}
	f.m.EgressApply("ok")
	f.current, f.rs = want, rs
	f.log.Info("egress table patched", "table", "inet "+Table, "sandboxes", len(want), "changes", len(changes))
	return true
}

// publish hands the loaded counters to the metrics.
func (f *Filter) publish(l Loaded) {
	f.counts = l.counters
	packets, bytes := map[string]uint64{}, map[string]uint64{}
	for name, c := range l.counters {
		id, ok := strings.CutPrefix(name, "dropped_")
		if !ok {
			continue
		}
		packets[id], bytes[id] = c.Packets, c.Bytes
	}
	f.m.SetEgressDropped(packets, bytes)
}

// Ruleset returns the script last applied; before the first Sync, the
// script for no sandboxes.
func (f *Filter) Ruleset() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.applied {
		return Render(f.cfg, nil, nil).Text
	}
	return f.rs.Text
}

// Close removes the table, and only it, from the kernel.
func (f *Filter) Close(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applied = false
	f.current = map[int]Sandbox{}
	if err := f.kernel.Remove(ctx); err != nil {
		return fmt.Errorf("remove egress table: %w", err)
	}
	return nil
}

// diff returns the changes from before to after, by VMID.
func diff(before, after map[int]Sandbox) []Change {
	var out []Change
	for _, id := range slices.Sorted(maps.Keys(after)) {
		b, ok := before[id]
		switch {
		case !ok:
			out = append(out, Change{Kind: Added, Sandbox: after[id]})
		case !b.equal(after[id]):
			out = append(out, Change{Kind: Changed, Sandbox: after[id]})
		}
	}
	for _, id := range slices.Sorted(maps.Keys(before)) {
		if _, ok := after[id]; !ok {
			out = append(out, Change{Kind: Removed, Sandbox: before[id]})
		}
	}
	return out
}

// FromMetadata returns the policy and entries of a sandbox's metadata
// values; an invalid value is an error (the sandbox is then Broken).
func FromMetadata(policy string, allow []string) (egressrule.Policy, []egressrule.Rule, error) {
	p, err := egressrule.ParsePolicy(policy)
	if err != nil {
		return "", nil, err
	}
	rules, err := egressrule.ParseList(allow)
	if err != nil {
		return "", nil, err
	}
	return p, rules, nil
}

type noMetrics struct{}

func (noMetrics) EgressApply(string)                      {}
func (noMetrics) SetEgressDropped(_, _ map[string]uint64) {}

var _ Kernel = Nft{}
