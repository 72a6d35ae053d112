package egress

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os/exec"
	"slices"
	"strings"
)

var (
	// ErrNoNft means the nft command could not be run: nftables is not
	// installed, or egress.nft points nowhere.
	ErrNoNft = errors.New("nft command not found")
	// ErrDrift means the table loaded in the kernel is not the one the
	// filter rendered (someone changed or removed it).
	ErrDrift = errors.New("loaded egress table differs from the rendered one")
)

// Nft runs the nft command. Command is the command line before nft's own
// arguments: ["nft"] (found on PATH), ["/usr/sbin/nft"], or, in tests,
// ["ip", "netns", "exec", "NS", "nft"].
type Nft struct {
	Command []string
}

// run runs nft with args, stdin on its standard input, and returns its
// standard output. The error carries nft's standard error.
func (n Nft) run(ctx context.Context, stdin string, args ...string) ([]byte, error) {
	if len(n.Command) == 0 {
		return nil, fmt.Errorf("%w: no command configured", ErrNoNft)
	}
	argv := append(slices.Clone(n.Command[1:]), args...)
	cmd := exec.CommandContext(ctx, n.Command[0], argv...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w: %s (install nftables, or set egress.nft)", ErrNoNft, n.Command[0])
		}
		msg := strings.TrimSpace(errOut.String())
		if msg == "" {
			msg = "no message"
		}
		return nil, fmt.Errorf("nft %s: %w: %s", strings.Join(args, " "), err, msg)
	}
	return out.Bytes(), nil
}

// Check parses and checks script without applying it (nft -c -f -).
func (n Nft) Check(ctx context.Context, script string) error {
	_, err := n.run(ctx, script, "-c", "-f", "-")
	return err
}

// Apply applies script in one transaction (nft -f -): all of it, or, on an
// error, none of it.
func (n Nft) Apply(ctx context.Context, script string) error {
	_, err := n.run(ctx, script, "-f", "-")
	return err
}

// Remove deletes the filter's table, and nothing else; a missing table is
// not an error.
func (n Nft) Remove(ctx context.Context) error {
	return n.Apply(ctx, fmt.Sprintf("table inet %s {}\ndelete table inet %s\n", Table, Table))
}

// Loaded is what the kernel holds of the table, as nft -j lists it.
type Loaded struct {
	chains   map[string]int
	dispatch map[string]string
	counters map[string]Count
	sets     map[string]int
}

// Counters returns the table's named counters by name.
func (l Loaded) Counters() map[string]Count { return maps.Clone(l.counters) }

// List reads the table as loaded (nft -j list table inet agentlab). A
// missing table is an error.
func (n Nft) List(ctx context.Context) (Loaded, error) {
	out, err := n.run(ctx, "", "-j", "list", "table", "inet", Table)
	if err != nil {
		return Loaded{}, err
	}
	return parseLoaded(out)
}

// Counters reads only the table's named counters (nft -j list counters
// table inet agentlab): far cheaper than List for a large table. The
// Loaded it returns holds counters only.
func (n Nft) Counters(ctx context.Context) (Loaded, error) {
	out, err := n.run(ctx, "", "-j", "list", "counters", "table", "inet", Table)
	if err != nil {
		return Loaded{}, err
	}
	return parseLoaded(out)
}

// ListObject reads one object of the table (nft -j list KIND inet agentlab
// NAME): a "chain" with its rules, or a "map" with its elements.
func (n Nft) ListObject(ctx context.Context, kind, name string) (Loaded, error) {
	if kind != "chain" && kind != "map" {
		return Loaded{}, fmt.Errorf("list %s %s: want a chain or a map", kind, name)
	}
	out, err := n.run(ctx, "", "-j", "list", kind, "inet", Table, name)
	if err != nil {
		return Loaded{}, err
	}
	return parseLoaded(out)
}

// parseLoaded reads nft's JSON listing of the table.
func parseLoaded(out []byte) (Loaded, error) {
	var doc struct {
		Nftables []map[string]json.RawMessage `json:"nftables"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		return Loaded{}, fmt.Errorf("read nft -j output: %w", err)
	}
	l := Loaded{chains: map[string]int{}, dispatch: map[string]string{}, counters: map[string]Count{}, sets: map[string]int{}}
	for _, obj := range doc.Nftables {
		for kind, raw := range obj {
			var v struct {
				Name    string            `json:"name"`
				Chain   string            `json:"chain"`
				Packets uint64            `json:"packets"`
				Bytes   uint64            `json:"bytes"`
				Elem    []json.RawMessage `json:"elem"`
			}
			if kind == "metainfo" {
				continue
			}
			if err := json.Unmarshal(raw, &v); err != nil {
				return Loaded{}, fmt.Errorf("read nft -j %s: %w", kind, err)
			}
			switch kind {
			case "chain":
				l.chains[v.Name] += 0
			case "rule":
				l.chains[v.Chain]++
			case "counter":
				l.counters[v.Name] = Count{Packets: v.Packets, Bytes: v.Bytes}
			case "set":
				l.sets[v.Name] = len(v.Elem)
			case "map":
				for _, e := range v.Elem {
					var pair []json.RawMessage
					var mac string
					var verdict struct {
						Goto struct {
							Target string `json:"target"`
						} `json:"goto"`
					}
					if json.Unmarshal(e, &pair) != nil || len(pair) != 2 ||
						json.Unmarshal(pair[0], &mac) != nil || json.Unmarshal(pair[1], &verdict) != nil {
						return Loaded{}, fmt.Errorf("read nft -j map %s: unexpected element %s", v.Name, e)
					}
					l.dispatch[mac] = verdict.Goto.Target
				}
			}
		}
	}
	return l, nil
}

// Verify compares what is loaded with rs: the same chains with the same
// number of rules, the same MACs sent to the same chains, the same counters
// and sets. Differences are reported in an error wrapping ErrDrift.
func (rs Ruleset) Verify(l Loaded) error {
	var diffs []string
	for _, name := range slices.Sorted(maps.Keys(rs.chains)) {
		got, ok := l.chains[name]
		switch {
		case !ok:
			diffs = append(diffs, "chain "+name+" missing")
		case got != rs.chains[name]:
			diffs = append(diffs, fmt.Sprintf("chain %s has %d rules, want %d", name, got, rs.chains[name]))
		}
	}
	for _, name := range slices.Sorted(maps.Keys(l.chains)) {
		if _, ok := rs.chains[name]; !ok {
			diffs = append(diffs, "unexpected chain "+name)
		}
	}
	if !maps.Equal(rs.dispatch, l.dispatch) {
		diffs = append(diffs, fmt.Sprintf("map sandboxes holds %d MACs, want %d (or they lead elsewhere)", len(l.dispatch), len(rs.dispatch)))
	}
	if !slices.Equal(rs.counters, slices.Sorted(maps.Keys(l.counters))) {
		diffs = append(diffs, fmt.Sprintf("counters %v, want %v", slices.Sorted(maps.Keys(l.counters)), rs.counters))
	}
	if !maps.Equal(rs.sets, l.sets) {
		diffs = append(diffs, fmt.Sprintf("sets %v, want %v", l.sets, rs.sets))
	}
	if len(diffs) > 0 {
		return fmt.Errorf("%w: %s", ErrDrift, strings.Join(diffs, "; "))
	}
	return nil
}
