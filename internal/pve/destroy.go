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
		st, err := c.Status(ctx, ref)
		if IsNotFound(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("destroy %s: %w", ref, err)
		}
		if st.Running() {
			if err := c.Stop(ctx, ref); err != nil {
				if IsNotFound(err) {
					return nil
				}
				return fmt.Errorf("destroy %s: %w", ref, err)
			}
		}
		err = c.withRetry(ctx, "destroy "+ref.String(), func(ctx context.Context) error {
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
