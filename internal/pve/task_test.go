package pve

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

const testUPID = "UPID:pve:00061CB3:010BA69C:64EFECB0:qmclone:9000:root@pam!test:"

func TestParseUPID(t *testing.T) {
	u, err := ParseUPID(testUPID)
	if err != nil {
		t.Fatal(err)
	}
	if u.Node != "pve" || u.PID != 0x61CB3 || u.PStart != 0x10BA69C || u.Type != "qmclone" || u.ID != "9000" || u.User != "root@pam!test" {
		t.Errorf("got %+v; want node pve, pid 0x61CB3, pstart 0x10BA69C, type qmclone, id 9000, user root@pam!test", u)
	}
	if got, want := u.StartTime.Unix(), int64(0x64EFECB0); got != want {
		t.Errorf("got start %d; want %d", got, want)
	}
	// 9-digit pstart
	if _, err := ParseUPID("UPID:n1:00001234:1010BA69C:64EFECB0:qmstart:100:root@pam:"); err != nil {
		t.Errorf("9-digit pstart: %v", err)
	}
	for _, bad := range []string{"", "UPID:", "XPID:pve:1:2:3:t:i:u:", "UPID:pve:zz:2:3:t:i:u:", "UPID::1:2:3:t:i:u:"} {
		if _, err := ParseUPID(bad); err == nil {
			t.Errorf("ParseUPID(%q): got nil error; want one", bad)
		}
	}
}

// taskServer serves one task that ends after dur of the clock's time with
// exit status exit: the node's task list (source=all: the task "RUNNING",
// then ended with its exit status) and the task's status, which the wait
// must not need. polls counts the requests.
func taskServer(t *testing.T, clk *virtualClock, start time.Time, dur time.Duration, exit string, polls *atomic.Int32) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		polls.Add(1)
		running := clk.Now().Sub(start) < dur
		switch r.URL.Path {
		case "/api2/json/nodes/pve/tasks":
			q := r.URL.Query()
			if got := q.Get("source"); got != "all" {
				t.Errorf("got source %q; want all", got)
			}
			if got := q.Get("since"); got != "1693445296" { // 0x64EFECB0
				t.Errorf("got since %q; want the task's start 1693445296", got)
			}
			if running {
				writeData(w, fmt.Sprintf(`[{"upid":%q,"node":"pve","type":"qmclone","id":"9000","status":"RUNNING","saved":"0"}]`, testUPID))
				return
			}
			writeData(w, fmt.Sprintf(`[{"upid":%q,"node":"pve","type":"qmclone","id":"9000","endtime":1693445300,"status":%q}]`, testUPID, exit))
		default:
			t.Errorf("got path %q; want the task list only", r.URL.Path)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestWaitTaskOvershoot(t *testing.T) {
	durations := []time.Duration{0, 5 * time.Millisecond, 30 * time.Millisecond, 200 * time.Millisecond,
		time.Second, 3 * time.Second, 20 * time.Second, 90 * time.Second, 10 * time.Minute, time.Hour}
	for _, dur := range durations {
		t.Run(dur.String(), func(t *testing.T) {
			clk := newVirtualClock()
			start := clk.Now()
			var polls atomic.Int32
			srv := taskServer(t, clk, start, dur, "OK", &polls)
			c, _ := newTestClient(t, srv, func(cfg *Config) { cfg.Clock = clk })
			st, err := c.WaitTask(context.Background(), testUPID)
			if err != nil {
				t.Fatalf("WaitTask: %v", err)
			}
			if !st.OK() || st.Running() {
				t.Errorf("got status %+v; want stopped OK", st)
			}
			overshoot := clk.Now().Sub(start) - dur
			bound := max(50*time.Millisecond, dur/20)
			if overshoot < 0 || overshoot > bound {
				t.Errorf("task of %v: got overshoot %v; want within [0, %v]", dur, overshoot, bound)
			}
			// the request rate is bounded: never more than one poll per 20 ms, and
			// long tasks need few polls
			n := int(polls.Load())
			if limit := 2 + int(dur/taskPollMin); n > limit {
				t.Errorf("task of %v: got %d polls; want at most %d (50/s)", dur, n, limit)
			}
			if dur >= 20*time.Second {
				if limit := 200 + int(dur/taskPollMax); n > limit {
					t.Errorf("task of %v: got %d polls; want at most %d", dur, n, limit)
				}
			}
			t.Logf("task of %v: %d polls, overshoot %v", dur, n, overshoot)
		})
	}
}

func TestWaitTaskResults(t *testing.T) {
	tests := []struct {
		name       string
		exit       string
		wantErr    bool
		transient  bool
		wantStatus string
	}{
		{"ok", "OK", false, false, "OK"},
		{"warnings", "WARNINGS: 2", false, false, "WARNINGS: 2"},
		{"failure", "VM 100 already running", true, false, "VM 100 already running"},
		{"lock timeout", "can't lock file '/var/lock/qemu-server/lock-9000.conf' - got timeout", true, true,
			"can't lock file '/var/lock/qemu-server/lock-9000.conf' - got timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newVirtualClock()
			var polls atomic.Int32
			srv := taskServer(t, clk, clk.Now(), 100*time.Millisecond, tt.exit, &polls)
			c, _ := newTestClient(t, srv, func(cfg *Config) { cfg.Clock = clk })
			st, err := c.WaitTask(context.Background(), testUPID)
			if st.ExitStatus != tt.wantStatus {
				t.Errorf("got exit status %q; want %q", st.ExitStatus, tt.wantStatus)
			}
			if (err != nil) != tt.wantErr {
				t.Fatalf("got error %v; want error %v", err, tt.wantErr)
			}
			if err == nil {
				return
			}
			var te *TaskError
			if !errors.As(err, &te) {
				t.Fatalf("got %T; want *TaskError", err)
			}
			if te.ExitStatus != tt.exit || te.Type != "qmclone" || te.ID != "9000" || te.Node != "pve" || te.UPID != testUPID {
				t.Errorf("got %+v; want exit %q, type qmclone, id 9000, node pve", te, tt.exit)
			}
			if got := IsTransient(err); got != tt.transient {
				t.Errorf("got IsTransient %v; want %v", got, tt.transient)
			}
		})
	}
}

func TestWaitTaskPollErrors(t *testing.T) {
	t.Run("transient poll failures are tolerated", func(t *testing.T) {
		var polls atomic.Int32
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch n := polls.Add(1); {
			case n == 1:
				writeRaw(t, w, 596, "Connection timed out", "")
			case n == 2:
				dropConnection(t, w)
			case strings.HasSuffix(r.URL.Path, "/tasks"):
				writeData(w, `[]`)
			default:
				writeData(w, `{"status":"stopped","exitstatus":"OK"}`)
			}
		}))
		t.Cleanup(srv.Close)
		c, _ := newTestClient(t, srv)
		if _, err := c.WaitTask(context.Background(), testUPID); err != nil {
			t.Fatalf("WaitTask: %v", err)
		}
		if got := polls.Load(); got != 4 {
			t.Errorf("got %d requests; want 4 (two failed list polls, a list poll, a status read)", got)
		}
	})
	t.Run("permanent poll failure ends the wait", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			writeRaw(t, w, 400, "no such task", `{"data":null}`)
		}))
		t.Cleanup(srv.Close)
		c, _ := newTestClient(t, srv)
		_, err := c.WaitTask(context.Background(), testUPID)
		var ae *APIError
		if !errors.As(err, &ae) || ae.Status != 400 {
			t.Fatalf("got %v; want the 400 error", err)
		}
		if IsTransient(err) {
			t.Errorf("got transient; want a wait failure never to be retried by re-issuing the operation")
		}
	})
	t.Run("context cancel ends the wait", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		var polls atomic.Int32
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if polls.Add(1) == 3 {
				cancel()
			}
			writeData(w, fmt.Sprintf(`[{"upid":%q,"status":"RUNNING"}]`, testUPID))
		}))
		t.Cleanup(srv.Close)
		c, _ := newTestClient(t, srv)
		_, err := c.WaitTask(ctx, testUPID)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("got %v; want context.Canceled", err)
		}
	})
	t.Run("invalid upid", func(t *testing.T) {
		c, err := New(context.Background(), Config{Endpoint: "https://pve:8006", APIToken: testToken})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.WaitTask(context.Background(), "not-a-upid"); err == nil {
			t.Error("got nil error; want one")
		}
	})
}

func TestTaskPollInterval(t *testing.T) {
	prev := time.Duration(0)
	for e := time.Duration(0); e < 2*time.Hour; e += 7 * time.Second / 3 {
		d := taskPollInterval(e)
		if d < taskPollMin || d > taskPollMax {
			t.Fatalf("elapsed %v: got interval %v; want within [%v, %v]", e, d, taskPollMin, taskPollMax)
		}
		if d < prev {
			t.Fatalf("elapsed %v: got interval %v after %v; want non-decreasing", e, d, prev)
		}
		if d > max(50*time.Millisecond, e/20) {
			t.Fatalf("elapsed %v: got interval %v; want at most max(50ms, 5%%)", e, d)
		}
		prev = d
	}
}
