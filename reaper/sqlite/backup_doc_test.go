package sqlite

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentlab/terraform-provider-agentlab/reaper"
)

// backupCommands returns the sqlite3 command lines of the operator guide's
// backup procedure, as written (for the paths of a host).
func backupCommands(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "operator-guide.md"))
	if err != nil {
		t.Fatal(err)
	}
	var cmds []string
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "install -d -m 0700 /var/backups/agentlab") ||
			strings.HasPrefix(line, "sqlite3 /var/lib/agentlab/reaper.db \".backup ") ||
			strings.HasPrefix(line, "sqlite3 /var/backups/agentlab/") {
			cmd, _, _ := strings.Cut(line, " # ") // a trailing comment
			cmds = append(cmds, strings.TrimSpace(cmd))
		}
	}
	if len(cmds) != 3 {
		t.Fatalf("docs/operator-guide.md: found %d of the 3 backup command lines (install -d, sqlite3 .backup, integrity_check): %q", len(cmds), cmds)
	}
	return cmds
}

// TestOperatorGuideBackup runs the operator guide's online backup, word for
// word but for the paths, against a database the store holds open with its
// latest commits still in the write-ahead log, then restores the copy as the
// guide says (the WAL files of the old database removed) and finds every
// event and keep record in it.
func TestOperatorGuideBackup(t *testing.T) {
	if _, err := exec.LookPath("sqlite3"); err != nil {
		t.Skip("sqlite3 is not installed (Debian: apt-get install sqlite3); it runs the documented backup")
	}
	cmds := backupCommands(t)
	ctx := context.Background()
	dir := t.TempDir()
	live := filepath.Join(dir, "lib", "reaper.db")
	backups := filepath.Join(dir, "backups")

	db := openDB(t, live)
	for i := range 50 {
		if err := db.AddEvents(ctx, reaper.Event{Time: t0, VMID: 100 + i, Node: "pve", Kind: reaper.KindKeep,
			Decision: reaper.DecisionDone, Reason: "before the backup", Actor: reaper.ActorReaper}); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.SetKept(ctx, 142, true, t0, "operator@unix", reaper.Event{Time: t0, VMID: 142, Node: "pve",
		Kind: reaper.KindKeep, Decision: reaper.DecisionDone, Reason: "kept", Actor: "operator@unix"}); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(live + "-wal"); err != nil || fi.Size() == 0 {
		t.Fatalf("the commits are not in the write-ahead log (%v); the test would not show the backup reads it", err)
	}

	var out []byte
	for _, c := range cmds {
		c = strings.ReplaceAll(c, "/var/lib/agentlab/reaper.db", live)
		c = strings.ReplaceAll(c, "/var/backups/agentlab", backups)
		cmd := exec.CommandContext(ctx, "sh", "-ec", c)
		b, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", c, err, b)
		}
		out = append(out, b...)
	}
	if got := strings.TrimSpace(string(out)); got != "ok" {
		t.Errorf("the documented commands printed %q; want the integrity check's ok", got)
	}
	copies, err := filepath.Glob(filepath.Join(backups, "reaper-*.db"))
	if err != nil || len(copies) != 1 {
		t.Fatalf("backups: %v, %v; want one reaper-DATE.db", copies, err)
	}
	// The daemon still runs: a commit after the backup is not in it.
	if err := db.AddEvents(ctx, reaper.Event{Time: t0, VMID: 999, Node: "pve", Kind: reaper.KindKeep,
		Decision: reaper.DecisionDone, Reason: "after the backup", Actor: reaper.ActorReaper}); err != nil {
		t.Fatal(err)
	}

	// Restore: a fresh directory stands for the stopped host's; the old
	// WAL files are gone, the copy is installed 0600 as reaper.db.
	restoreDir := filepath.Join(dir, "restored")
	if err := os.MkdirAll(restoreDir, 0o700); err != nil {
		t.Fatal(err)
	}
	restored := filepath.Join(restoreDir, "reaper.db")
	b, err := os.ReadFile(copies[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(restored, b, 0o600); err != nil {
		t.Fatal(err)
	}
	rdb := openDB(t, restored)
	evs, err := rdb.Events(ctx, reaper.EventFilter{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	vmids := map[int]bool{}
	for _, e := range evs {
		vmids[e.VMID] = true
	}
	for i := range 50 {
		if !vmids[100+i] {
			t.Errorf("the restored database lacks the event of VM %d", 100+i)
		}
	}
	if vmids[999] {
		t.Error("the restored database holds an event written after the backup")
	}
	kept, err := rdb.Kept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !kept[142] {
		t.Errorf("the restored database lost the keep record of VM 142: %v", kept)
	}
}
