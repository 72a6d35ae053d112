package pve

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// UPID is a parsed PVE task id,
// "UPID:node:pid:pstart:starttime:type:id:user:".
type UPID struct {
	Node      string
	PID       int64
	PStart    int64
	StartTime time.Time
	Type      string // e.g. qmclone
	ID        string // e.g. the source VMID of a clone
	User      string // e.g. root@pam!agentlab
}

// ParseUPID parses a task id.
func ParseUPID(s string) (UPID, error) {
	f := strings.Split(s, ":")
	if len(f) < 8 || f[0] != "UPID" || f[1] == "" {
		return UPID{}, fmt.Errorf("invalid task id %q", s)
	}
	pid, err1 := strconv.ParseInt(f[2], 16, 64)
	pstart, err2 := strconv.ParseInt(f[3], 16, 64)
	start, err3 := strconv.ParseInt(f[4], 16, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return UPID{}, fmt.Errorf("invalid task id %q: pid, pstart and starttime must be hex", s)
	}
	return UPID{
		Node:      f[1],
		PID:       pid,
		PStart:    pstart,
		StartTime: time.Unix(start, 0),
		Type:      f[5],
		ID:        f[6],
		User:      f[7],
	}, nil
}

// TaskStatus is the answer of /nodes/{node}/tasks/{upid}/status.
type TaskStatus struct {
	UPID   string `json:"upid"`
	Node   string `json:"node"`
	Type   string `json:"type"`
	ID     string `json:"id"`
	User   string `json:"user"`
	Status string `json:"status"` // "running" or "stopped"
	// ExitStatus is set once stopped: "OK", "WARNINGS: N" or the error text.
	ExitStatus string `json:"exitstatus"`
}

// Running reports whether the task has not finished yet.
func (s TaskStatus) Running() bool { return s.Status == "running" }

// OK reports whether a finished task succeeded (possibly with warnings).
func (s TaskStatus) OK() bool {
	return s.ExitStatus == "OK" || strings.HasPrefix(s.ExitStatus, "WARNINGS")
}

// Task polling (of the active task list for each watched task, or of one
// task's status where the list is not served): the interval grows with the
// time already waited, so the
// delay between a task's end and its detection stays below
// max(50 ms, 5 % of the wait) (the interval plus one round trip), while a long
// task costs few requests. The first taskPollFastFor are polled every
// taskPollMin, for the many tasks that end at once; after that the interval
// is never below taskPollFloor, which halves the polls of second-long tasks
// (a linked clone, a start) against polling every 20 ms.
const (
	taskPollMin      = 20 * time.Millisecond
	taskPollFastFor  = 100 * time.Millisecond
	taskPollFloor    = 40 * time.Millisecond
	taskPollMax      = 10 * time.Second
	taskPollFraction = 0.04
)

// taskPollInterval returns the delay before the next status poll after
// elapsed time spent waiting.
func taskPollInterval(elapsed time.Duration) time.Duration {
	floor := taskPollFloor
	if elapsed < taskPollFastFor {
		floor = taskPollMin
	}
	d := time.Duration(float64(elapsed) * taskPollFraction)
	return min(max(d, floor), taskPollMax)
}

// TaskStatus reads a task's status once (with retries of transient errors).
func (c *Client) TaskStatus(ctx context.Context, upid string) (TaskStatus, error) {
	u, err := ParseUPID(upid)
	if err != nil {
		return TaskStatus{}, err
	}
	var st TaskStatus
	err = c.get(ctx, pathf("/nodes/%s/tasks/%s/status", u.Node, upid), nil, &st)
	return st, err
}

// WaitTask waits until the task upid has finished. The wait is shared: the
// client's watcher of the task's node polls the node's task list for all
// tasks waited on there (see taskwatch.go), which gives each finished task's
// exit status too; only a task the list cannot account for has its status
// read. A task that fails returns
// its status and a *TaskError carrying the exit status. Transient polling
// failures are tolerated up to the retry policy's attempt count in a row;
// the context bounds the whole wait. A node that does not list its active
// tasks gets one status poll loop per task instead.
func (c *Client) WaitTask(ctx context.Context, upid string) (TaskStatus, error) {
	u, err := ParseUPID(upid)
	if err != nil {
		return TaskStatus{}, err
	}
	start := c.clock.Now()
	w := c.watcher(u.Node)
	for {
		t := w.watch(upid, u.Type)
		select {
		case <-ctx.Done():
			w.unwatch(t)
			return TaskStatus{}, &waitError{UPID: upid, Err: ctx.Err()}
		case <-t.done:
			w.unwatch(t)
		}
		r := t.result
		switch {
		case errors.Is(r.err, errTaskListUnsupported):
			return c.pollTaskStatus(ctx, u, upid, start)
		case r.err != nil:
			return TaskStatus{}, &waitError{UPID: upid, Err: r.err}
		case r.exit != "":
			st := TaskStatus{UPID: upid, Node: u.Node, Type: u.Type, ID: u.ID, User: u.User, Status: "stopped", ExitStatus: r.exit}
			return c.taskOutcome(u, upid, st, start)
		}
		var st TaskStatus
		if err := c.get(ctx, pathf("/nodes/%s/tasks/%s/status", u.Node, upid), nil, &st); err != nil {
			return TaskStatus{}, &waitError{UPID: upid, Err: err}
		}
		if st.Running() {
			// left the list but still running: never seen from PVE, but
			// watching again costs little
			c.log.Debug("pve task left the active list while running", "upid", upid)
			continue
		}
		return c.taskOutcome(u, upid, st, start)
	}
}

// taskOutcome turns a finished task's status into WaitTask's result.
func (c *Client) taskOutcome(u UPID, upid string, st TaskStatus, start time.Time) (TaskStatus, error) {
	st.UPID = upid
	if st.Node == "" {
		st.Node = u.Node
	}
	c.log.Debug("pve task finished", "upid", upid, "exitstatus", st.ExitStatus, "waited", c.clock.Now().Sub(start))
	if st.OK() {
		return st, nil
	}
	exit := st.ExitStatus
	if exit == "" {
		exit = "task stopped without exit status"
	}
	return st, &TaskError{UPID: upid, Node: u.Node, Type: u.Type, ID: u.ID, ExitStatus: exit}
}

// pollTaskStatus waits for one task by polling its status: fast at first
// (every 20 ms), then backing off in proportion to the time waited.
func (c *Client) pollTaskStatus(ctx context.Context, u UPID, upid string, start time.Time) (TaskStatus, error) {
	path := pathf("/nodes/%s/tasks/%s/status", u.Node, upid)
	failures := 0
	for {
		var st TaskStatus
		err := c.send(ctx, request{method: "GET", path: path}, &st)
		switch {
		case err == nil:
			failures = 0
			if !st.Running() {
				return c.taskOutcome(u, upid, st, start)
			}
		case ctx.Err() != nil:
			return TaskStatus{}, &waitError{UPID: upid, Err: ctx.Err()}
		case IsTransient(err):
			failures++
			if failures >= c.retry.MaxAttempts {
				return TaskStatus{}, &waitError{UPID: upid, Err: err}
			}
			c.log.Warn("pve: task status poll failed, polling on", "upid", upid, "err", err)
		default:
			return TaskStatus{}, &waitError{UPID: upid, Err: err}
		}
		d := taskPollInterval(c.clock.Now().Sub(start))
		if failures > 0 {
			if b := c.backoff(failures); b > d {
				d = b
			}
		}
		if err := c.sleep(ctx, d); err != nil {
			return TaskStatus{}, &waitError{UPID: upid, Err: err}
		}
	}
}
