package provider

import (
	"context"
	"fmt"
	"strings"

	"github.com/agentlab/terraform-provider-agentlab/internal/pve"
	"github.com/agentlab/terraform-provider-agentlab/internal/volume"
)

// The seed ISO does not outlive first boot. It holds the heartbeat token, a
// job's bootstrap token and the sealed secrets; once the guest has booted it
// is needed no more, so the provider ejects it from the CD-ROM and deletes it
// from storage.
//
// "Booted" is the guest agent reporting an IPv4 address: cloud-init reads
// the seed in its init-local stage, before the network is up, and caches
// it in /var/lib/cloud, so by the time the interface the seed configures
// has an address the guest never reads the CD-ROM again (write_files and
// runcmd run from the cache).

// retireSeed ejects sandbox ref's seed ISO from isoDrive (leaving an empty
// CD-ROM, which PVE applies to a running VM at once) and deletes the ISO
// from isoStorage. It is idempotent: an empty drive and a missing ISO are
// fine, and a drive holding something else is left alone.
func retireSeed(ctx context.Context, c *pve.Client, ref pve.VMRef, isoStorage string) error {
	cfg, err := c.Config(ctx, ref)
	if err != nil {
		return fmt.Errorf("reading the config of %s: %w", ref, err)
	}
	if d, ok := cfg.Drive(isoDrive); ok && strings.HasSuffix(d.Volume, volume.SeedISOName(ref.VMID)) {
		if d.Storage != "" {
			isoStorage = d.Storage
		}
		err := c.UpdateConfig(ctx, ref, pve.ConfigUpdate{Set: map[string]string{isoDrive: "none,media=cdrom"}, Digest: cfg.Digest()})
		if err != nil {
			return fmt.Errorf("ejecting the seed ISO of %s: %w", ref, err)
		}
	}
	if isoStorage == "" {
		isoStorage = defaultISOStorage
	}
	if err := deleteISO(ctx, c, ref.Node, volume.SeedISOVolid(isoStorage, ref.VMID)); err != nil {
		return fmt.Errorf("deleting the seed ISO of %s: %w", ref, err)
	}
	return nil
}

// retireSeedAfterBoot waits until the guest of ref has booted (its agent
// reports an address) and retires its seed. A VM that is gone meanwhile (a
// job's sandbox the reaper destroyed) took its ISO with it.
func retireSeedAfterBoot(ctx context.Context, c *pve.Client, ref pve.VMRef, isoStorage string) error {
	if _, err := c.WaitForIP(ctx, ref); err != nil {
		if pve.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("waiting for the guest of %s to boot: %w", ref, err)
	}
	err := retireSeed(ctx, c, ref, isoStorage)
	if pve.IsNotFound(err) {
		return nil
	}
	return err
}

// retireKnownSeed retires the seed the provider attached to ref itself, in
// this same create, once WaitForIP saw the guest boot: the drive is known to
// hold it, so it is ejected without reading the config first.
func retireKnownSeed(ctx context.Context, c *pve.Client, ref pve.VMRef, isoStorage string) error {
	if err := c.UpdateConfig(ctx, ref, pve.ConfigUpdate{Set: map[string]string{isoDrive: "none,media=cdrom"}}); err != nil {
		return fmt.Errorf("ejecting the seed ISO of %s: %w", ref, err)
	}
	if err := deleteISO(ctx, c, ref.Node, volume.SeedISOVolid(isoStorage, ref.VMID)); err != nil {
		return fmt.Errorf("deleting the seed ISO of %s: %w", ref, err)
	}
	return nil
}
