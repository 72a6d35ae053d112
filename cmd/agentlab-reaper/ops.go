package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/agentlab/terraform-provider-agentlab/internal/buildinfo"
	"github.com/agentlab/terraform-provider-agentlab/internal/printable"
	"github.com/agentlab/terraform-provider-agentlab/reaper"
	"github.com/agentlab/terraform-provider-agentlab/reaper/api"
	"github.com/agentlab/terraform-provider-agentlab/reaper/config"
)

// opCommand runs the operator subcommands against the daemon's socket.
type opCommand struct {
	stdout, stderr io.Writer
	now            func() time.Time
	// exec replaces the process (ssh); tests record the call instead.
	exec func(bin string, argv, env []string) error
	// pollEvery is the pause between log reads of logs --follow.
	pollEvery time.Duration

	configPath string
	socket     string
	jsonOut    bool
}

func newOpCommand(stdout, stderr io.Writer) *opCommand {
	return &opCommand{stdout: stdout, stderr: stderr, now: time.Now, exec: execSSH, pollEvery: time.Second}
}

// flags returns a flag set with the options every operator command takes.
func (c *opCommand) flags(name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet("agentlab-reaper "+name, flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	fs.StringVar(&c.configPath, "config", config.DefaultPath, "configuration `file` naming control.socket")
	fs.StringVar(&c.socket, "socket", "", "control socket `path` (default: control.socket from --config)")
	fs.BoolVar(&c.jsonOut, "json", false, "print JSON instead of a table")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: agentlab-reaper %s %s\n", name, synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses args, allowing flags after positional arguments
// ("renew 101 2h --json"), and returns the positional ones.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if len(args) > 0 && negativeValue(args[0]) {
			// "renew 100 -5m": a value, not a flag; the command says
			// what is wrong with it.
			pos, args = append(pos, args[0]), args[1:]
			continue
		}
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, errUsage
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// parseN parses args and wants n positional arguments; for any other number
// it prints the usage and returns errUsage.
func parseN(fs *flag.FlagSet, args []string, n int) ([]string, error) {
	pos, err := parse(fs, args)
	if err != nil {
		return nil, err
	}
	if len(pos) != n {
		fs.Usage()
		return nil, errUsage
	}
	return pos, nil
}

// parseVMID is parseN for a command whose first positional argument is a VMID.
func parseVMID(fs *flag.FlagSet, args []string, n int) (int, []string, error) {
	pos, err := parseN(fs, args, n)
	if err != nil {
		return 0, nil, err
	}
	vmid, err := strconv.Atoi(pos[0])
	if err != nil || vmid <= 0 {
		return 0, nil, fmt.Errorf("VMID %q is not a VM ID", pos[0])
	}
	return vmid, pos, nil
}

// negativeValue reports whether arg is a negative number or duration ("-5",
// "-5m", "-1.5h") rather than a flag.
func negativeValue(arg string) bool {
	return len(arg) > 1 && arg[0] == '-' && (arg[1] >= '0' && arg[1] <= '9' || arg[1] == '.')
}

// client connects to the socket named by --socket or the configuration.
func (c *opCommand) client() (*api.Client, error) {
	sock := c.socket
	if sock == "" {
		cfg, err := config.Load(c.configPath)
		if err != nil {
			return nil, err
		}
		sock = cfg.Control.Socket
	}
	return api.NewUnixClient(sock), nil
}

func (c *opCommand) explain(err error) error {
	if api.IsUnavailable(err) {
		return fmt.Errorf("%w\nis agentlab-reaper running, and can you open its socket? (try sudo, or --socket PATH)", err)
	}
	return err
}

func (c *opCommand) leases(ctx context.Context, args []string) error {
	fs := c.flags("leases", "[--all] [--json]")
	all := fs.Bool("all", false, "include destroyed and gone sandboxes")
	if _, err := parseN(fs, args, 0); err != nil {
		return err
	}
	fetch := func(ctx context.Context, cl *api.Client) ([]reaper.Lease, error) { return cl.Leases(ctx, *all) }
	return printList(ctx, c, "sandboxes", fetch, func(now time.Time, ls []reaper.Lease) error {
		tw := newTable(c.stdout, "VMID", "NODE", "NAME", "STATE", "EXPIRES", "MAX", "ON EXPIRY", "OWNER", "REASON")
		for _, l := range ls {
			expires := when(l.ExpiresAt, now)
			if !l.PolicyExpiresAt.IsZero() {
				expires = when(l.PolicyExpiresAt, now) + " capped by policy"
			}
			tw.row(l.VMID, dash(l.Node), dash(l.Name), l.State,
				expires, when(l.MaxExpiresAt, now), dash(l.OnExpiry), dash(l.Owner), dash(l.Reason))
		}
		return tw.flush()
	})
}

// printList is the shared tail of the listing commands: it fetches the
// items, prints them as JSON with --json, says "no <what>" when there are
// none, and otherwise lets table print them.
func printList[T any](ctx context.Context, c *opCommand, what string,
	fetch func(context.Context, *api.Client) ([]T, error), table func(now time.Time, items []T) error) error {
	cl, err := c.client()
	if err != nil {
		return err
	}
	items, err := fetch(ctx, cl)
	if err != nil {
		return c.explain(err)
	}
	if c.jsonOut {
		return c.printJSON(items)
	}
	if len(items) == 0 {
		fmt.Fprintln(c.stdout, "no "+what)
		return nil
	}
	return table(c.now(), items)
}

func (c *opCommand) renew(ctx context.Context, args []string) error {
	fs := c.flags("renew", "VMID DURATION [--force] [--json]")
	force := fs.Bool("force", false, fmt.Sprintf("allow a DURATION shorter than %s (the sandbox is reaped at the next tick)", reaper.MinRenewal))
	vmid, pos, err := parseVMID(fs, args, 2)
	if err != nil {
		return err
	}
	d, err := time.ParseDuration(pos[1])
	switch {
	case err != nil:
		return fmt.Errorf("DURATION %q is not a Go duration such as 30m or 2h", pos[1])
	case d <= 0:
		return fmt.Errorf("DURATION %s is not positive: the lease is set to end DURATION from now; give e.g. 30m or 2h", pos[1])
	case d < reaper.MinRenewal && !*force:
		return fmt.Errorf("DURATION %s is shorter than %s: the sandbox would be reaped at the next tick; add --force if that is what you want", pos[1], reaper.MinRenewal)
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	renew := cl.Renew
	if *force {
		renew = cl.ForceRenew
	}
	ren, err := renew(ctx, vmid, d)
	var ae *api.Error
	capped := errors.As(err, &ae) && ren.Capped
	if err != nil && !capped {
		return c.explain(err)
	}
	if c.jsonOut {
		if perr := c.printJSON(ren); perr != nil {
			return perr
		}
	} else {
		now := c.now()
		msg := fmt.Sprintf("vm %d: lease expires at %s (was %s)", vmid, when(ren.Lease.ExpiresAt, now), stampOrDash(ren.Previous))
		if ren.DryRun {
			msg += " [dry run: not written]"
		}
		fmt.Fprintln(c.stdout, printable.Escape(msg))
	}
	if capped {
		by := ren.CappedBy
		if by == "" {
			by = "max_ttl"
		}
		return fmt.Errorf("vm %d: capped by %s: %w", vmid, by, err)
	}
	return nil
}

func (c *opCommand) events(ctx context.Context, args []string) error {
	fs := c.flags("events", "[--vmid N] [--since DURATION|RFC3339] [--limit N] [--json]")
	vmid := fs.Int("vmid", 0, "only the events of this `VMID`")
	since := fs.String("since", "", "only events after `T`: a duration ago (1h) or an RFC 3339 time")
	limit := fs.Int("limit", 50, "the latest `N` events")
	if _, err := parseN(fs, args, 0); err != nil {
		return err
	}
	f := reaper.EventFilter{VMID: *vmid, Limit: *limit}
	if *since != "" {
		if d, err := time.ParseDuration(*since); err == nil {
			f.Since = c.now().Add(-d)
		} else if t, err := time.Parse(time.RFC3339, *since); err == nil {
			f.Since = t
		} else {
			return fmt.Errorf("--since %q: want a duration (1h) or an RFC 3339 time (2026-03-01T12:00:00Z)", *since)
		}
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	evs, err := cl.Events(ctx, f)
	if err != nil {
		return c.explain(err)
	}
	if c.jsonOut {
		return c.printJSON(evs)
	}
	if len(evs) == 0 {
		fmt.Fprintln(c.stdout, "no events")
		return nil
	}
	tw := newTable(c.stdout, "TIME", "VMID", "KIND", "DECISION", "ACTOR", "REASON")
	for _, e := range evs {
		decision := string(e.Decision)
		if e.DryRun && e.Decision != reaper.DecisionDryRun {
			decision += " (dry run)"
		}
		reason := e.Reason
		if e.Count > 1 {
			reason += fmt.Sprintf(" [%d times, last %s]", e.Count, e.LastTime.UTC().Format(time.RFC3339))
		}
		tw.row(e.Time.UTC().Format(time.RFC3339), e.VMID, e.Kind, decision, e.Actor, reason)
	}
	return tw.flush()
}

func (c *opCommand) keep(ctx context.Context, args []string) error {
	fs := c.flags("keep", "VMID [--remove] [--json]")
	remove := fs.Bool("remove", false, "stop keeping the sandbox: remove the agentlab-keep tag, the lease applies again")
	vmid, _, err := parseVMID(fs, args, 1)
	if err != nil {
		return err
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	l, err := cl.Keep(ctx, vmid, !*remove)
	if err != nil {
		return c.explain(err)
	}
	if c.jsonOut {
		return c.printJSON(l)
	}
	msg := fmt.Sprintf("vm %d: kept: tagged agentlab-keep, the reaper leaves it alone until agentlab-reaper keep --remove %d", vmid, vmid)
	if *remove {
		msg = fmt.Sprintf("vm %d: no longer kept: %s, lease expires at %s", vmid, l.State, when(l.ExpiresAt, c.now()))
	}
	fmt.Fprintln(c.stdout, printable.Escape(msg))
	return nil
}

func (c *opCommand) orphans(ctx context.Context, args []string) error {
	fs := c.flags("orphans", "[--json]")
	if _, err := parseN(fs, args, 0); err != nil {
		return err
	}
	fetch := func(ctx context.Context, cl *api.Client) ([]reaper.Orphan, error) { return cl.Orphans(ctx) }
	return printList(ctx, c, "orphans", fetch, func(now time.Time, os []reaper.Orphan) error {
		tw := newTable(c.stdout, "KIND", "VMID", "NODE", "VOLUME", "SINCE", "REASON", "ACTION")
		for _, o := range os {
			tw.row(o.Kind, o.VMID, dash(o.Node), dash(o.Volid), when(o.FirstSeen, now), o.Reason, o.Action)
		}
		return tw.flush()
	})
}

func (c *opCommand) version(ctx context.Context, args []string) error {
	fs := c.flags("version", "[--json]")
	if _, err := parseN(fs, args, 0); err != nil {
		return err
	}
	out := struct {
		buildinfo.Info
		Daemon *api.Status `json:"daemon,omitempty"`
	}{Info: build()}
	if cl, err := c.client(); err == nil {
		ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		if st, err := cl.Status(ctx); err == nil {
			out.Daemon = &st
		}
	}
	if c.jsonOut {
		return c.printJSON(out)
	}
	fmt.Fprintln(c.stdout, printable.Escape(out.String()))
	if out.Daemon != nil {
		line := fmt.Sprintf("daemon: %s, interval %s", out.Daemon.Version, out.Daemon.Interval)
		if out.Daemon.DryRun {
			line += ", dry run"
		}
		if !out.Daemon.LastTick.IsZero() {
			line += ", last tick " + when(out.Daemon.LastTick, c.now())
		}
		fmt.Fprintln(c.stdout, printable.Escape(line))
	}
	return nil
}

func (c *opCommand) printJSON(v any) error {
	enc := json.NewEncoder(c.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func stampOrDash(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// when formats t as RFC 3339 with how far it is from now: "... (in 5m)",
// "... (3m ago)".
func when(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := t.Sub(now).Round(time.Second)
	rel := "now"
	switch {
	case d > 0:
		rel = "in " + short(d)
	case d < 0:
		rel = short(-d) + " ago"
	}
	return t.UTC().Format(time.RFC3339) + " (" + rel + ")"
}

// short renders d with at most two units: 2h5m, 3m20s, 45s, 3d4h.
func short(d time.Duration) string {
	if d >= 48*time.Hour {
		days := d / (24 * time.Hour)
		return fmt.Sprintf("%dd%dh", days, (d-days*24*time.Hour)/time.Hour)
	}
	s := d.Round(time.Second).String()
	if d >= time.Hour {
		s = d.Round(time.Minute).String()
		s = strings.TrimSuffix(s, "0s")
	}
	return s
}
