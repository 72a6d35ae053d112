package reapertest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Config describes an agentlab-reaper configuration for tests; zero fields
// take test-friendly values (1 s interval, no guest or metrics listener).
type Config struct {
	// Dir holds the database, the socket and the token files.
	Dir string
	// Endpoint and Token reach Proxmox VE.
	Endpoint, Token string
	// Insecure skips TLS verification.
	Insecure bool
	// Interval, Grace and WarnBefore are the loop's timings.
	Interval, Grace, WarnBefore time.Duration
	// DryRun sets dry_run.
	DryRun bool
	// GuestListen, MetricsListen and ControlListen are the TCP listeners ("" off).
	GuestListen, MetricsListen, ControlListen string
	// ControlToken is written to the control token file.
	ControlToken string
	// UserKeep, Prune, OrphanGrace and MaxLease set policy.user_keep, prune,
	// policy.orphan_grace and policy.max_lease (0: the defaults).
	UserKeep, Prune       bool
	OrphanGrace, MaxLease time.Duration
}

// Socket is the control socket's path.
func (c Config) Socket() string { return filepath.Join(c.Dir, "run", "reaper.sock") }

// Database is the database's path.
func (c Config) Database() string { return filepath.Join(c.Dir, "reaper.db") }

// Write writes the token files (mode 0600) and the configuration file, and
// returns the configuration file's path.
func (c Config) Write(tb testing.TB) string {
	tb.Helper()
	if c.Interval == 0 {
		c.Interval = time.Second
	}
	tokenFile := filepath.Join(c.Dir, "pve-token")
	if err := os.WriteFile(tokenFile, []byte(c.Token+"\n"), 0o600); err != nil {
		tb.Fatal(err)
	}
	controlFile := filepath.Join(c.Dir, "control-token")
	if c.ControlToken != "" {
		if err := os.WriteFile(controlFile, []byte(c.ControlToken+"\n"), 0o600); err != nil {
			tb.Fatal(err)
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "proxmox:\n  endpoint: %q\n  api_token_file: %q\n  insecure: %v\n", c.Endpoint, tokenFile, c.Insecure)
	fmt.Fprintf(&b, "database: %q\ninterval: %s\ngrace: %s\nwarn_before: %s\ndry_run: %v\n",
		c.Database(), c.Interval, c.Grace, c.WarnBefore, c.DryRun)
	fmt.Fprintf(&b, "control:\n  socket: %q\n  listen: %q\n  token_file: %q\n", c.Socket(), c.ControlListen, controlFile)
	fmt.Fprintf(&b, "guest:\n  listen: %q\nmetrics:\n  listen: %q\n", c.GuestListen, c.MetricsListen)
	fmt.Fprintf(&b, "artifacts:\n  dir: %q\n", filepath.Join(c.Dir, "artifacts"))
	fmt.Fprintf(&b, "prune: %v\npolicy:\n  user_keep: %v\n", c.Prune, c.UserKeep)
	if c.OrphanGrace != 0 {
		fmt.Fprintf(&b, "  orphan_grace: %s\n", c.OrphanGrace)
	}
	if c.MaxLease != 0 {
		fmt.Fprintf(&b, "  max_lease: %s\n", c.MaxLease)
	}
	path := filepath.Join(c.Dir, "reaper.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		tb.Fatal(err)
	}
	return path
}
