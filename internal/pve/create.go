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

// CreateRequest describes a new, empty VM config made with POST
// /nodes/{node}/qemu: no disks, never started by CreateVM.
type CreateRequest struct {
	Node string
	// Name is the VM's DNS name.
	Name string
	// Description must contain Nonce, so a retry after a lost answer
	// recognises its own VM.
	Description string
	Nonce       string
	// Tags is PVE's tag list, separated by ";".
	Tags string
	// Set holds further config options, as PVE's API takes them.
	Set map[string]string
}

// CreateVM makes a VM config at a free VMID (allocated as Clone allocates)
// and waits for the create task. When another client takes the chosen VMID
// first, it moves on to the next free one; when an answer was lost, the VM
// found at the VMID is ours if its description carries the nonce.
func (c *Client) CreateVM(ctx context.Context, req CreateRequest) (VMRef, error) {
	if !reNodeName.MatchString(req.Node) {
		return VMRef{}, fmt.Errorf("create vm: invalid node %q", req.Node)
	}
	if strings.TrimSpace(req.Nonce) == "" || !strings.Contains(req.Description, req.Nonce) {
		return VMRef{}, errors.New("create vm: the description must contain a non-empty nonce")
	}
	after := 0
	for taken := 0; ; taken++ {
		id, err := c.reserveVMID(ctx, after)
		if err != nil {
			return VMRef{}, fmt.Errorf("create vm: allocate vmid: %w", err)
		}
		ref, err := c.createAs(ctx, req, id)
		c.alloc.release(id)
		if err != nil && ref.IsZero() && errors.Is(err, ErrVMIDInUse) && taken < maxTakenVMIDs && ctx.Err() == nil {
			after = id
			continue
		}
		return ref, err
	}
}

// createAs creates req's VM at vmid. A non-zero VMRef with an error means the
// VM may exist.
func (c *Client) createAs(ctx context.Context, req CreateRequest, vmid int) (VMRef, error) {
	ref := VMRef{Node: req.Node, VMID: vmid}
	form := url.Values{"vmid": {strconv.Itoa(vmid)}, "description": {req.Description}}
	if req.Name != "" {
		form.Set("name", req.Name)
	}
	if req.Tags != "" {
		form.Set("tags", req.Tags)
	}
	for k, v := range req.Set {
		form.Set(k, v)
	}
	r := request{method: http.MethodPost, path: pathf("/nodes/%s/qemu", req.Node), form: form}
	what := fmt.Sprintf("create vm %d", vmid)
	uncertain := false
	err := c.withRetry(ctx, what, func(ctx context.Context) error {
		_, err := c.runTask(ctx, r)
		switch {
		case err == nil:
			return nil
		case alreadyExists(err) || errors.Is(err, ErrVMIDInUse):
			if !uncertain {
				return &noRetryError{fmt.Errorf("%w: %w", ErrVMIDInUse, err)}
			}
			cfg, cerr := c.Config(ctx, ref)
			if cerr == nil && strings.Contains(cfg.Description(), req.Nonce) {
				return nil // the lost attempt made it
			}
			return &noRetryError{fmt.Errorf("%w: %w", ErrVMIDInUse, err)}
		case maybeProcessed(err):
			uncertain = true
		}
		return err
	})
	if err != nil {
		err = fmt.Errorf("%s on %s: %w", what, req.Node, err)
		if uncertain {
			return ref, err
		}
		return VMRef{}, err
	}
	c.log.Info("pve: created vm", "vm", ref.String())
	return ref, nil
}
