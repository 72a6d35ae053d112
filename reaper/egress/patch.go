package egress

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// A change of a few sandboxes does not replace the table: the base chains
// (input, forward, unknown), the sets and the other sandboxes' chains stay
// as loaded, and one nft -f transaction changes only the chains, counters
// and dispatch map elements of the sandboxes that changed. Replacing the
// table of 1,000 sandboxes, and listing it back to check it, takes seconds;
// a patch and its check take a few nft calls of a few milliseconds each.

// MaxPatch is the most sandbox changes a Sync applies as a patch of the
// loaded table. More (the first Sync, a burst of creates) replace the whole
// table, which then costs less than checking every patched chain.
const MaxPatch = 16

// patch returns the nft script that turns the table loaded as from into to,
// and the chains it rewrites. Changes are the sandboxes whose rules differ
// (diff of the two sandbox sets). The script declares no table: applied with
// nft -f, it changes the loaded table in one transaction, or fails as a
// whole when that table is not what from describes (an element or chain to
// delete is missing).
func patch(from, to Ruleset, changes []Change) (script string, rewritten []string) {
	var b strings.Builder
	fmt.Fprintf(&b, "# agentlab-reaper egress filter: %d sandbox changes, one transaction.\n", len(changes))
	// First every MAC whose target changes or goes, so that nothing jumps
	// to a chain being deleted.
	var gone []string
	for _, m := range slices.Sorted(maps.Keys(from.dispatch)) {
		if to.dispatch[m] != from.dispatch[m] {
			gone = append(gone, m)
		}
	}
	if len(gone) > 0 {
		fmt.Fprintf(&b, "delete element inet %s sandboxes { %s }\n", Table, strings.Join(gone, ", "))
	}
	for _, c := range changes {
		chain, counter := chainName(c.Sandbox.VMID), CounterName(c.Sandbox.VMID)
		switch c.Kind {
		case Removed:
			fmt.Fprintf(&b, "flush chain inet %s %s\ndelete chain inet %s %s\ndelete counter inet %s %s\n",
				Table, chain, Table, chain, Table, counter)
			continue
		case Added:
			fmt.Fprintf(&b, "add counter inet %s %s\nadd chain inet %s %s\n", Table, counter, Table, chain)
		case Changed:
			fmt.Fprintf(&b, "flush chain inet %s %s\n", Table, chain)
		}
		for _, r := range to.rules[chain] {
			fmt.Fprintf(&b, "add rule inet %s %s %s\n", Table, chain, r)
		}
		rewritten = append(rewritten, chain)
	}
	var added []string
	for _, m := range slices.Sorted(maps.Keys(to.dispatch)) {
		if to.dispatch[m] != from.dispatch[m] {
			added = append(added, m+" : goto "+to.dispatch[m])
		}
	}
	if len(added) > 0 {
		fmt.Fprintf(&b, "add element inet %s sandboxes { %s }\n", Table, strings.Join(added, ", "))
	}
	return b.String(), rewritten
}

// applyPatch applies the patch from the loaded table (as f.rs) to rs, then
// checks the dispatch map, the part that says which sandbox gets which
// rules. The rest of the patch is as certain as nft -f's transaction; the
// filter's regular checks (the counters at every Sync, the whole table every
// FullCheckEvery Syncs) see what someone else changes. Listing one chain
// back would cost as much as listing the table: nft reads the whole table
// first.
func (f *Filter) applyPatch(ctx context.Context, rs Ruleset, changes []Change) error {
	script, _ := patch(f.rs, rs, changes)
	if err := f.kernel.Apply(ctx, script); err != nil {
		return fmt.Errorf("apply egress patch: %w", err)
	}
	m, err := f.kernel.ListObject(ctx, "map", "sandboxes")
	if err != nil {
		return fmt.Errorf("check egress patch: %w", err)
	}
	if !maps.Equal(rs.dispatch, m.dispatch) {
		return fmt.Errorf("check egress patch: %w: map sandboxes holds %d MACs, want %d (or they lead elsewhere)",
			ErrDrift, len(m.dispatch), len(rs.dispatch))
	}
	return nil
}
