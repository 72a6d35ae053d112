package pve

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"time"
)

// Task waits share one watcher per node. Instead of one status poll loop per
// task, a watcher polls the node's task list,
// GET /nodes/{node}/tasks?source=all&since=T, for every task the client waits
// on there, T being the start of the oldest of them: one answer tells which
// are still running and the exit status of those that have ended, so no
// task's status is read at all.
//
// What PVE answers there (pve-manager PVE/API2/Tasks.pm, pve-common
// PVE/RESTEnvironment.pm): first the entries of /var/log/pve/tasks/active
// that are not yet archived ("saved"), a running task with status "RUNNING"
// and no endtime; then the archive (/var/log/pve/tasks/index, then index.1),
// last ended first, each task with its endtime and exit status as status. A
// worker is written to the active file before the call that forked it
// returns its UPID, and when it exits, the daemon's SIGCHLD handler
// (active_workers) archives it: it moves from the active part to the
// archive in one step under the file lock, and PVE reads the active part
// first, so a task it lists in neither has not been started there. If
// archiving fails, a finished task stays in the active part with its exit
// status and endtime. since (PVE 7.0 and later) filters on the start time;
// limit defaults to 50 (0 lists nothing), and a token without Sys.Audit on
// the node sees its own tasks only. The archive is read whole on every such
// call, which costs the node more than the active part alone, but less than
// a status read per task on pvedaemon, the pool that serves clones and
// starts.

// Poll cadence: each watched task is due for a poll on its own schedule (see
// taskWatch.due); a watcher polls when the first of its tasks is due, and one
// answer serves every task. A task type whose durations the client has seen
// before on the node is first polled when it is expected to have ended.
const (
	// taskListLimit is the number of active tasks asked for at first; it
	// doubles whenever an answer may have been cut short.
	taskListLimit = 100
	// taskListLimitMax bounds it.
	taskListLimitMax = 10000
	// taskExpectLead is the fraction of a task type's expected duration
	// after which its first poll is due: all of it, since the expectation
	// is an upper bound that earlier tasks gave and that shrinks whenever a
	// task has ended before it (see durationLog.early).
	taskExpectLead = 1.0
)

// errTaskListUnsupported: the node does not answer the task list as asked
// (an old or partial implementation of the API, or PVE before 7.0, which
// refuses since); waits poll each task's status.
var errTaskListUnsupported = errors.New("node does not list its active tasks")

// taskWatchers holds a client's watchers, one per node.
type taskWatchers struct {
	mu    sync.Mutex
	nodes map[string]*taskWatcher
	// learned are the durations seen, by node and task type.
	learned *durationLog
}

func newTaskWatchers() *taskWatchers {
	return &taskWatchers{nodes: map[string]*taskWatcher{}, learned: newDurationLog()}
}

// watcher returns the node's watcher, creating it on first use.
func (c *Client) watcher(node string) *taskWatcher {
	ws := c.tasks
	ws.mu.Lock()
	defer ws.mu.Unlock()
	w := ws.nodes[node]
	if w == nil {
		w = &taskWatcher{c: c, node: node, learned: ws.learned, tasks: map[*taskWatch]struct{}{},
			kick: make(chan struct{}, 1), limit: taskListLimit}
		ws.nodes[node] = w
	}
	return w
}

// taskWatcher polls one node's task list while anyone waits on a task
// there. Its poll loop runs only then: the first watch starts it, and it
// stops when the last watch is removed.
type taskWatcher struct {
	c       *Client
	node    string
	learned *durationLog
	kick    chan struct{} // a new watch: plan the next poll again

	mu    sync.Mutex
	tasks map[*taskWatch]struct{}
	stop  context.CancelFunc // stops the running poll loop; nil when none runs
	limit int                // entries asked for per poll
	// unsupported is set once the node refused the task list for good.
	unsupported bool
}

// taskWatch is one task waited on.
type taskWatch struct {
	upid, typ string
	start     int64         // the task's start (Unix seconds) from its UPID; 0 unknown
	added     time.Time     // when the watch began, after the task had started
	expect    time.Duration // learned duration of this type on this node; 0 unknown
	polled    time.Time     // when the last poll that covered it was sent
	running   time.Time     // when the last poll that saw it running was sent
	done      chan struct{} // closed once result is set
	result    watchResult
}

// watchResult is how a watch ended.
type watchResult struct {
	// exit is the exit status when the list reported one (a finished task
	// not yet archived); empty means "read the task's status".
	exit string
	// at is when the poll that saw the task finished was sent.
	at  time.Time
	err error
}

// due returns when t should be polled next: at the task poll interval for
// its age after its last poll, but not before its expected duration.
func (t *taskWatch) due() time.Time {
	var next time.Time
	if t.polled.IsZero() {
		next = t.added.Add(taskPollMin)
	} else {
		next = t.polled.Add(taskPollInterval(t.polled.Sub(t.added)))
	}
	if t.expect > 0 {
		if lead := t.added.Add(time.Duration(float64(t.expect) * taskExpectLead)); next.Before(lead) {
			next = lead
		}
	}
	return next
}

// watch starts watching upid (of type typ) and returns its watch.
func (w *taskWatcher) watch(upid, typ string) *taskWatch {
	now := w.c.clock.Now()
	t := &taskWatch{upid: upid, typ: typ, added: now, expect: w.learned.expect(w.node, typ), done: make(chan struct{})}
	if u, err := ParseUPID(upid); err == nil {
		t.start = u.StartTime.Unix()
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.unsupported {
		t.result.err = errTaskListUnsupported
		close(t.done)
		return t
	}
	w.tasks[t] = struct{}{}
	if w.stop == nil {
		ctx, cancel := context.WithCancel(context.Background())
		w.stop = cancel
		go w.loop(ctx)
	} else {
		select {
		case w.kick <- struct{}{}:
		default:
		}
	}
	return t
}

// unwatch ends the watch of t (whether or not it has a result); the poll
// loop stops with the last watch.
func (w *taskWatcher) unwatch(t *taskWatch) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.tasks, t)
	if len(w.tasks) == 0 && w.stop != nil {
		w.stop()
		w.stop = nil
	}
}

// finishLocked sets t's result and ends its watch (w.mu held).
func (w *taskWatcher) finishLocked(t *taskWatch, r watchResult) {
	delete(w.tasks, t)
	t.result = r
	close(t.done)
	switch {
	case r.err != nil:
	case !t.running.IsZero():
		// The end lies between the last poll that saw it running and this
		// one; the later bound keeps the lead below the real duration.
		w.learned.add(w.node, t.typ, r.at.Sub(t.added))
	case t.expect > 0:
		// ended before its first poll, at the expected time: it may have
		// ended well before, so the expectation shrinks
		w.learned.early(w.node, t.typ, r.at.Sub(t.added))
	}
}

// nextDelay returns how long to wait before the next poll; ok is false when
// the loop of ctx must stop: nothing is watched any more (the loop is then
// marked stopped, so the next watch starts a new one) or ctx has ended.
func (w *taskWatcher) nextDelay(ctx context.Context, failures int) (d time.Duration, ok bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if ctx.Err() != nil {
		return 0, false
	}
	if len(w.tasks) == 0 {
		w.stop()
		w.stop = nil
		return 0, false
	}
	var first time.Time
	for t := range w.tasks {
		if due := t.due(); first.IsZero() || due.Before(first) {
			first = due
		}
	}
	d = first.Sub(w.c.clock.Now())
	if failures > 0 {
		d = max(d, w.c.backoff(failures))
	}
	return d, true
}

// loop polls until ctx ends (the last watch was removed).
func (w *taskWatcher) loop(ctx context.Context) {
	failures := 0
	for {
		d, ok := w.nextDelay(ctx, failures)
		if !ok {
			return
		}
		if d > 0 {
			select {
			case <-ctx.Done():
				return
			case <-w.kick:
				continue
			case <-w.c.clock.After(d):
			}
		}
		err := w.poll(ctx)
		switch {
		case err == nil:
			failures = 0
		case ctx.Err() != nil:
			return
		case IsTransient(err) && failures+1 < w.c.retry.MaxAttempts:
			failures++
			w.c.log.Warn("pve: task list poll failed, polling on", "node", w.node, "err", err)
		default:
			w.failAll(ctx, err)
			return
		}
	}
}

// listedTask is one entry of the task list.
type listedTask struct {
	UPID string `json:"upid"`
	// Status is "RUNNING" for a running task, the exit status for a
	// finished one.
	Status string `json:"status"`
	// EndTime is set once the task has ended (archived or not).
	EndTime flexInt `json:"endtime"`
}

// running reports whether the entry is a task still running: "RUNNING", or
// no status and no end (an entry of the active part).
func (a listedTask) running() bool {
	return a.Status == "RUNNING" || (a.Status == "" && a.EndTime == 0)
}

// poll reads the task list once and ends the watches of the tasks that have
// finished.
func (w *taskWatcher) poll(ctx context.Context) error {
	w.mu.Lock()
	limit := w.limit
	var since int64
	for t := range w.tasks {
		if t.start <= 0 {
			since = 0
			break
		}
		if since == 0 || t.start < since {
			since = t.start
		}
	}
	w.mu.Unlock()
	q := url.Values{"source": {"all"}, "limit": {strconv.Itoa(limit)}}
	if since > 0 {
		q.Set("since", strconv.FormatInt(since, 10))
	}
	sent := w.c.clock.Now()
	var list []listedTask
	err := w.c.send(ctx, request{method: http.MethodGet, path: pathf("/nodes/%s/tasks", w.node), query: q}, &list)
	if err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if ctx.Err() != nil {
		return ctx.Err() // stopped meanwhile: a newer loop owns the watches
	}
	// An answer as long as the limit may have left tasks out: those not in
	// it are not known to have finished.
	complete := len(list) < limit
	if !complete {
		w.limit = min(limit*2, taskListLimitMax)
	}
	listed := make(map[string]listedTask, len(list))
	for _, a := range list {
		if _, dup := listed[a.UPID]; !dup { // the active part comes first
			listed[a.UPID] = a
		}
	}
	for t := range w.tasks {
		if t.added.After(sent) {
			continue // watched after the request left: it says nothing of t
		}
		t.polled = sent
		a, ok := listed[t.upid]
		switch {
		case ok && a.running():
			t.running = sent
		case ok:
			// ended; an entry without a status has its status read
			w.finishLocked(t, watchResult{exit: a.Status, at: sent})
		case complete:
			// in neither part of a complete list: never seen from PVE;
			// its status read tells
			w.finishLocked(t, watchResult{at: sent})
		}
	}
	return nil
}

// failAll ends every watch with err. A node that does not serve the list
// (an API error that is not transient, such as 501) is remembered, so later
// waits poll task status directly.
func (w *taskWatcher) failAll(ctx context.Context, err error) {
	var ae *APIError
	unsupported := errors.As(err, &ae) && !IsTransient(err) && ae.Status != http.StatusUnauthorized && ae.Status != http.StatusForbidden
	w.mu.Lock()
	defer w.mu.Unlock()
	if ctx.Err() != nil {
		return
	}
	if unsupported {
		w.unsupported = true
		w.c.log.Warn("pve: node does not list active tasks, polling each task's status", "node", w.node, "err", err)
		err = errTaskListUnsupported
	}
	for t := range w.tasks {
		w.finishLocked(t, watchResult{err: err})
	}
	if w.stop != nil {
		w.stop()
		w.stop = nil
	}
}

// durationLog remembers the latest durations seen, by key, to predict the
// next one: the shortest of the last few, so a prediction rarely lies past
// the real end. A job that had ended when it was first looked at, at the
// predicted time, says only that it took no longer: each such job in a row
// records a guess shorter than the last (3 %, 6 %, 12 %, ... below the time
// it was looked at), so the prediction comes down fast when jobs got much
// faster; the guesses are dropped once a job is seen unfinished.
type durationLog struct {
	mu   sync.Mutex
	seen map[string][]loggedDuration
	// earlyRun counts, by key, the jobs in a row found ended at their
	// first look.
	earlyRun map[string]int
}

type loggedDuration struct {
	d     time.Duration
	guess bool // recorded by early
}

// durationLogSize is the number of durations kept per key.
const durationLogSize = 8

// durationShrink is the first step by which early shrinks a prediction.
const durationShrink = 0.03

func newDurationLog() *durationLog {
	return &durationLog{seen: map[string][]loggedDuration{}, earlyRun: map[string]int{}}
}

// add records a job that took at most d, seen unfinished before.
func (l *durationLog) add(node, kind string, d time.Duration) {
	k := node + "\x00" + kind
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.earlyRun[k] > 0 {
		delete(l.earlyRun, k)
		l.seen[k] = slices.DeleteFunc(l.seen[k], func(x loggedDuration) bool { return x.guess })
	}
	l.record(k, loggedDuration{d: d})
}

// early records a job found ended at its first look, after d.
func (l *durationLog) early(node, kind string, d time.Duration) {
	k := node + "\x00" + kind
	l.mu.Lock()
	defer l.mu.Unlock()
	n := min(l.earlyRun[k]+1, 5)
	l.earlyRun[k] = n
	l.record(k, loggedDuration{d: time.Duration(float64(d) * (1 - durationShrink*float64(int(1)<<(n-1)))), guess: true})
}

func (l *durationLog) record(k string, x loggedDuration) {
	s := append(l.seen[k], x)
	if len(s) > durationLogSize {
		s = s[len(s)-durationLogSize:]
	}
	l.seen[k] = s
}

// expect returns the predicted duration, 0 when none was seen.
func (l *durationLog) expect(node, kind string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.seen[node+"\x00"+kind]
	if len(s) == 0 {
		return 0
	}
	m := s[0].d
	for _, x := range s[1:] {
		m = min(m, x.d)
	}
	return m
}
