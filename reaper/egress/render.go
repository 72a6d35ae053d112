package egress

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/agentlab/terraform-provider-agentlab/internal/egressrule"
)

// Count is the value of a named nftables counter.
type Count struct {
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

// UnknownCounter is the counter of packets dropped from MACs that belong to
// no known sandbox.
const UnknownCounter = "dropped_unknown"

// CounterName returns the name of the counter of packets dropped from the
// sandbox vmid.
func CounterName(vmid int) string { return "dropped_" + strconv.Itoa(vmid) }

// chainName returns the name of the sandbox vmid's chain.
func chainName(vmid int) string { return "sandbox_" + strconv.Itoa(vmid) }

// Ruleset is a rendered table: the nft script that replaces it atomically,
// and the shape Verify expects to find loaded.
type Ruleset struct {
	// Text is the nft -f script: it creates the table if needed, deletes it
	// and declares it anew, in one transaction.
	Text string

	chains   map[string]int // chain name -> number of rules
	rules    map[string][]string
	dispatch map[string]string // MAC -> chain
	counters []string          // counter names, sorted
	sets     map[string]int    // set name -> number of elements
}

// chain is one chain being rendered.
type chain struct {
	name  string
	hook  string // "" for a regular chain
	rules []string
}

// Render renders the table for cfg and sandboxes. Counters takes the values
// the named counters start from, so that a re-render keeps counting where the
// loaded table was; missing names start at zero. Sandboxes with the same MAC
// are a conflict: the lowest VMID keeps it.
func Render(cfg Config, sandboxes []Sandbox, counters map[string]Count) Ruleset {
	sbs := make([]Sandbox, len(sandboxes))
	for i, s := range sandboxes {
		sbs[i] = s.normalize()
	}
	slices.SortFunc(sbs, func(a, b Sandbox) int { return a.VMID - b.VMID })

	rs := Ruleset{chains: map[string]int{}, rules: map[string][]string{}, dispatch: map[string]string{}, sets: map[string]int{}}
	var chains []chain
	var macs []string
	for _, s := range sbs {
		name := chainName(s.VMID)
		for _, m := range s.MACs {
			if _, dup := rs.dispatch[m]; dup {
				continue
			}
			rs.dispatch[m] = name
			macs = append(macs, m)
		}
		chains = append(chains, policyChain(cfg, name, CounterName(s.VMID), s.Policy, s.Allow))
		rs.counters = append(rs.counters, CounterName(s.VMID))
	}
	chains = append(chains, policyChain(cfg, "unknown", UnknownCounter, egressrule.Open, nil))
	rs.counters = append(rs.counters, UnknownCounter)
	slices.Sort(rs.counters)

	bridge := strconv.Quote(cfg.Bridge)
	entry := []string{
		"iifname != " + bridge + " accept",
		"ct state established,related accept",
		"ct state invalid drop",
	}
	input := chain{name: "input", hook: "input", rules: slices.Clone(entry)}
	input.rules = append(input.rules,
		"udp sport 68 udp dport 67 accept",
		"ip6 nexthdr udp udp sport 546 udp dport 547 accept",
		"icmpv6 type { nd-router-solicit, nd-neighbor-solicit, nd-neighbor-advert } accept",
	)
	if cfg.Guest.IsValid() {
		if a := cfg.Guest.Addr(); a.IsUnspecified() {
			input.rules = append(input.rules, fmt.Sprintf("tcp dport %d accept", cfg.Guest.Port()))
		} else {
			input.rules = append(input.rules, fmt.Sprintf("%s daddr %s tcp dport %d accept", family(a), a, cfg.Guest.Port()))
		}
	}
	input.rules = append(input.rules, "ether saddr vmap @sandboxes", "goto unknown")
	forward := chain{name: "forward", hook: "forward", rules: slices.Clone(entry)}
	if cfg.Subnet.IsValid() {
		forward.rules = append(forward.rules, "ip saddr != "+cfg.Subnet.String()+" drop")
	}
	forward.rules = append(forward.rules, "ether saddr vmap @sandboxes", "goto unknown")
	chains = append([]chain{input, forward}, chains...)

	var b strings.Builder
	fmt.Fprintf(&b, "# agentlab-reaper egress filter: bridge %s, subnet %s, resolver %s, %d sandboxes.\n",
		cfg.Bridge, cfg.Subnet, cfg.Resolver, len(sbs))
	b.WriteString("# nft -f replaces the table in one transaction; no other table is touched.\n")
	fmt.Fprintf(&b, "table inet %s {}\ndelete table inet %s\ntable inet %s {\n", Table, Table, Table)
	var v4, v6 []string
	for _, p := range Blocked() {
		if p.Addr().Is4() {
			v4 = append(v4, p.String())
		} else {
			v6 = append(v6, p.String())
		}
	}
	writeSet(&b, &rs, "blocked4", "ipv4_addr", v4)
	writeSet(&b, &rs, "blocked6", "ipv6_addr", v6)
	for _, name := range rs.counters {
		c := counters[name]
		fmt.Fprintf(&b, "\tcounter %s {\n\t\tpackets %d bytes %d\n\t}\n", name, c.Packets, c.Bytes)
	}
	b.WriteString("\tmap sandboxes {\n\t\ttype ether_addr : verdict\n")
	if len(macs) > 0 {
		b.WriteString("\t\telements = {\n")
		for i, m := range macs {
			sep := ","
			if i == len(macs)-1 {
				sep = ""
			}
			fmt.Fprintf(&b, "\t\t\t%s : goto %s%s\n", m, rs.dispatch[m], sep)
		}
		b.WriteString("\t\t}\n")
	}
	b.WriteString("\t}\n")
	for _, c := range chains {
		fmt.Fprintf(&b, "\tchain %s {\n", c.name)
		if c.hook != "" {
			// Just before the usual filter priority: this table only drops,
			// so the order among tables matters little, but it runs first.
			fmt.Fprintf(&b, "\t\ttype filter hook %s priority filter - 1; policy accept;\n", c.hook)
		}
		for _, r := range c.rules {
			fmt.Fprintf(&b, "\t\t%s\n", r)
		}
		b.WriteString("\t}\n")
		rs.chains[c.name] = len(c.rules)
		rs.rules[c.name] = c.rules
	}
	b.WriteString("}\n")
	rs.Text = b.String()
	return rs
}

func writeSet(b *strings.Builder, rs *Ruleset, name, typ string, elems []string) {
	fmt.Fprintf(b, "\tset %s {\n\t\ttype %s\n\t\tflags interval\n\t\telements = { %s }\n\t}\n",
		name, typ, strings.Join(elems, ", "))
	rs.sets[name] = len(elems)
}

// policyChain renders the chain a sandbox's packets go to, for both hooks:
// in input (to the host) only DNS to the resolver may pass; in forward the
// policy decides. counter counts what the chain drops.
func policyChain(cfg Config, name, counter string, p egressrule.Policy, own []egressrule.Rule) chain {
	c := chain{name: name}
	drop := "counter name " + counter + " drop"
	if p == egressrule.None {
		c.rules = append(c.rules, drop)
		return c
	}
	if r := cfg.Resolver; r.IsValid() {
		c.rules = append(c.rules,
			fmt.Sprintf("%s daddr %s udp dport 53 accept", family(r), r),
			fmt.Sprintf("%s daddr %s tcp dport 53 accept", family(r), r))
	}
	c.rules = append(c.rules,
		"fib daddr type != unicast "+drop,
		"meta l4proto { tcp, udp } th dport { 53, 853 } "+drop,
	)
	entries := append(slices.Clone(cfg.Allow), own...)
	var public []egressrule.Rule
	for _, e := range entries {
		if insideBlocked(e.Prefix) {
			c.rules = append(c.rules, ruleText(e)+" accept")
		} else {
			public = append(public, e)
		}
	}
	c.rules = append(c.rules, "ip daddr @blocked4 "+drop, "ip6 daddr @blocked6 "+drop)
	if p == egressrule.Open {
		c.rules = append(c.rules, "accept")
		return c
	}
	for _, e := range public {
		c.rules = append(c.rules, ruleText(e)+" accept")
	}
	c.rules = append(c.rules, drop)
	return c
}

// ruleText renders the match of an allow entry.
func ruleText(r egressrule.Rule) string {
	s := family(r.Prefix.Addr()) + " daddr " + r.Prefix.String()
	if r.FromPort == 0 {
		return s
	}
	ports := strconv.Itoa(int(r.FromPort))
	if r.ToPort != r.FromPort {
		ports += "-" + strconv.Itoa(int(r.ToPort))
	}
	if r.Proto != "" {
		return s + " " + r.Proto + " dport " + ports
	}
	return s + " meta l4proto { tcp, udp } th dport " + ports
}

func family(a netip.Addr) string {
	if a.Is4() {
		return "ip"
	}
	return "ip6"
}
