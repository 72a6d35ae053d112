package reconcile

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/agentlab/terraform-provider-agentlab/internal/privileges"
	"github.com/agentlab/terraform-provider-agentlab/internal/pve"
)

// TestForbiddenNamesThePrivileges: when Proxmox VE answers 403 (here to the
// clone task list, which needs Sys.Audit on /nodes), the log line names what
// the reaper's token needs, from internal/privileges, and the role command;
// other errors do not.
func TestForbiddenNamesThePrivileges(t *testing.T) {
	for _, tc := range []struct {
		name    string
		err     error
		wantFix bool
	}{
		{"403", &pve.APIError{Method: "GET", Path: "/nodes/pve/tasks", Status: 403, Message: "Permission check failed (/nodes/pve, Sys.Audit)"}, true},
		{"500", &pve.APIError{Method: "GET", Path: "/nodes/pve/tasks", Status: 500, Message: "got timeout"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			h := newHarness(t, Options{OrphanGrace: 10 * time.Minute, Logger: slog.New(slog.NewTextHandler(&buf, nil))})
			h.pve.addPlaceholder(130)
			h.pve.tasksErr = tc.err
			h.tick()
			h.clock.Advance(time.Minute) // the placeholder is seen again: the task list is read
			h.tick()
			var line string
			for l := range strings.SplitSeq(buf.String(), "\n") {
				if strings.Contains(l, "cannot list the clone tasks") {
					line = l
				}
			}
			if line == "" {
				t.Fatalf("no warning about the clone task list in:\n%s", buf.String())
			}
			ps := privileges.Reaper()
			wants := []string{privileges.ByPath(ps), privileges.RoleCommand(privileges.ReaperRole, ps), "docs/reaper.md"}
			for _, want := range wants {
				// The text handler quotes the value: compare without quotes.
				if got := strings.Contains(strings.ReplaceAll(line, `\"`, `"`), want); got != tc.wantFix {
					t.Errorf("log line contains %q = %v; want %v:\n%s", want, got, tc.wantFix, line)
				}
			}
		})
	}
}
