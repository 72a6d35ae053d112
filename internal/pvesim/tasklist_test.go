package pvesim_test

import (
	"slices"
	"testing"
	"time"

	"github.com/agentlab/terraform-provider-agentlab/internal/pvesim"
	"github.com/agentlab/terraform-provider-agentlab/internal/pvesim/pvesimtest"
)

// TestTaskListAsPVE checks GET /nodes/{node}/tasks against what pve-manager's
// PVE/API2/Tasks.pm answers: the active part (running workers, status
// "RUNNING", saved "0", no endtime) first, then the archive, most recently
// ended first, each with its endtime and exit status; filters before start
// and limit; total counting every task that passed the filters.
func TestTaskListAsPVE(t *testing.T) {
	sim := pvesimtest.Start(t, func(o *pvesim.Options) {
		o.Latency = pvesim.Latency{LinkedClone: time.Hour}
	})
	// Finished: a start that fails (template), a resize that succeeds.
	failed := data(t, sim, "POST", "/nodes/pve/qemu/9000/status/start", "").(string)
	upid := data(t, sim, "POST", "/nodes/pve/qemu/9000/clone", "newid=101").(string) // runs for an hour
	waitFor(t, func() bool { _, ok := sim.Server.VM(101); return ok })
	// A full clone takes the zero FullClone duration: it is done at once.
	okTask := data(t, sim, "POST", "/nodes/pve/qemu/9000/clone", "newid=102&full=1").(string)
	type row struct{ upid, status string }
	list := func(query string) ([]row, int) {
		t.Helper()
		var out struct {
			Data  []map[string]any `json:"data"`
			Total int              `json:"total"`
		}
		doJSON(t, sim, "GET", "/nodes/pve/tasks"+query, "", "", &out)
		var rows []row
		for _, m := range out.Data {
			for _, k := range []string{"pid", "pstart", "starttime"} {
				if jsonType(m[k]) != "number" {
					t.Errorf("%s: %s[%s] = %v; want a number", query, m["upid"], k, m[k])
				}
			}
			if m["user"] != "root@pam" || m["tokenid"] != "test" {
				t.Errorf("%s: user %v tokenid %v; want root@pam and test", query, m["user"], m["tokenid"])
			}
			st, _ := m["status"].(string)
			switch {
			case st == "RUNNING":
				if m["saved"] != "0" {
					t.Errorf("%s: running %s saved = %#v; want \"0\"", query, m["upid"], m["saved"])
				}
				if _, ok := m["endtime"]; ok {
					t.Errorf("%s: running %s has an endtime", query, m["upid"])
				}
			default:
				if jsonType(m["endtime"]) != "number" {
					t.Errorf("%s: finished %s endtime = %v; want a number", query, m["upid"], m["endtime"])
				}
				if _, ok := m["saved"]; ok {
					t.Errorf("%s: archived %s has saved", query, m["upid"])
				}
			}
			rows = append(rows, row{m["upid"].(string), st})
		}
		return rows, out.Total
	}
	running := row{upid, "RUNNING"}
	failedRow := row{failed, "you can't start a vm if it's a template"}
	okRow := row{okTask, "OK"}
	tests := []struct {
		query string
		want  []row
		total int
	}{
		{"?source=active", []row{running}, 1},
		{"", []row{okRow, failedRow}, 2}, // archive by default, last ended first
		{"?source=archive", []row{okRow, failedRow}, 2},
		{"?source=all", []row{running, okRow, failedRow}, 3},
		{"?source=all&errors=1", []row{running, failedRow}, 2}, // running is "unknown", not "ok"
		{"?source=all&statusfilter=ok", []row{okRow}, 1},
		{"?source=all&statusfilter=error,unknown", []row{running, failedRow}, 2},
		{"?source=all&limit=0", nil, 3},
		{"?source=all&start=1&limit=1", []row{okRow}, 3},
		{"?source=all&typefilter=qmclone", []row{running, okRow}, 2},
		{"?source=all&vmid=9000&userfilter=ROOT", []row{running, okRow, failedRow}, 3},
		{"?source=all&userfilter=someone", nil, 0},
	}
	for _, tt := range tests {
		got, total := list(tt.query)
		if !slices.Equal(got, tt.want) || total != tt.total {
			t.Errorf("GET /nodes/pve/tasks%s = %v, total %d; want %v, total %d", tt.query, got, total, tt.want, tt.total)
		}
	}
}
