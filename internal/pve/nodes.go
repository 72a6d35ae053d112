package pve

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// StorageInfo is one storage of a node, as /nodes/{node}/storage lists it.
type StorageInfo struct {
	Storage string   // e.g. "local"
	Type    string   // "dir", "lvmthin", "nfs", ...
	Content []string // e.g. ["iso", "vztmpl", "backup"]
	Active  bool
}

// Storages lists the storages of node that hold content of the given type
// ("" for every storage), e.g. "iso".
func (c *Client) Storages(ctx context.Context, node, content string) ([]StorageInfo, error) {
	q := url.Values{}
	if content != "" {
		q.Set("content", content)
	}
	var raw []struct {
		Storage string  `json:"storage"`
		Type    string  `json:"type"`
		Content string  `json:"content"`
		Active  flexInt `json:"active"`
	}
	if err := c.get(ctx, pathf("/nodes/%s/storage", node), q, &raw); err != nil {
		return nil, fmt.Errorf("list storages of %s: %w", node, err)
	}
	out := make([]StorageInfo, 0, len(raw))
	for _, r := range raw {
		s := StorageInfo{Storage: r.Storage, Type: r.Type, Active: r.Active != 0}
		if r.Content != "" {
			s.Content = strings.Split(r.Content, ",")
		}
		out = append(out, s)
	}
	return out, nil
}

// ActiveTasks lists the tasks running on node, of type typ ("" for every
// type, e.g. "qmclone").
func (c *Client) ActiveTasks(ctx context.Context, node, typ string) ([]TaskStatus, error) {
	return c.activeTasks(ctx, node, typ, 0)
}

// activeTasks lists the tasks running on node, of type typ ("" for every
// type) and about guest vmid (0 for every guest).
func (c *Client) activeTasks(ctx context.Context, node, typ string, vmid int) ([]TaskStatus, error) {
	q := url.Values{"source": {"active"}}
	if typ != "" {
		q.Set("typefilter", typ)
	}
	if vmid != 0 {
		q.Set("vmid", strconv.Itoa(vmid))
	}
	var raw []struct {
		TaskStatus
		EndTime flexInt `json:"endtime"`
	}
	if err := c.get(ctx, pathf("/nodes/%s/tasks", node), q, &raw); err != nil {
		return nil, fmt.Errorf("list active tasks of %s: %w", node, err)
	}
	// A running task's status is "RUNNING" (an empty one counts too); a task that
	// ended but could not be archived stays listed with its exit status as
	// status and an endtime: it does not run.
	out := make([]TaskStatus, 0, len(raw))
	for _, e := range raw {
		st := e.TaskStatus
		if st.Status != "RUNNING" && (st.Status != "" || e.EndTime != 0) {
			continue
		}
		st.Status = "running"
		out = append(out, st)
	}
	return out, nil
}
