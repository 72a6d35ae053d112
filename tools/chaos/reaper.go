package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const (
	// reaperInterval is the reaper's tick in the campaign.
	reaperInterval = 500 * time.Millisecond
	// reaperTicks is how many ticks the reaper gets to clean up (with no
	// orphan grace, a prune takes one or two; the wait ends once all is gone).
	reaperTicks = 12
)

// reaperPhase runs agentlab-reaper over what terraform left: it lists the
// orphans, the harness plays the operator for clone placeholders (which only
// root can unlock) and ends the leases of sandboxes terraform lost track of
// (a killed terraform cannot save a VMID it was creating; the lease is what
// catches those), then waits for the reaper to remove everything.
func (r *round) reaperPhase(ctx context.Context) error {
	r.led.setPhase(phaseReaper)
	r.poll(ctx)
	if len(r.led.alive()) == 0 && !r.hasISOs(ctx) {
		return nil
	}
	bin := filepath.Join(r.o.BinDir, "agentlab-reaper")
	dir := filepath.Join(r.dir, "reaper")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	cfg, err := r.writeReaperConfig(dir, true)
	if err != nil {
		return err
	}
	if out, err := exec.Command(bin, "serve", "--check", "--config", cfg).CombinedOutput(); err != nil {
		r.rep.Gaps["agentlab-reaper refuses prune: true / policy.orphan_grace (no prune)"]++
		r.logf("reaper: no prune: %s", firstLine(string(out)))
		if cfg, err = r.writeReaperConfig(dir, false); err != nil {
			return err
		}
		if out, err := exec.Command(bin, "serve", "--check", "--config", cfg).CombinedOutput(); err != nil {
			return fmt.Errorf("%w: agentlab-reaper serve --check: %v\n%s", errHarness, err, out)
		}
	}
	logPath := filepath.Join(dir, "reaper.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logFile.Close()
	cmd := exec.Command(bin, "serve", "--config", cfg, "--log-format", "json", "--log-level", "debug")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("%w: start agentlab-reaper: %v", errHarness, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}()
	ticked := func(n int) bool {
		b, _ := os.ReadFile(logPath)
		return bytes.Count(b, []byte(`"msg":"tick"`)) >= n
	}
	if !r.until(ctx, 30*time.Second, exited, func() bool { return ticked(1) }) {
		return fmt.Errorf("%w: agentlab-reaper did not tick in 30s; its log is %s", errHarness, logPath)
	}
	reaper := func(args ...string) ([]byte, error) {
		return exec.Command(bin, append(args, "--config", cfg)...).CombinedOutput()
	}

	// What the reaper lists as orphans.
	listed := map[int]string{}
	out, err := reaper("orphans", "--json")
	if err != nil {
		r.rep.Gaps["agentlab-reaper has no orphans command"]++
		r.logf("reaper: orphans: %s", firstLine(string(out)))
	} else {
		listed = parseOrphans(out)
	}
	var placeholders []int
	for _, v := range r.led.alive() {
		if kind, ok := listed[v.VMID]; ok {
			r.led.mark(v.VMID, func(l *vmLife) { l.ReaperListed = true })
			if v.Last.Lock == "clone" || strings.Contains(kind, "placeholder") {
				placeholders = append(placeholders, v.VMID)
			}
			continue
		}
		if v.Last.tagged() && v.Last.Lock == "" {
			// A sandbox terraform lost track of: its lease ends it. The
			// campaign cannot wait an hour, so it ends the lease now.
			r.led.mark(v.VMID, func(l *vmLife) { l.LeaseEnded = true })
			if out, err := reaper("renew", strconv.Itoa(v.VMID), "1s", "--force"); err != nil {
				if out2, err2 := reaper("renew", strconv.Itoa(v.VMID), "1s"); err2 != nil {
					r.logf("reaper: renew %d 1s: %s / %s", v.VMID, firstLine(string(out)), firstLine(string(out2)))
				}
			}
		}
	}
	if len(placeholders) > 0 {
		// The listing tells the operator to run qm unlock N && qm destroy N.
		if err := r.unlock(ctx, placeholders, true); err != nil {
			r.fail("operator qm unlock && qm destroy %v: %v", placeholders, err)
		}
		r.led.setPhase(phaseReaper)
	}
	from := 0
	if b, err := os.ReadFile(logPath); err == nil {
		from = bytes.Count(b, []byte(`"msg":"tick"`))
	}
	// Done when nothing is left, or after reaperTicks ticks.
	r.until(ctx, 30*time.Second, exited, func() bool {
		r.poll(ctx)
		return (len(r.led.alive()) == 0 && !r.hasISOs(ctx)) || ticked(from+reaperTicks)
	})
	// The reaper may prune an orphan before `orphans` lists it: its log says.
	if b, err := os.ReadFile(logPath); err == nil {
		for _, id := range prunedVMs(b) {
			r.led.markGone(id, phaseReaper, func(l *vmLife) { l.ReaperListed = true })
		}
	}
	return nil
}

// prunedVMs returns the VMIDs of the "orphan pruned" lines of the reaper's
// JSON log (seed ISOs, which carry a volid, are not VMs).
func prunedVMs(log []byte) []int {
	var ids []int
	for _, line := range bytes.Split(log, []byte("\n")) {
		var e struct {
			Msg   string `json:"msg"`
			VMID  int    `json:"vmid"`
			Volid string `json:"volid"`
		}
		if json.Unmarshal(line, &e) != nil || e.Msg != "orphan pruned" || e.Volid != "" || e.VMID == 0 {
			continue
		}
		ids = append(ids, e.VMID)
	}
	return ids
}

// until checks cond every 200 ms (it may call the API: the simulator has
// few workers) until it holds, timeout passes or stop closes.
func (r *round) until(ctx context.Context, timeout time.Duration, stop <-chan struct{}, cond func() bool) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		if cond() {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-stop:
			return cond()
		case <-deadline.C:
			return false
		case <-t.C:
		}
	}
}

func (r *round) hasISOs(ctx context.Context) bool {
	isos, err := r.seedISOs(ctx)
	return err != nil || len(isos) > 0
}

// parseOrphans reads `agentlab-reaper orphans --json`: a list (or an object
// holding one) of entries with a vmid and a kind. It returns the kind of each
// orphan VM by VMID (seed ISOs, which carry a volid, are not VMs).
func parseOrphans(b []byte) map[int]string {
	var list []map[string]any
	if err := json.Unmarshal(b, &list); err != nil {
		var obj map[string]json.RawMessage
		if json.Unmarshal(b, &obj) == nil {
			for _, v := range obj {
				if json.Unmarshal(v, &list) == nil && len(list) > 0 {
					break
				}
			}
		}
	}
	out := map[int]string{}
	for _, e := range list {
		if volid, _ := e["volid"].(string); volid != "" {
			continue // a seed ISO: its vmid names the VM it was made for, which is gone
		}
		var id int
		switch v := e["vmid"].(type) {
		case float64:
			id = int(v)
		case string:
			id, _ = strconv.Atoi(v)
		}
		if id == 0 {
			continue
		}
		kind, _ := e["kind"].(string)
		out[id] = kind
	}
	return out
}

// writeReaperConfig writes the reaper's configuration; prune turns on
// pruning proven orphans with no grace.
func (r *round) writeReaperConfig(dir string, prune bool) (string, error) {
	tokenFile := filepath.Join(dir, "pve-token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		return "", err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "proxmox:\n  endpoint: %q\n  api_token_file: %q\n  insecure: true\n", r.sim.endpoint, tokenFile)
	fmt.Fprintf(&b, "database: %q\ninterval: %s\n", filepath.Join(dir, "reaper.db"), reaperInterval)
	if prune {
		b.WriteString("prune: true\npolicy:\n  orphan_grace: 0s\n")
	}
	fmt.Fprintf(&b, "control:\n  socket: %q\nguest:\n  listen: \"127.0.0.1:0\"\nmetrics:\n  listen: \"\"\n", filepath.Join(dir, "reaper.sock"))
	fmt.Fprintf(&b, "artifacts:\n  dir: %q\n", filepath.Join(dir, "artifacts"))
	path := filepath.Join(dir, "reaper.yaml")
	return path, os.WriteFile(path, []byte(b.String()), 0o600)
}
