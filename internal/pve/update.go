package pve

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"

	"github.com/agentlab/terraform-provider-agentlab/internal/size"
)

// ConfigUpdate is a change to a guest's config.
type ConfigUpdate struct {
	// Set maps option keys to their new values, as PVE's API takes them
	// (e.g. "cores": "4", "net0": NIC.String(), "sshkeys": EncodeSSHKeys(...)).
	Set map[string]string
	// Delete lists option keys to remove.
	Delete []string
	// Digest, when set, makes PVE refuse the change if the config changed
	// since it was read (VMConfig.Digest).
	Digest string
}

// UpdateConfig applies a config change with the synchronous PUT. Lock
// contention ("VM is locked", "can't lock file") is retried. If an attempt's
// answer was lost and the retry is refused because the digest no longer
// matches, UpdateConfig reads the config back and succeeds when the change is
// in place (values PVE normalises, such as tags, may defeat that check).
func (c *Client) UpdateConfig(ctx context.Context, ref VMRef, upd ConfigUpdate) error {
	if err := ref.validate(); err != nil {
		return err
	}
	if len(upd.Set) == 0 && len(upd.Delete) == 0 {
		return nil
	}
	form := url.Values{}
	for k, v := range upd.Set {
		form.Set(k, v)
	}
	if len(upd.Delete) > 0 {
		for _, k := range upd.Delete {
			if _, ok := upd.Set[k]; ok {
				return fmt.Errorf("update config of %s: key %q is both set and deleted", ref, k)
			}
		}
		form.Set("delete", strings.Join(upd.Delete, ","))
	}
	if upd.Digest != "" {
		form.Set("digest", upd.Digest)
	}
	path := pathf("/nodes/%s/qemu/%s/config", ref.Node, ref.VMID)
	uncertain := false
	err := c.withRetry(ctx, "update config of "+ref.String(), func(ctx context.Context) error {
		err := c.send(ctx, request{method: http.MethodPut, path: path, form: form}, nil)
		if err != nil && upd.Digest != "" && uncertain && IsDigestMismatch(err) {
			if ok, cerr := c.configHas(ctx, ref, upd); cerr == nil && ok {
				return nil
			}
		}
		if err != nil && maybeProcessed(err) {
			uncertain = true
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("update config of %s: %w", ref, err)
	}
	return nil
}

// configHas reports whether the guest's config carries the change.
func (c *Client) configHas(ctx context.Context, ref VMRef, upd ConfigUpdate) (bool, error) {
	cfg, err := c.Config(ctx, ref)
	if err != nil {
		return false, err
	}
	for k, v := range upd.Set {
		got, ok := cfg.Get(k)
		if !ok || strings.TrimRight(got, " \t\r\n") != strings.TrimRight(v, " \t\r\n") {
			return false, nil
		}
	}
	for _, k := range upd.Delete {
		if _, ok := cfg.Get(k); ok {
			return false, nil
		}
	}
	return true, nil
}

// Resize grows disk (e.g. "scsi0") of a guest to the absolute size newSize
// (internal/size's grammar, e.g. "20G" or "20GiB"; PVE gets its own form). It
// does nothing when the disk already has that size and refuses to shrink
// with an error wrapping ErrShrink.
func (c *Client) Resize(ctx context.Context, ref VMRef, disk, newSize string) error {
	if err := ref.validate(); err != nil {
		return err
	}
	if strings.HasPrefix(newSize, "+") || strings.HasPrefix(newSize, "-") {
		return fmt.Errorf("resize %s %s: size %q must be absolute, e.g. 20G", ref, disk, newSize)
	}
	want, err := ParseSize(newSize)
	if err != nil {
		return fmt.Errorf("resize %s %s: %w", ref, disk, err)
	}
	cfg, err := c.Config(ctx, ref)
	if err != nil {
		return fmt.Errorf("resize %s %s: %w", ref, disk, err)
	}
	d, ok := cfg.Drive(disk)
	if !ok {
		keys := make([]string, 0)
		for _, d := range cfg.Disks() {
			keys = append(keys, d.Key)
		}
		sort.Strings(keys)
		return fmt.Errorf("resize %s: disk %q does not exist (disks: %s)", ref, disk, strings.Join(keys, ", "))
	}
	if d.CDROM() {
		return fmt.Errorf("resize %s: %s is a cd-rom, not a disk", ref, disk)
	}
	if d.SizeBytes == want {
		return nil
	}
	if d.SizeBytes > want {
		return fmt.Errorf("resize %s %s from %s to %s: %w", ref, disk, d.Size, newSize, ErrShrink)
	}
	r := request{method: http.MethodPut, path: pathf("/nodes/%s/qemu/%s/resize", ref.Node, ref.VMID),
		form: url.Values{"disk": {disk}, "size": {size.Format(want)}}}
	err = c.withRetry(ctx, "resize "+ref.String(), func(ctx context.Context) error {
		_, err := c.runTask(ctx, r)
		return err
	})
	if err != nil {
		return fmt.Errorf("resize %s %s to %s: %w", ref, disk, newSize, err)
	}
	return nil
}
