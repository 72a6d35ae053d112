package pve

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"sync"
)

// allocator hands out VMID candidates to the clones of one process. Its
// mutex is held only to pick a candidate, never across a request: PVE's
// /cluster/nextid cannot know IDs this process is about to use, so the
// reservations cover the window between picking an ID and the clone's config
// file appearing (and a little longer, until the clone has finished).
type allocator struct {
	mu       sync.Mutex
	min, max int
	reserved map[int]struct{}
}

func newAllocator(lo, hi int) *allocator {
	return &allocator{min: lo, max: hi, reserved: map[int]struct{}{}}
}

// take reserves the smallest unreserved VMID >= from within the range.
func (a *allocator) take(from int) (int, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for id := max(from, a.min); id <= a.max; id++ {
		if _, ok := a.reserved[id]; !ok {
			a.reserved[id] = struct{}{}
			return id, true
		}
	}
	return 0, false
}

// reserveExact reserves id, reporting false if it is already reserved.
func (a *allocator) reserveExact(id int) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.reserved[id]; ok {
		return false
	}
	a.reserved[id] = struct{}{}
	return true
}

func (a *allocator) release(id int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.reserved, id)
}

// reserveVMID reserves a VMID greater than after that PVE reports free: it
// starts at /cluster/nextid (or the range's minimum), skips IDs reserved by
// clones in flight in this process, and verifies each candidate with
// /cluster/nextid?vmid=N. The caller must release the ID with
// c.alloc.release once its clone is done or has failed.
func (c *Client) reserveVMID(ctx context.Context, after int) (int, error) {
	var next flexInt
	if err := c.get(ctx, "/cluster/nextid", nil, &next); err != nil {
		return 0, fmt.Errorf("next free vmid: %w", err)
	}
	from := max(int(next), after+1)
	for {
		id, ok := c.alloc.take(from)
		if !ok {
			return 0, fmt.Errorf("%w in [%d, %d] from %d", ErrNoFreeVMID, c.alloc.min, c.alloc.max, from)
		}
		free, err := c.vmidFree(ctx, id)
		if err != nil {
			c.alloc.release(id)
			return 0, fmt.Errorf("check vmid %d: %w", id, err)
		}
		if free {
			return id, nil
		}
		c.alloc.release(id)
		from = id + 1
	}
}

// vmidFree asks PVE whether id is unused.
func (c *Client) vmidFree(ctx context.Context, id int) (bool, error) {
	err := c.get(ctx, "/cluster/nextid", url.Values{"vmid": {strconv.Itoa(id)}}, nil)
	if err == nil {
		return true, nil
	}
	if alreadyExists(err) {
		return false, nil
	}
	return false, err
}
