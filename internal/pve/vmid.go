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
	// gen counts releases; released holds the generation of each VMID's
	// latest release, so that an answer of /cluster/nextid older than a
	// release is not trusted for that VMID (see reserveVMID).
	gen      uint64
	released map[int]uint64
}

// releasedKept bounds the release generations kept.
const releasedKept = 1024

func newAllocator(lo, hi int) *allocator {
	return &allocator{min: lo, max: hi, reserved: map[int]struct{}{}, released: map[int]uint64{}}
}

// generation returns the current release generation.
func (a *allocator) generation() uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.gen
}

// releasedSince reports whether id was released after generation g.
func (a *allocator) releasedSince(id int, g uint64) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.released[id] > g
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
	a.gen++
	a.released[id] = a.gen
	if len(a.released) > releasedKept {
		for k, g := range a.released {
			if a.gen-g >= releasedKept/2 {
				delete(a.released, k)
			}
		}
	}
}

// reserveVMID reserves a VMID greater than after that PVE reports free: it
// starts at /cluster/nextid (or the range's minimum), skips IDs reserved by
// clones in flight in this process, and verifies each other candidate with
// /cluster/nextid?vmid=N. nextid's own answer needs no second look (the
// clone's POST is what claims an ID, and it fails when another client was
// first, whatever was asked before), unless a clone of this process released
// that ID while the answer was on its way: then the answer may predate that
// clone's VM. The caller must release the ID with c.alloc.release once its
// clone is done or has failed.
func (c *Client) reserveVMID(ctx context.Context, after int) (int, error) {
	gen := c.alloc.generation()
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
		if id == int(next) && !c.alloc.releasedSince(id, gen) {
			return id, nil
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
