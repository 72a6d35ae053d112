package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"

	"github.com/agentlab/terraform-provider-agentlab/internal/egressrule"
	"github.com/agentlab/terraform-provider-agentlab/reaper/config"
	"github.com/agentlab/terraform-provider-agentlab/reaper/egress"
)

// newEgressFilter builds the egress filter from the configuration and
// checks, before the daemon starts, that nft runs and may load the table
// (nft -c needs CAP_NET_ADMIN too).
func newEgressFilter(ctx context.Context, cfg config.Config, log *slog.Logger, m egress.Metrics) (*egress.Filter, error) {
	fc, err := egressConfig(cfg)
	if err != nil {
		return nil, err
	}
	nft := egress.Nft{Command: []string{cfg.Egress.Nft}}
	if err := nft.Check(ctx, egress.Render(fc, nil, nil).Text); err != nil {
		return nil, fmt.Errorf("egress.enabled is true but the egress table cannot be loaded (the daemon needs nftables and CAP_NET_ADMIN): %w", err)
	}
	return egress.New(fc, nft, log, m), nil
}

// egressConfig turns the validated configuration into the filter's.
func egressConfig(cfg config.Config) (egress.Config, error) {
	e := cfg.Egress
	fc := egress.Config{Bridge: e.Bridge}
	var err error
	if fc.Subnet, err = netip.ParsePrefix(e.Subnet); err != nil {
		return fc, fmt.Errorf("egress.subnet: %w", err)
	}
	if fc.Resolver, err = netip.ParseAddr(e.Resolver); err != nil {
		return fc, fmt.Errorf("egress.resolver: %w", err)
	}
	if fc.Allow, err = egressrule.ParseList(e.Allow); err != nil {
		return fc, fmt.Errorf("egress.allow: %w", err)
	}
	if cfg.Guest.Listen != "" {
		host, port, err := net.SplitHostPort(cfg.Guest.Listen)
		if err != nil {
			return fc, fmt.Errorf("guest.listen: %w", err)
		}
		n, err := strconv.ParseUint(port, 10, 16)
		if err != nil {
			return fc, fmt.Errorf("guest.listen: port %q: %w", port, err)
		}
		addr := netip.IPv4Unspecified()
		if host != "" && host != "localhost" {
			if addr, err = netip.ParseAddr(host); err != nil {
				return fc, fmt.Errorf("guest.listen: %w", err)
			}
		}
		fc.Guest = netip.AddrPortFrom(addr, uint16(n))
	}
	return fc, nil
}

// egress prints the egress table the daemon applied.
func (c *opCommand) egress(ctx context.Context, args []string) error {
	fs := c.flags("egress", "--print [--json]")
	doPrint := fs.Bool("print", false, "print the nftables ruleset the daemon applied")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 || !*doPrint {
		fs.Usage()
		return errUsage
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	resp, err := cl.Egress(ctx)
	if err != nil {
		return c.explain(err)
	}
	if c.jsonOut {
		return c.printJSON(resp)
	}
	if !resp.Enabled {
		return errors.New("the egress filter is off: set egress.enabled: true in the configuration (see docs/egress.md)")
	}
	_, err = fmt.Fprint(c.stdout, resp.Ruleset)
	return err
}
