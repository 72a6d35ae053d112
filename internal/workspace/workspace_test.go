package workspace_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/agentlab/terraform-provider-agentlab/internal/pve"
	"github.com/agentlab/terraform-provider-agentlab/internal/pvesim/pvesimtest"
	"github.com/agentlab/terraform-provider-agentlab/internal/workspace"
)

const gib = int64(1) << 30

func setup(t *testing.T) (context.Context, *pve.Client) {
	t.Helper()
	sim := pvesimtest.Start(t)
	c, err := pve.New(context.Background(), pve.Config{Endpoint: sim.URL, APIToken: sim.Token, HTTPClient: sim.Client})
	if err != nil {
		t.Fatalf("pve.New: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx, c
}

func sandbox(ctx context.Context, t *testing.T, c *pve.Client, nonce string) pve.VMRef {
	t.Helper()
	ref, err := c.Clone(ctx, pve.CloneRequest{Node: "pve", SourceVMID: 9000, Name: "sbx-" + nonce,
		Nonce: nonce, Description: "sandbox " + nonce})
	if err != nil {
		t.Fatalf("clone: %v", err)
	}
	if err := c.UpdateConfig(ctx, ref, pve.ConfigUpdate{Set: map[string]string{"tags": "agentlab"}}); err != nil {
		t.Fatalf("tag: %v", err)
	}
	return ref
}

// TestWorkspaceOutlivesSandboxes is the invariant the holder exists for:
// destroying the sandbox it was attached to, and creating new VMs after
// that, never frees the workspace volume.
func TestWorkspaceOutlivesSandboxes(t *testing.T) {
	for _, storage := range []string{"local-lvm"} {
		t.Run(storage, func(t *testing.T) {
			ctx, c := setup(t)
			ws, err := workspace.Create(ctx, c, "pve", storage, "data", gib)
			if err != nil {
				t.Fatalf("Create: %v", err)
			}
			if owner, _ := c.FindVM(ctx, ws.Holder); owner.Name != workspace.HolderName("data") {
				t.Fatalf("holder vm %d is named %q; want %q", ws.Holder, owner.Name, workspace.HolderName("data"))
			}
			a := sandbox(ctx, t, c, "a")
			if err := workspace.Attach(ctx, c, a, ws); err != nil {
				t.Fatalf("Attach a: %v", err)
			}
			if err := c.Start(ctx, a); err != nil {
				t.Fatal(err)
			}
			b := sandbox(ctx, t, c, "b")
			var ae *workspace.AttachedError
			if err := workspace.Attach(ctx, c, b, ws); !errors.As(err, &ae) || ae.VM != a || ae.Name != "sbx-a" {
				t.Fatalf("Attach b while a holds it: got %v; want an AttachedError naming %s", err, a)
			}
			if err := workspace.Delete(ctx, c, ws); !errors.As(err, &ae) || ae.VM != a {
				t.Fatalf("Delete while attached: got %v; want an AttachedError naming %s", err, a)
			}
			if err := workspace.Grow(ctx, c, ws, 2*gib); err != nil {
				t.Fatalf("Grow attached: %v", err)
			}
			if err := workspace.Grow(ctx, c, workspace.Workspace{Volume: ws.Volume, SizeBytes: 2 * gib}, gib); !errors.Is(err, pve.ErrShrink) {
				t.Fatalf("shrink: got %v; want ErrShrink", err)
			}
			// The sandbox dies with the workspace attached.
			if err := c.Destroy(ctx, a); err != nil {
				t.Fatal(err)
			}
			got, err := workspace.Read(ctx, c, "pve", ws.Volume)
			if err != nil {
				t.Fatalf("Read after the sandbox was destroyed: %v", err)
			}
			if got.SizeBytes != 2*gib || got.Name != "data" || got.Holder != ws.Holder {
				t.Fatalf("Read = %+v; want name data, holder %d, size %d", got, ws.Holder, 2*gib)
			}
			// New VMs never get the holder's VMID.
			for _, n := range []string{"c", "d"} {
				if ref := sandbox(ctx, t, c, n); ref.VMID == ws.Holder {
					t.Fatalf("a new sandbox got the holder's vmid %d", ws.Holder)
				}
			}
			if err := workspace.Attach(ctx, c, b, ws); err != nil {
				t.Fatalf("Attach b once a is gone: %v", err)
			}
			if err := c.Start(ctx, b); err != nil {
				t.Fatal(err)
			}
			if err := workspace.Detach(ctx, c, b, ws.Volume); err != nil {
				t.Fatalf("Detach b: %v", err)
			}
			cfg, err := c.Config(ctx, b)
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := cfg.Get(workspace.Drive); ok {
				t.Fatalf("b still has %s after Detach: %v", workspace.Drive, cfg.Raw)
			}
			if st, _ := c.Status(ctx, b); !st.Running() {
				t.Fatalf("b is %s after Detach; want running again", st.Status)
			}
			if err := workspace.Grow(ctx, c, got, 3*gib); err != nil {
				t.Fatalf("Grow detached: %v", err)
			}
			if got, err = workspace.Read(ctx, c, "pve", ws.Volume); err != nil || got.SizeBytes != 3*gib {
				t.Fatalf("Read after Grow = %+v, %v; want size %d", got, err, 3*gib)
			}
			if err := c.Destroy(ctx, b); err != nil {
				t.Fatal(err)
			}
			if err := workspace.Delete(ctx, c, got); err != nil {
				t.Fatalf("Delete: %v", err)
			}
			if _, err := workspace.Read(ctx, c, "pve", ws.Volume); !pve.IsNotFound(err) {
				t.Fatalf("Read after Delete: got %v; want not found", err)
			}
			if _, err := c.Config(ctx, pve.VMRef{Node: "pve", VMID: ws.Holder}); !pve.IsNotFound(err) {
				t.Fatalf("holder config after Delete: got %v; want not found", err)
			}
		})
	}
}

func TestReadRefusesForeignVolumes(t *testing.T) {
	ctx, c := setup(t)
	a := sandbox(ctx, t, c, "a")
	cfg, err := c.Config(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	d, _ := cfg.Drive("scsi0")
	for _, volid := range []string{d.Volume, "local:iso/x.iso", "nonsense"} {
		if _, err := workspace.Read(ctx, c, "pve", volid); !errors.Is(err, workspace.ErrNotWorkspace) && !pve.IsNotFound(err) {
			t.Errorf("Read(%q) = %v; want ErrNotWorkspace or not found", volid, err)
		}
	}
}
