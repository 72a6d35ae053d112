package pve

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// CloneRequest describes a clone of a template (or VM).
type CloneRequest struct {
	Node       string // node holding the source
	SourceVMID int    // template to clone
	// NewVMID is the clone's VMID; 0 allocates a free one (see Clone).
	NewVMID     int
	Name        string // DNS name of the new VM; "" lets PVE pick "Copy-of-VM-..."
	Description string
	// Nonce identifies the clone as this caller's after a lost response: a
	// unique string (e.g. a random id) that Description contains. Empty means
	// the whole Description is the identity; then Description must not be
	// empty.
	Nonce string
	// Full asks for a full copy of the disks; otherwise PVE's default
	// applies: a linked clone for templates, a full copy for VMs.
	Full bool
	// Storage is the target storage of a full clone ("" keeps the source's).
	Storage string
	// TargetNode moves the clone to another node (shared storage only).
	TargetNode string
	// Pool adds the clone to a resource pool.
	Pool string
}

// maxTakenVMIDs bounds how many VMIDs in a row Clone tries when other
// clients keep taking them first.
const maxTakenVMIDs = 64

// Clone clones a template and waits for the clone task. With NewVMID 0 it
// allocates a VMID: parallel clones in one process get distinct VMIDs without
// a lock held across any request, and when another client takes the chosen
// VMID first, Clone moves on to the next free one.
//
// Transient failures are retried. When a retry finds the VMID taken after an
// attempt whose answer was lost, Clone waits for that clone to finish and
// reads its description: if it contains the request's nonce, the VM is ours
// and Clone succeeds without making a second VM.
//
// On success the returned VMRef addresses the new VM (on TargetNode when set).
// On failure a non-zero VMRef means the VM may exist (e.g. the context ended
// while the clone task ran): the caller must destroy it or record it.
func (c *Client) Clone(ctx context.Context, req CloneRequest) (VMRef, error) {
	nonce, err := req.validate()
	if err != nil {
		return VMRef{}, err
	}
	if req.NewVMID != 0 {
		if !c.alloc.reserveExact(req.NewVMID) {
			return VMRef{}, fmt.Errorf("clone %d to %d: %w (another clone in this process is creating it)", req.SourceVMID, req.NewVMID, ErrVMIDInUse)
		}
		defer c.alloc.release(req.NewVMID)
		return c.cloneAs(ctx, req, nonce, req.NewVMID)
	}
	after := 0
	for taken := 0; ; taken++ {
		id, err := c.reserveVMID(ctx, after)
		if err != nil {
			return VMRef{}, fmt.Errorf("clone %d: allocate vmid: %w", req.SourceVMID, err)
		}
		ref, err := c.cloneAs(ctx, req, nonce, id)
		c.alloc.release(id)
		if err != nil && ref.IsZero() && errors.Is(err, ErrVMIDInUse) && taken < maxTakenVMIDs && ctx.Err() == nil {
			c.log.InfoContext(ctx, "pve: vmid taken by another client, trying the next", "vmid", id)
			after = id
			continue
		}
		return ref, err
	}
}

func (req CloneRequest) validate() (nonce string, err error) {
	if !reNodeName.MatchString(req.Node) {
		return "", fmt.Errorf("clone: invalid source node %q", req.Node)
	}
	if req.TargetNode != "" && !reNodeName.MatchString(req.TargetNode) {
		return "", fmt.Errorf("clone: invalid target node %q", req.TargetNode)
	}
	if err := validVMID(req.SourceVMID); err != nil {
		return "", fmt.Errorf("clone: source: %w", err)
	}
	if req.NewVMID != 0 {
		if err := validVMID(req.NewVMID); err != nil {
			return "", fmt.Errorf("clone: new vmid: %w", err)
		}
	}
	if req.Storage != "" && !req.Full {
		return "", errors.New("clone: a target storage needs a full clone (set Full)")
	}
	nonce = strings.TrimSpace(req.Nonce)
	if nonce == "" {
		nonce = strings.TrimSpace(req.Description)
		if nonce == "" {
			return "", errors.New("clone: set a Nonce or a Description, so a retried clone can recognise its own VM")
		}
	} else if !strings.Contains(req.Description, nonce) {
		return "", errors.New("clone: the description must contain the nonce")
	}
	return nonce, nil
}

// cloneOutcome is what cloneOwner finds at a VMID after a lost answer.
type cloneOutcome int

const (
	cloneGone  cloneOutcome = iota // no VM: the earlier attempt did nothing or failed
	cloneOurs                      // a finished clone carrying our nonce
	cloneOther                     // somebody else's VM
	cloneStale                     // a placeholder locked by a clone that no longer runs
)

// cloneAs clones req to vmid, retrying transient failures.
func (c *Client) cloneAs(ctx context.Context, req CloneRequest, nonce string, vmid int) (VMRef, error) {
	ref := VMRef{Node: req.Node, VMID: vmid}
	if req.TargetNode != "" {
		ref.Node = req.TargetNode
	}
	form := url.Values{"newid": {strconv.Itoa(vmid)}}
	if req.Name != "" {
		form.Set("name", req.Name)
	}
	if req.Description != "" {
		form.Set("description", req.Description)
	}
	if req.Full {
		form.Set("full", "1")
	}
	if req.Storage != "" {
		form.Set("storage", req.Storage)
	}
	if req.TargetNode != "" && req.TargetNode != req.Node {
		form.Set("target", req.TargetNode)
	}
	if req.Pool != "" {
		form.Set("pool", req.Pool)
	}
	r := request{method: http.MethodPost, path: pathf("/nodes/%s/qemu/%s/clone", req.Node, req.SourceVMID), form: form}
	what := fmt.Sprintf("clone %d to %d", req.SourceVMID, vmid)

	uncertain := false // an earlier attempt may have started a clone
	for attempt := 1; ; attempt++ {
		upid, err := c.startTask(ctx, r)
		switch {
		case err == nil:
			c.log.DebugContext(ctx, "pve: clone started", "source", req.SourceVMID, "vmid", vmid, "upid", upid)
			if upid == "" {
				return ref, nil
			}
			_, err = c.WaitTask(ctx, upid)
			if err == nil {
				c.log.InfoContext(ctx, "pve: cloned", "source", req.SourceVMID, "vm", ref.String())
				return ref, nil
			}
			var te *TaskError
			switch {
			case !errors.As(err, &te):
				// the wait failed, not the task: the clone may still run
				return ref, fmt.Errorf("%s: %w", what, err)
			case alreadyExists(te):
				return VMRef{}, fmt.Errorf("%s: %w: %w", what, ErrVMIDInUse, err)
			case !IsTransient(te):
				// PVE removes a failed clone's config and disks; the ref lets
				// the caller make sure.
				return ref, fmt.Errorf("%s: %w", what, err)
			}
			uncertain = false // the failed clone was cleaned up by PVE
		case alreadyExists(err):
			if !uncertain {
				return VMRef{}, fmt.Errorf("%s: %w: %w", what, ErrVMIDInUse, err)
			}
			outcome, node, oerr := c.cloneOwner(ctx, req, nonce, vmid)
			if oerr != nil {
				return ref, fmt.Errorf("%s: after a lost answer, checking who owns vmid %d: %w", what, vmid, oerr)
			}
			switch outcome {
			case cloneStale:
				// PVE died mid-clone: the placeholder may be ours, and only an
				// operator can remove its lock.
				return VMRef{Node: node, VMID: vmid}, fmt.Errorf("%s: vmid %d is a clone placeholder whose clone no "+
					"longer runs (Proxmox VE stopped mid-clone; the lock outlives that): %w", what, vmid, ErrLocked)
			case cloneOurs:
				c.log.InfoContext(ctx, "pve: clone answer was lost but the clone is ours", "vm", ref.String())
				return VMRef{Node: node, VMID: vmid}, nil
			case cloneOther:
				return VMRef{}, fmt.Errorf("%s: %w: %w", what, ErrVMIDInUse, err)
			}
			uncertain = false // gone: clone again
		case IsTransient(err):
			// Even a 5xx with a lock or quorum text may come after PVE acted
			// (the answer, not the clone, failed). Treating every transient
			// failure as possibly acted on is always safe: a free VMID is
			// cloned again, a taken one is checked for our nonce.
			uncertain = true
		default:
			err = fmt.Errorf("%s: %w", what, err)
			if uncertain || (ctx.Err() != nil && maybeProcessed(err)) {
				return ref, err // an attempt may have started the clone
			}
			return VMRef{}, err
		}
		if ctx.Err() != nil || attempt >= c.retry.MaxAttempts {
			err = fmt.Errorf("%s: giving up after %d attempts: %w", what, attempt, errors.Join(err, ctx.Err()))
			if uncertain {
				return ref, err
			}
			return VMRef{}, err
		}
		d := c.backoff(attempt)
		c.log.WarnContext(ctx, "pve: retrying clone", "source", req.SourceVMID, "vmid", vmid, "attempt", attempt, "delay", d, "err", err)
		if serr := c.sleep(ctx, d); serr != nil {
			err = fmt.Errorf("%s: %w; retry interrupted: %w", what, err, serr)
			if uncertain {
				return ref, err
			}
			return VMRef{}, err
		}
	}
}

// cloneOwner finds out whether the VM at vmid is a clone of ours: it waits
// while the VM is locked by a running clone, then compares its description
// with the nonce. A clone lock with no clone of the source running, twice
// in a row, is stale: PVE died mid-clone and left the placeholder, whose lock
// outlives the crash, so waiting would last until the context ends.
func (c *Client) cloneOwner(ctx context.Context, req CloneRequest, nonce string, vmid int) (cloneOutcome, string, error) {
	start := c.clock.Now()
	idle := 0 // polls in a row that found the clone lock without a running clone
	for {
		node, cfg, err := c.locateConfig(ctx, req, vmid)
		if err != nil {
			return cloneGone, "", err
		}
		if node == "" {
			return cloneGone, "", nil
		}
		lock := cfg.Lock()
		if lock != "clone" && lock != "create" {
			if strings.Contains(cfg.Description(), nonce) {
				return cloneOurs, node, nil
			}
			return cloneOther, node, nil
		}
		if lock == "clone" {
			running, err := c.cloneRunning(ctx, req.Node, req.SourceVMID)
			switch {
			case err != nil:
				idle = 0 // cannot tell: keep waiting
			case running:
				idle = 0
			default:
				idle++
			}
			if idle >= 2 {
				return cloneStale, node, nil
			}
		}
		if err := c.sleep(ctx, taskPollInterval(c.clock.Now().Sub(start))); err != nil {
			return cloneGone, "", err
		}
	}
}

// cloneRunning reports whether a clone of source runs on node. PVE's task
// list names a clone task by its source VMID, not the new one, so any
// running clone of the template counts: the answer errs towards waiting.
func (c *Client) cloneRunning(ctx context.Context, node string, source int) (bool, error) {
	tasks, err := c.activeTasks(ctx, node, "qmclone", source)
	return len(tasks) > 0, err
}

// locateConfig reads vmid's config on the clone's source node, then its
// target node, then wherever the cluster says it is. node is "" when the VM
// does not exist.
func (c *Client) locateConfig(ctx context.Context, req CloneRequest, vmid int) (string, VMConfig, error) {
	nodes := []string{req.Node}
	if req.TargetNode != "" && req.TargetNode != req.Node {
		nodes = append(nodes, req.TargetNode)
	}
	for _, n := range nodes {
		cfg, err := c.Config(ctx, VMRef{Node: n, VMID: vmid})
		if err == nil {
			return n, cfg, nil
		}
		if !IsNotFound(err) {
			return "", VMConfig{}, err
		}
	}
	e, err := c.FindVM(ctx, vmid)
	if IsNotFound(err) {
		return "", VMConfig{}, nil
	}
	if err != nil {
		return "", VMConfig{}, err
	}
	cfg, err := c.Config(ctx, e.Ref())
	if IsNotFound(err) {
		return "", VMConfig{}, nil
	}
	return e.Node, cfg, err
}
