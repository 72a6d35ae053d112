package pvesim

import (
	"cmp"
	"context"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"hash"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Tasks are PVE's worker processes: a call that starts one returns its UPID at
// once; the work runs in a goroutine owned by the Server (inline when its
// duration is zero, so with ZeroLatency a task has finished before the call
// that started it returns). Its status is "running" until the work returns,
// then "stopped" with exitstatus "OK" or the error text; its log ends with
// "TASK OK", "TASK WARNINGS: N" (exitstatus "WARNINGS: N", a success for
// clients) or "TASK ERROR: msg".

// maxTasks bounds the task history kept in memory and on disk.
const maxTasks = 5000

var upidRE = regexp.MustCompile(`^UPID:([a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?):([0-9A-Fa-f]{8}):([0-9A-Fa-f]{8,9}):([0-9A-Fa-f]{8}):([^:\s]+):([^:\s]*):([^:\s]+):$`)

// taskSpec describes a task to start.
type taskSpec struct {
	node, typ, id, user string
	// duration is the modelled run time; zero runs the work inline.
	duration time.Duration
	// lockedVMs are VMs whose config lock the task sets; a restart clears
	// them when the task was interrupted.
	lockedVMs []int
	// work does the task. It runs without Server.mu held.
	work func(tr *taskRun) error
}

// taskRun is the handle a task's work uses to log and wait.
type taskRun struct {
	s   *Server
	t   *task
	ctx context.Context
	// warnings counts lines logged with warnLocked; a task that ends without an
	// error but with warnings stops with exitstatus "WARNINGS: N", as in PVE.
	warnings int
}

// warnLocked logs a warning line ("WARN: ...") and counts it; s.mu is held.
func (tr *taskRun) warnLocked(format string, args ...any) {
	tr.t.Log = append(tr.t.Log, "WARN: "+fmt.Sprintf(format, args...))
	tr.warnings++
}

// logf appends a line to the task log.
func (tr *taskRun) logf(format string, args ...any) {
	line := fmt.Sprintf(format, args...)
	tr.s.mu.Lock()
	tr.t.Log = append(tr.t.Log, strings.Split(strings.TrimRight(line, "\n"), "\n")...)
	tr.s.mu.Unlock()
}

// sleep waits d of modelled work; it fails when the server closes.
func (tr *taskRun) sleep(d time.Duration) error {
	if !tr.s.sleep(tr.ctx, d) {
		return fail("interrupted by signal")
	}
	return nil
}

// startTask creates a task and starts its work; it returns the UPID.
func (s *Server) startTask(spec taskSpec) (string, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return "", errorf(503, "server shutting down")
	}
	now := s.clock.Now()
	pid := s.st.NextPID
	s.st.NextPID++
	if s.st.NextPID > 0x3fffff {
		s.st.NextPID = 0x1000
	}
	// pstart: the process start in clock ticks (100 Hz) since an arbitrary boot.
	pstart := (now.UnixNano()/1e7)%0xffffffff + 1
	user := spec.user
	upid := fmt.Sprintf("UPID:%s:%08X:%08X:%08X:%s:%s:%s:", spec.node, pid, pstart, now.Unix(), spec.typ, spec.id, user)
	t := &task{
		UPID: upid, Node: spec.node, PID: pid, PStart: pstart, StartTime: now.Unix(),
		Type: spec.typ, ID: spec.id, User: user, Running: true, LockedVMs: spec.lockedVMs,
		done: make(chan struct{}),
	}
	s.st.Tasks = append(s.st.Tasks, t)
	if len(s.st.Tasks) > maxTasks {
		s.st.Tasks = append([]*task(nil), s.st.Tasks[len(s.st.Tasks)-maxTasks:]...)
	}
	s.stats.tasks++
	s.markDirtyLocked()
	inline := spec.duration <= 0
	if !inline {
		s.wg.Add(1)
	}
	s.mu.Unlock()

	tr := &taskRun{s: s, t: t, ctx: s.ctx}
	run := func() {
		err := spec.work(tr)
		if err != nil && s.ctx.Err() != nil {
			// Interrupted by Close: left "running" for the next start to clean up.
			return
		}
		s.mu.Lock()
		warnings := tr.warnings
		s.mu.Unlock()
		s.finishTask(t, warnings, err)
	}
	if inline {
		run()
	} else {
		go func() {
			defer s.wg.Done()
			run()
		}()
	}
	return upid, nil
}

func (s *Server) finishTask(t *task, warnings int, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t.Running = false
	t.EndTime = s.clock.Now().Unix()
	if t.done != nil {
		close(t.done)
	}
	if err != nil {
		msg := strings.TrimRight(err.Error(), "\n")
		if i := strings.LastIndex(msg, "\n"); i >= 0 {
			t.Log = append(t.Log, strings.Split(msg[:i], "\n")...)
			msg = msg[i+1:]
		}
		t.ExitStatus = msg
		t.Log = append(t.Log, "TASK ERROR: "+msg)
	} else if warnings > 0 {
		t.ExitStatus = fmt.Sprintf("WARNINGS: %d", warnings)
		t.Log = append(t.Log, "TASK "+t.ExitStatus)
	} else {
		t.ExitStatus = "OK"
		t.Log = append(t.Log, "TASK OK")
	}
	s.markDirtyLocked()
}

// findTask returns the task with that UPID (s.mu held).
func (s *Server) findTaskLocked(upid string) *task {
	for i := len(s.st.Tasks) - 1; i >= 0; i-- {
		if s.st.Tasks[i].UPID == upid {
			return s.st.Tasks[i]
		}
	}
	return nil
}

// lookupTask validates the {upid} parameter like PVE and returns a copy of the task.
func (c *call) lookupTask() (task, error) {
	upid := c.str("upid")
	if !upidRE.MatchString(upid) {
		return task{}, paramErr1("upid", "unable to parse worker upid")
	}
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	t := c.s.findTaskLocked(upid)
	if t == nil {
		return task{}, paramErr1("upid", "no such task")
	}
	cp := *t
	cp.Log = append([]string(nil), t.Log...)
	return cp, nil
}

// taskUserFields splits a task user into user and tokenid as PVE reports them.
func taskUserFields(m map[string]any, user string) {
	if u, tok, ok := strings.Cut(user, "!"); ok {
		m["user"] = u
		m["tokenid"] = tok
		return
	}
	m["user"] = user
}

func handleTaskStatus(c *call) (any, error) {
	t, err := c.lookupTask()
	if err != nil {
		return nil, err
	}
	m := map[string]any{
		"upid": t.UPID, "node": t.Node, "pid": t.PID, "pstart": t.PStart,
		"starttime": t.StartTime, "type": t.Type, "id": t.ID,
	}
	taskUserFields(m, t.User)
	if t.Running {
		m["status"] = "running"
	} else {
		m["status"] = "stopped"
		m["exitstatus"] = t.ExitStatus
	}
	return m, nil
}

func handleTaskLog(c *call) (any, error) {
	t, err := c.lookupTask()
	if err != nil {
		return nil, err
	}
	start := c.integer("start", 0)
	limit := c.integer("limit", 50)
	lines := t.Log
	if len(lines) == 0 {
		lines = []string{"no content"}
	}
	items := []map[string]any{}
	for i := start; i < len(lines) && len(items) < limit; i++ {
		items = append(items, map[string]any{"n": i + 1, "t": lines[i]})
	}
	return listWithTotal{items: items, total: len(lines)}, nil
}

// GET /nodes/{node}/tasks as pve-manager's PVE/API2/Tasks.pm answers it.
// source=active lists the node's active file (/var/log/pve/tasks/active):
// the running workers, oldest first, each with status "RUNNING" and saved
// "0" (a finished task is archived as soon as its worker exits, so it is not
// there). source=archive reads the archive (/var/log/pve/tasks/index, then
// index.1) backwards, most recently ended first, each task with its endtime
// and exit status. source=all is both, the active part first. The filters
// apply before start and limit; total counts every task that passed them,
// limit 0 lists none. errors keeps every task whose status is not "ok",
// running ones included (they are "unknown" to statusfilter). userfilter is
// a case-insensitive substring of the task's user (without the token id).
// Reading the archive costs Service.TaskArchiveEntry per entry read, the
// whole archive every time (PVE filters while it reads; it never stops
// early), up to taskArchiveLines entries.
func handleTaskList(c *call) (any, error) {
	node := c.str("node")
	if err := c.checkNode(); err != nil {
		return nil, err
	}
	source := c.str("source")
	if source == "" {
		source = "archive"
	}
	start := c.integer("start", 0)
	limit := c.integer("limit", 50)
	vmid := c.str("vmid")
	typ := c.str("typefilter")
	userFilter := strings.ToLower(c.str("userfilter"))
	statuses := map[string]bool{"ok": true, "warning": true, "error": true, "unknown": true}
	switch {
	case c.flag("errors"):
		statuses["ok"] = false
	case c.has("statusfilter"):
		statuses = map[string]bool{}
		for _, f := range strings.FieldsFunc(c.str("statusfilter"), func(r rune) bool {
			return r == ',' || r == ';' || r == 0 || r == ' ' || r == '\t' || r == '\n'
		}) {
			statuses[strings.ToLower(f)] = true
		}
	}
	since, until := c.integer("since", 0), c.integer("until", 0)
	count := 0
	items := []map[string]any{}
	// keep applies PVE's filter to one task and reports whether it is listed.
	keep := func(t *task, status string) bool {
		user, _, _ := strings.Cut(t.User, "!")
		switch {
		case userFilter != "" && !strings.Contains(strings.ToLower(user), userFilter),
			typ != "" && t.Type != typ,
			vmid != "" && t.ID != vmid,
			c.has("since") && t.StartTime < int64(since),
			c.has("until") && t.StartTime > int64(until),
			!statuses[taskStatusType(status)]:
			return false
		}
		count++
		return count > start && len(items) < limit
	}
	entry := func(t *task) map[string]any {
		m := map[string]any{
			"upid": t.UPID, "node": t.Node, "pid": t.PID, "pstart": t.PStart,
			"starttime": t.StartTime, "type": t.Type, "id": t.ID,
		}
		taskUserFields(m, t.User)
		return m
	}
	c.s.mu.Lock()
	if source == "active" || source == "all" {
		for _, t := range c.s.st.Tasks {
			if t.Node == node && t.Running && keep(t, "") {
				m := entry(t)
				m["status"] = "RUNNING"
				m["saved"] = "0"
				items = append(items, m)
			}
		}
	}
	read := 0
	if source != "active" {
		var archive []*task
		for i := len(c.s.st.Tasks) - 1; i >= 0; i-- {
			if t := c.s.st.Tasks[i]; t.Node == node && !t.Running {
				archive = append(archive, t)
			}
		}
		// The archive is in the order the tasks ended, read backwards
		// (within a second, the later started first).
		slices.SortStableFunc(archive, func(a, b *task) int { return cmp.Compare(b.EndTime, a.EndTime) })
		if len(archive) > taskArchiveLines {
			archive = archive[:taskArchiveLines]
		}
		read = len(archive)
		for _, t := range archive {
			if keep(t, t.ExitStatus) {
				m := entry(t)
				m["endtime"] = t.EndTime
				if t.ExitStatus != "" {
					m["status"] = t.ExitStatus
				}
				items = append(items, m)
			}
		}
	}
	c.s.mu.Unlock()
	if !c.s.sleep(c.r.Context(), time.Duration(read)*c.s.opts.Latency.Service.TaskArchiveEntry) {
		return nil, errorf(503, "server shutting down")
	}
	return listWithTotal{items: items, total: count}, nil
}

// taskArchiveLines is the most archived tasks a node keeps to list: PVE
// appends to /var/log/pve/tasks/index and renames it to index.1 past 50,000
// bytes, about 1,000 entries, so the two files hold up to about 2,000.
const taskArchiveLines = 2000

// taskStatusType classifies a task status as PVE's
// PVE::UPID::normalize_status_type does, for statusfilter and errors: a
// running task (no status yet) is "unknown".
func taskStatusType(status string) string {
	switch {
	case status == "", status == "unexpected status":
		return "unknown"
	case status == "OK":
		return "ok"
	case taskWarningsRE.MatchString(status):
		return "warning"
	}
	return "error"
}

var taskWarningsRE = regexp.MustCompile(`^WARNINGS: \d+$`)

// waitTask waits up to seconds for a task to stop and returns a copy of it.
func (s *Server) waitTask(r *http.Request, upid string, seconds int) (task, error) {
	s.mu.Lock()
	t := s.findTaskLocked(upid)
	if t == nil {
		s.mu.Unlock()
		return task{}, fail("no such task")
	}
	done := t.done
	s.mu.Unlock()
	if done != nil {
		timer := s.timers.NewTimer(time.Duration(seconds) * time.Second)
		defer timer.Stop()
		select {
		case <-done:
		case <-timer.C:
		case <-r.Context().Done():
		case <-s.ctx.Done():
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cp := *t
	return cp, nil
}

// fileHash computes a checksum as PVE's upload does.
func fileHash(algo string, data []byte) (string, error) {
	var h hash.Hash
	switch algo {
	case "md5":
		h = md5.New()
	case "sha1":
		h = sha1.New()
	case "sha224":
		h = sha256.New224()
	case "sha256":
		h = sha256.New()
	case "sha384":
		h = sha512.New384()
	case "sha512":
		h = sha512.New()
	default:
		return "", fail("unknown checksum algorithm '%s'", algo)
	}
	h.Write(data)
	return hex.EncodeToString(h.Sum(nil)), nil
}
