package pve

import (
	"context"
	"errors"
	"sync"
	"time"
)

// A pool of sandboxes cloned from one template would look the template up
// once per sandbox: one GET /cluster/resources each, the most expensive read
// a node serves (it walks every guest). FindTemplate remembers a template's
// entry for templateTTL and lets concurrent callers share one lookup. A
// template does not change into a VM (PVE cannot undo "convert to
// template"); it may move to another node or be deleted, and then the clone
// from the remembered node fails: the caller forgets the entry
// (ForgetTemplate), so the next attempt looks it up again.

// templateTTL is how long FindTemplate trusts a template's entry.
const templateTTL = time.Minute

// templateCache holds a client's template lookups, by VMID.
type templateCache struct {
	mu      sync.Mutex
	lookups map[int]*templateLookup
}

// templateLookup is one lookup, in flight until done is closed.
type templateLookup struct {
	done  chan struct{}
	at    time.Time // when it was answered
	entry VMEntry
	err   error
}

func newTemplateCache() *templateCache {
	return &templateCache{lookups: map[int]*templateLookup{}}
}

// FindTemplate looks up a guest by VMID like FindVM, for cloning it: a
// template's entry is remembered for a minute, and callers that ask while a
// lookup is in flight share its answer. Errors and guests that are not
// templates are not remembered.
func (c *Client) FindTemplate(ctx context.Context, vmid int) (VMEntry, error) {
	tc := c.templates
	for {
		tc.mu.Lock()
		l := tc.lookups[vmid]
		switch {
		case l == nil:
		case !isDone(l.done):
		case l.err == nil && l.entry.Template && c.clock.Now().Sub(l.at) < templateTTL:
		default:
			l = nil
		}
		if l == nil {
			l = &templateLookup{done: make(chan struct{})}
			tc.lookups[vmid] = l
			tc.mu.Unlock()
			l.entry, l.err = c.FindVM(ctx, vmid)
			l.at = c.clock.Now()
			close(l.done)
			if l.err != nil || !l.entry.Template {
				tc.forget(vmid, l)
			}
			return l.entry, l.err
		}
		tc.mu.Unlock()
		select {
		case <-l.done:
		case <-ctx.Done():
			return VMEntry{}, ctx.Err()
		}
		if errors.Is(l.err, context.Canceled) || errors.Is(l.err, context.DeadlineExceeded) {
			continue // the caller that looked gave up; look again
		}
		return l.entry, l.err
	}
}

// ForgetTemplate drops what FindTemplate remembers of vmid, e.g. after a
// clone from it failed.
func (c *Client) ForgetTemplate(vmid int) {
	tc := c.templates
	tc.mu.Lock()
	defer tc.mu.Unlock()
	if l := tc.lookups[vmid]; l != nil && isDone(l.done) {
		delete(tc.lookups, vmid)
	}
}

// forget drops lookup l of vmid if it is still the one held.
func (tc *templateCache) forget(vmid int, l *templateLookup) {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	if tc.lookups[vmid] == l {
		delete(tc.lookups, vmid)
	}
}

func isDone(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
