package pve_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/agentlab/terraform-provider-agentlab/internal/pve"
	"github.com/agentlab/terraform-provider-agentlab/internal/pvesim/pvesimtest"
)

func TestCreateVMAllocatesDistinctVMIDs(t *testing.T) {
	sim := pvesimtest.Start(t)
	c := simClient(t, sim)
	ctx := testCtx(t)
	const n = 12
	refs := make([]pve.VMRef, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nonce := fmt.Sprintf("nonce-%d", i)
			refs[i], errs[i] = c.CreateVM(ctx, pve.CreateRequest{Node: "pve", Name: fmt.Sprintf("holder-%d", i),
				Description: "holder " + nonce, Nonce: nonce, Tags: "agentlab-workspace"})
		}()
	}
	wg.Wait()
	seen := map[int]bool{}
	for i, ref := range refs {
		if errs[i] != nil {
			t.Fatalf("CreateVM %d: %v", i, errs[i])
		}
		if seen[ref.VMID] || ref.VMID == 9000 {
			t.Fatalf("vmid %d handed out twice (or is the template's)", ref.VMID)
		}
		seen[ref.VMID] = true
		cfg, err := c.Config(ctx, ref)
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("nonce-%d", i); !strings.Contains(cfg.Description(), want) || cfg.Name() != fmt.Sprintf("holder-%d", i) {
			t.Fatalf("vm %s: name %q description %q; want holder-%d with %s", ref, cfg.Name(), cfg.Description(), i, want)
		}
		if len(cfg.Disks()) != 0 {
			t.Fatalf("vm %s has disks %v; want none", ref, cfg.Disks())
		}
	}
}

func TestCreateVMRefusesMissingNonce(t *testing.T) {
	sim := pvesimtest.Start(t)
	c := simClient(t, sim)
	for _, req := range []pve.CreateRequest{
		{Node: "pve", Description: "x"},
		{Node: "pve", Description: "x", Nonce: "y"},
		{Node: "bad node", Description: "n", Nonce: "n"},
	} {
		if ref, err := c.CreateVM(testCtx(t), req); err == nil {
			t.Errorf("CreateVM(%+v) = %s; want an error", req, ref)
		}
	}
}
