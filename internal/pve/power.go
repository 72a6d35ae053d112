package pve

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// VMStatus is a guest's current state (GET .../status/current).
type VMStatus struct {
	VMID      int
	Name      string
	Status    string // "running" or "stopped"
	QMPStatus string // finer state from QEMU, e.g. "paused"
	Lock      string
	Uptime    time.Duration
	PID       int
	CPUs      int
	MaxMem    int64 // bytes
	Mem       int64 // bytes
	Agent     bool  // the guest agent is enabled in the config
}

// Running reports whether the guest runs (paused counts as running).
func (s VMStatus) Running() bool { return s.Status == "running" }

// Status reads a guest's current state.
func (c *Client) Status(ctx context.Context, ref VMRef) (VMStatus, error) {
	if err := ref.validate(); err != nil {
		return VMStatus{}, err
	}
	var raw struct {
		VMID      flexInt `json:"vmid"`
		Name      string  `json:"name"`
		Status    string  `json:"status"`
		QMPStatus string  `json:"qmpstatus"`
		Lock      string  `json:"lock"`
		Uptime    flexInt `json:"uptime"`
		PID       flexInt `json:"pid"`
		CPUs      flexInt `json:"cpus"`
		MaxMem    flexInt `json:"maxmem"`
		Mem       flexInt `json:"mem"`
		Agent     flexInt `json:"agent"`
	}
	if err := c.get(ctx, pathf("/nodes/%s/qemu/%s/status/current", ref.Node, ref.VMID), nil, &raw); err != nil {
		return VMStatus{}, fmt.Errorf("status of %s: %w", ref, err)
	}
	st := VMStatus{
		VMID: int(raw.VMID), Name: raw.Name, Status: raw.Status, QMPStatus: raw.QMPStatus, Lock: raw.Lock,
		Uptime: time.Duration(raw.Uptime) * time.Second, PID: int(raw.PID), CPUs: int(raw.CPUs),
		MaxMem: int64(raw.MaxMem), Mem: int64(raw.Mem), Agent: raw.Agent == 1,
	}
	if st.VMID == 0 {
		st.VMID = ref.VMID
	}
	return st, nil
}

// statusTask runs POST .../status/{action} and waits for its task, retrying
// transient failures. ignore lists error texts that mean the guest is
// already in the wanted state.
func (c *Client) statusTask(ctx context.Context, ref VMRef, action string, form url.Values, ignore ...string) error {
	if err := ref.validate(); err != nil {
		return err
	}
	r := request{method: http.MethodPost, path: pathf("/nodes/%s/qemu/%s/status/%s", ref.Node, ref.VMID, action), form: form}
	if r.form == nil {
		r.form = url.Values{}
	}
	err := c.withRetry(ctx, action+" "+ref.String(), func(ctx context.Context) error {
		_, err := c.runTask(ctx, r)
		if err != nil && matchesAny(err, ignore) {
			return nil
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("%s %s: %w", action, ref, err)
	}
	return nil
}

// matchesAny reports whether err's PVE text (API message or task exit
// status) contains one of texts.
func matchesAny(err error, texts []string) bool {
	var s string
	var ae *APIError
	var te *TaskError
	switch {
	case errors.As(err, &ae):
		s = ae.text()
	case errors.As(err, &te):
		s = te.ExitStatus
	default:
		return false
	}
	s = strings.ToLower(s)
	for _, t := range texts {
		if strings.Contains(s, t) {
			return true
		}
	}
	return false
}

// Start starts a guest and waits until PVE reports it started. A guest
// that already runs is fine.
func (c *Client) Start(ctx context.Context, ref VMRef) error {
	begun := c.clock.Now()
	if err := c.statusTask(ctx, ref, "start", nil, "already running"); err != nil {
		return err
	}
	c.boots.started(ref, begun) // WaitForIP paces its polls from here
	return nil
}

// Stop stops a guest immediately (like pulling the plug) and waits. A
// stopped guest is fine.
func (c *Client) Stop(ctx context.Context, ref VMRef) error {
	return c.statusTask(ctx, ref, "stop", nil, "not running")
}

// Shutdown asks the guest to shut down (ACPI or guest agent) and waits up to
// timeout, after which PVE stops it (forceStop). If the shutdown task fails
// for another reason, Shutdown falls back to Stop. A stopped guest is fine.
func (c *Client) Shutdown(ctx context.Context, ref VMRef, timeout time.Duration) error {
	secs := int(timeout / time.Second)
	if secs < 1 {
		secs = 1
	}
	form := url.Values{"timeout": {strconv.Itoa(secs)}, "forceStop": {"1"}}
	err := c.statusTask(ctx, ref, "shutdown", form, "not running")
	if err == nil || ctx.Err() != nil || IsNotFound(err) {
		return err
	}
	c.log.Warn("pve: shutdown failed, stopping", "vm", ref.String(), "err", err)
	if serr := c.Stop(ctx, ref); serr != nil {
		return fmt.Errorf("%w; stop after failed shutdown: %w", err, serr)
	}
	return nil
}
