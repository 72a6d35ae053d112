package pve

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
)

// Destroy stops a guest if it runs and deletes it with its disks
// (purge=1, destroy-unreferenced-disks=1). It is idempotent: a guest that is
// already gone (before or during the call) is success.
func (c *Client) Destroy(ctx context.Context, ref VMRef) error {
	return c.destroy(ctx, ref, false)
}

// DestroyRunning is Destroy for a guest the caller has just seen running:
// it stops the guest without reading its status first (a guest that has
// stopped meanwhile is fine), which saves a request in the common case and
// costs a stop task that does nothing in the other.
func (c *Client) DestroyRunning(ctx context.Context, ref VMRef) error {
	return c.destroy(ctx, ref, true)
}

func (c *Client) destroy(ctx context.Context, ref VMRef, running bool) error {
	if err := ref.validate(); err != nil {
		return err
	}
	r := request{
		method: http.MethodDelete,
		path:   pathf("/nodes/%s/qemu/%s", ref.Node, ref.VMID),
		query:  url.Values{"purge": {"1"}, "destroy-unreferenced-disks": {"1"}},
	}
	const maxRunningRetries = 3
	for i := 0; ; i++ {
		if i > 0 || !running {
			st, err := c.Status(ctx, ref)
			if IsNotFound(err) {
				return nil
			}
			if err != nil {
				return fmt.Errorf("destroy %s: %w", ref, err)
			}
			running = st.Running()
		}
		if running {
			if err := c.Stop(ctx, ref); err != nil {
				if IsNotFound(err) {
					return nil
				}
				return fmt.Errorf("destroy %s: %w", ref, err)
			}
		}
		err := c.withRetry(ctx, "destroy "+ref.String(), func(ctx context.Context) error {
			_, err := c.runTask(ctx, r)
			return err
		})
		switch {
		case err == nil || IsNotFound(err):
			c.log.Info("pve: destroyed vm", "vm", ref.String())
			return nil
		case i < maxRunningRetries && matchesAny(err, []string{"is running"}):
			// started again between stop and delete: stop again
			continue
		}
		return fmt.Errorf("destroy %s: %w", ref, err)
	}
}
