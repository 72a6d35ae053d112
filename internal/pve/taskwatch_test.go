package pve

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"
)

// stepClock is a Clock whose time moves only when the test steps it to the
// next timer's deadline, so a test decides when each poll happens.
type stepClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []stepTimer
	added  chan struct{}
}

type stepTimer struct {
	at time.Time
	ch chan time.Time
}

func newStepClock() *stepClock {
	return &stepClock{now: time.Unix(1_800_000_000, 0), added: make(chan struct{}, 1)}
}

func (c *stepClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *stepClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.now
		return ch
	}
	c.timers = append(c.timers, stepTimer{at: c.now.Add(d), ch: ch})
	select {
	case c.added <- struct{}{}:
	default:
	}
	return ch
}

// step moves time to the earliest timer and fires it; false when none waits.
func (c *stepClock) step() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.timers) == 0 {
		return false
	}
	sort.Slice(c.timers, func(i, j int) bool { return c.timers[i].at.Before(c.timers[j].at) })
	t := c.timers[0]
	c.timers = c.timers[1:]
	if t.at.After(c.now) {
		c.now = t.at
	}
	t.ch <- c.now
	return true
}

// run steps the clock until done is closed.
func (c *stepClock) run(done <-chan struct{}) {
	for {
		select {
		case <-done:
			return
		default:
		}
		if c.step() {
			continue
		}
		select {
		case <-done:
			return
		case <-c.added:
		}
	}
}

// taskNode is a node with tasks that end at set times of a stepClock. It
// answers the task list with source=all as PVE does (the running tasks,
// status "RUNNING", then the finished ones with their endtime and exit
// status, filtered by since) and each task's status, and counts both.
type taskNode struct {
	t   *testing.T
	clk *stepClock
	srv *httptest.Server

	mu    sync.Mutex
	ends  map[string]time.Time // by upid
	exits map[string]string
	// others are running tasks of other users listed before ours.
	others int
	// maxItems cuts the list short after this many entries (0: the limit).
	maxItems     int
	lists, reads int
	// unlisted, when set, keeps finished tasks out of the list (not a PVE
	// answer: the watcher then reads their status).
	unlisted bool
	// noStatus lists finished tasks with an endtime but no status.
	noStatus bool
	// since is the since parameter of the last list request.
	since string
	// listErr, when set, answers the list request number n (from 1).
	listErr func(n int, w http.ResponseWriter) bool
}

func newTaskNode(t *testing.T, clk *stepClock) *taskNode {
	n := &taskNode{t: t, clk: clk, ends: map[string]time.Time{}, exits: map[string]string{}}
	n.srv = httptest.NewServer(http.HandlerFunc(n.serve))
	t.Cleanup(n.srv.Close)
	return n
}

// add registers a task of type typ ending after d from now and returns its UPID.
func (n *taskNode) add(typ string, d time.Duration, exit string) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	upid := fmt.Sprintf("UPID:pve:%08X:00000001:6500%04X:%s:100:root@pam!test:", len(n.ends)+1, len(n.ends)+1, typ)
	n.ends[upid] = n.clk.Now().Add(d)
	n.exits[upid] = exit
	return upid
}

func (n *taskNode) counts() (lists, reads int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.lists, n.reads
}

func (n *taskNode) serve(w http.ResponseWriter, r *http.Request) {
	now := n.clk.Now()
	n.mu.Lock()
	defer n.mu.Unlock()
	if r.URL.Path == "/api2/json/nodes/pve/tasks" {
		n.lists++
		if n.listErr != nil && n.listErr(n.lists, w) {
			return
		}
		q := r.URL.Query()
		if q.Get("source") != "all" {
			n.t.Errorf("got source %q; want all", q.Get("source"))
		}
		n.since = q.Get("since")
		since, err := strconv.ParseInt(q.Get("since"), 10, 64)
		if err != nil {
			n.t.Errorf("got since %q; want the oldest watched task's start", q.Get("since"))
		}
		limit, err := strconv.Atoi(q.Get("limit"))
		if err != nil || limit <= 0 {
			n.t.Errorf("got limit %q; want a positive number (PVE lists 50 by default, none with 0)", q.Get("limit"))
		}
		if n.maxItems > 0 {
			limit = min(limit, n.maxItems)
		}
		list := []map[string]any{}
		for i := range n.others {
			list = append(list, map[string]any{"upid": fmt.Sprintf("UPID:pve:%08X:00000001:64000000:vzdump::backup@pve:", 0x10000+i), "status": "RUNNING"})
		}
		var archive []map[string]any
		for upid, end := range n.ends {
			if u, _ := ParseUPID(upid); u.StartTime.Unix() < since {
				continue
			}
			switch {
			case now.Before(end):
				list = append(list, map[string]any{"upid": upid, "status": "RUNNING", "saved": "0"})
			case n.unlisted:
			case n.noStatus:
				archive = append(archive, map[string]any{"upid": upid, "endtime": end.Unix()})
			default:
				archive = append(archive, map[string]any{"upid": upid, "status": n.exits[upid], "endtime": end.Unix()})
			}
		}
		list = append(list, archive...)
		if len(list) > limit {
			list = list[:limit]
		}
		b, _ := json.Marshal(list)
		writeData(w, string(b))
		return
	}
	n.reads++
	for upid, end := range n.ends {
		if r.URL.Path != "/api2/json/nodes/pve/tasks/"+upid+"/status" {
			continue
		}
		if now.Before(end) {
			writeData(w, fmt.Sprintf(`{"upid":%q,"status":"running"}`, upid))
			return
		}
		writeData(w, fmt.Sprintf(`{"upid":%q,"status":"stopped","exitstatus":%q}`, upid, n.exits[upid]))
		return
	}
	writeRaw(n.t, w, 400, "no such task", `{"data":null}`)
}

// waitAll runs WaitTask for each upid at once while stepping the clock, and
// returns when each wait ended (on the clock) and its error.
func waitAll(t *testing.T, c *Client, clk *stepClock, upids []string) ([]time.Time, []error) {
	t.Helper()
	ends := make([]time.Time, len(upids))
	errs := make([]error, len(upids))
	var wg sync.WaitGroup
	w := c.watcher("pve")
	watches := make([]*taskWatch, len(upids))
	for i, upid := range upids {
		u, _ := ParseUPID(upid)
		watches[i] = w.watch(upid, u.Type) // all watched at the same instant
	}
	for i, upid := range upids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			wt := watches[i]
			<-wt.done
			w.unwatch(wt)
			ends[i] = wt.result.at
			if errs[i] = wt.result.err; errs[i] != nil {
				return
			}
			// what WaitTask does next
			u, _ := ParseUPID(upid)
			st := TaskStatus{Status: "stopped", ExitStatus: wt.result.exit}
			if st.ExitStatus == "" {
				st, errs[i] = c.TaskStatus(context.Background(), upid)
			}
			if errs[i] == nil {
				_, errs[i] = c.taskOutcome(u, upid, st, time.Time{})
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	clk.run(done)
	return ends, errs
}

func newWatchClient(t *testing.T, n *taskNode, clk *stepClock) *Client {
	t.Helper()
	c, err := New(context.Background(), Config{Endpoint: n.srv.URL, APIToken: testToken, HTTPClient: n.srv.Client(), Clock: clk,
		Retry: RetryPolicy{MaxAttempts: 3, BaseDelay: 10 * time.Millisecond, MaxDelay: 10 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestTaskWatcherSharesPolls(t *testing.T) {
	clk := newStepClock()
	n := newTaskNode(t, clk)
	c := newWatchClient(t, n, clk)
	start := clk.Now()
	durs := []time.Duration{10 * time.Millisecond, 200 * time.Millisecond, 300 * time.Millisecond, time.Second,
		1500 * time.Millisecond, 1500 * time.Millisecond, 1500 * time.Millisecond, 3 * time.Second, 20 * time.Second, 90 * time.Second}
	var upids []string
	for i, d := range durs {
		upids = append(upids, n.add(fmt.Sprintf("type%d", i), d, "OK"))
	}
	lists0, _ := n.counts()
	ends, errs := waitAll(t, c, clk, upids)
	for i, d := range durs {
		if errs[i] != nil {
			t.Errorf("task of %v: %v", d, errs[i])
		}
		overshoot := ends[i].Sub(start) - d
		if bound := max(50*time.Millisecond, d/20); overshoot < 0 || overshoot > bound {
			t.Errorf("task of %v: got overshoot %v; want within [0, %v]", d, overshoot, bound)
		}
	}
	lists, reads := n.counts()
	lists -= lists0
	// one task of 90 s alone costs about 25 polls in its first second and
	// ln(90)/ln(1.04) after: the nine shorter tasks must ride along
	if limit := 25 + 120; lists > limit {
		t.Errorf("got %d list polls for %d tasks; want at most %d, what the longest task costs alone", lists, len(durs), limit)
	}
	// the list gives each task's exit status: no status is read
	if reads != 0 {
		t.Errorf("got %d status reads; want none", reads)
	}
	t.Logf("%d tasks: %d list polls", len(durs), lists)
}

func TestTaskWatcherLearnsDurations(t *testing.T) {
	clk := newStepClock()
	n := newTaskNode(t, clk)
	c := newWatchClient(t, n, clk)
	tests := []struct {
		dur       time.Duration
		maxPolls  int
		overshoot time.Duration
	}{
		{1500 * time.Millisecond, 40, 50 * time.Millisecond}, // not seen before: the plain schedule
		{1500 * time.Millisecond, 3, 75 * time.Millisecond},
		{1600 * time.Millisecond, 6, 80 * time.Millisecond},
		{1500 * time.Millisecond, 3, 75 * time.Millisecond},
		// much faster than before: late by the old expectation at first,
		// which shrinks faster with each early task
		{400 * time.Millisecond, 1, 1200 * time.Millisecond},
		{400 * time.Millisecond, 1, 1200 * time.Millisecond},
		{400 * time.Millisecond, 1, 1200 * time.Millisecond},
		{400 * time.Millisecond, 1, 1200 * time.Millisecond},
		{400 * time.Millisecond, 1, 600 * time.Millisecond},
		{400 * time.Millisecond, 8, 300 * time.Millisecond},
		{400 * time.Millisecond, 8, 50 * time.Millisecond},
		{400 * time.Millisecond, 3, 50 * time.Millisecond},
		{400 * time.Millisecond, 3, 50 * time.Millisecond},
		{400 * time.Millisecond, 3, 50 * time.Millisecond},
		{400 * time.Millisecond, 3, 50 * time.Millisecond},
	}
	for i, tt := range tests {
		before, _ := n.counts()
		start := clk.Now()
		upid := n.add("qmclone", tt.dur, "OK")
		ends, errs := waitAll(t, c, clk, []string{upid})
		if errs[0] != nil {
			t.Fatalf("wait %d: %v", i, errs[0])
		}
		after, _ := n.counts()
		polls := after - before
		overshoot := ends[0].Sub(start) - tt.dur
		if polls > tt.maxPolls {
			t.Errorf("wait %d (%v): got %d list polls; want at most %d", i, tt.dur, polls, tt.maxPolls)
		}
		if overshoot < 0 || overshoot > tt.overshoot {
			t.Errorf("wait %d (%v): got overshoot %v; want within [0, %v]", i, tt.dur, overshoot, tt.overshoot)
		}
	}
}

func TestTaskWatcherStopsWhenIdle(t *testing.T) {
	clk := newStepClock()
	n := newTaskNode(t, clk)
	c := newWatchClient(t, n, clk)
	upid := n.add("qmstart", 300*time.Millisecond, "OK")
	if _, errs := waitAll(t, c, clk, []string{upid}); errs[0] != nil {
		t.Fatal(errs[0])
	}
	w := c.watcher("pve")
	w.mu.Lock()
	running, watched := w.stop != nil, len(w.tasks)
	w.mu.Unlock()
	if running || watched != 0 {
		t.Fatalf("got loop running %v with %d watches; want the loop stopped with none", running, watched)
	}
	before, _ := n.counts()
	for clk.step() {
	}
	if after, _ := n.counts(); after != before {
		t.Errorf("got %d list polls after the last wait; want none", after-before)
	}

	// a cancelled wait ends its watch too, and the loop with it
	upid = n.add("qmstart", time.Hour, "OK")
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := c.WaitTask(ctx, upid)
		errc <- err
	}()
	<-clk.added // the loop plans its first poll
	clk.step()
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v; want context.Canceled", err)
	}
	w.mu.Lock()
	running, watched = w.stop != nil, len(w.tasks)
	w.mu.Unlock()
	if running || watched != 0 {
		t.Errorf("after cancel: got loop running %v with %d watches; want stopped with none", running, watched)
	}
}

func TestTaskWatcherListAnswers(t *testing.T) {
	for _, tc := range []struct {
		name               string
		unlisted, noStatus bool
		reads              int
	}{
		{"exit status from the list", false, false, 0},
		{"an ended task without status: its status is read", false, true, 1},
		{"a task the list leaves out: its status is read", true, false, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := newStepClock()
			n := newTaskNode(t, clk)
			n.unlisted, n.noStatus = tc.unlisted, tc.noStatus
			c := newWatchClient(t, n, clk)
			n.add("qmclone", time.Hour, "OK") // older, not watched
			upid := n.add("qmstart", 100*time.Millisecond, "VM 100 already running")
			_, errs := waitAll(t, c, clk, []string{upid})
			var te *TaskError
			if !errors.As(errs[0], &te) || te.ExitStatus != "VM 100 already running" {
				t.Fatalf("got %v; want the task's error", errs[0])
			}
			if _, reads := n.counts(); reads != tc.reads {
				t.Errorf("got %d status reads; want %d", reads, tc.reads)
			}
			if u, _ := ParseUPID(upid); n.since != strconv.FormatInt(u.StartTime.Unix(), 10) {
				t.Errorf("got since=%s; want the watched task's start %d", n.since, u.StartTime.Unix())
			}
		})
	}
	t.Run("a list as long as the limit proves nothing", func(t *testing.T) {
		clk := newStepClock()
		n := newTaskNode(t, clk)
		n.others = 150 // more than the first limit: ours are cut off
		c := newWatchClient(t, n, clk)
		start := clk.Now()
		upid := n.add("qmstart", time.Second, "OK")
		ends, errs := waitAll(t, c, clk, []string{upid})
		if errs[0] != nil {
			t.Fatal(errs[0])
		}
		if got := ends[0].Sub(start); got < time.Second {
			t.Errorf("got the task finished after %v; want not before its end at 1s", got)
		}
		w := c.watcher("pve")
		if w.limit <= 150 {
			t.Errorf("got limit %d; want it raised above the 151 active tasks", w.limit)
		}
	})
}

func TestTaskWatcherErrors(t *testing.T) {
	t.Run("transient list failures are tolerated", func(t *testing.T) {
		clk := newStepClock()
		n := newTaskNode(t, clk)
		n.listErr = func(k int, w http.ResponseWriter) bool {
			if k <= 2 {
				writeRaw(t, w, 596, "Connection timed out", "")
				return true
			}
			return false
		}
		c := newWatchClient(t, n, clk)
		upid := n.add("qmstart", 100*time.Millisecond, "OK")
		if _, errs := waitAll(t, c, clk, []string{upid}); errs[0] != nil {
			t.Fatalf("got %v; want success after two failed polls", errs[0])
		}
	})
	t.Run("failures in a row end every wait", func(t *testing.T) {
		clk := newStepClock()
		n := newTaskNode(t, clk)
		n.listErr = func(int, http.ResponseWriter) bool { return false }
		n.listErr = func(_ int, w http.ResponseWriter) bool {
			writeRaw(t, w, 596, "Connection timed out", "")
			return true
		}
		c := newWatchClient(t, n, clk)
		a, b := n.add("qmstart", time.Second, "OK"), n.add("qmclone", time.Second, "OK")
		w := c.watcher("pve")
		wa, wb := w.watch(a, "qmstart"), w.watch(b, "qmclone")
		done := make(chan struct{})
		go func() { <-wa.done; <-wb.done; close(done) }()
		clk.run(done)
		for _, wt := range []*taskWatch{wa, wb} {
			var ae *APIError
			if !errors.As(wt.result.err, &ae) || ae.Status != 596 {
				t.Errorf("got %v; want the 596", wt.result.err)
			}
			w.unwatch(wt)
		}
		if lists, _ := n.counts(); lists != 3 {
			t.Errorf("got %d list polls; want 3 (the retry policy's attempts)", lists)
		}
	})
	t.Run("a node without the list: status polls", func(t *testing.T) {
		clk := newStepClock()
		n := newTaskNode(t, clk)
		n.listErr = func(_ int, w http.ResponseWriter) bool {
			writeRaw(t, w, 501, "Method 'GET /nodes/pve/tasks' not implemented", `{"data":null}`)
			return true
		}
		c := newWatchClient(t, n, clk)
		for i := range 2 {
			upid := n.add("qmstart", 300*time.Millisecond, "OK")
			errc := make(chan error, 1)
			go func() {
				_, err := c.WaitTask(context.Background(), upid)
				errc <- err
			}()
			done := make(chan struct{})
			go func() {
				if err := <-errc; err != nil {
					t.Errorf("wait %d: %v", i, err)
				}
				close(done)
			}()
			clk.run(done)
		}
		lists, reads := n.counts()
		if lists != 1 || reads < 2 {
			t.Errorf("got %d list and %d status requests; want the list asked once, then status polls", lists, reads)
		}
	})
}
