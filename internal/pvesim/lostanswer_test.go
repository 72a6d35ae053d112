package pvesim_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/agentlab/terraform-provider-agentlab/internal/pve"
	"github.com/agentlab/terraform-provider-agentlab/internal/pvesim"
	"github.com/agentlab/terraform-provider-agentlab/internal/pvesim/pvesimtest"
)

// TestLostAnswers exercises each lost-answer fault through internal/pve's
// client: the call acts (the clone exists once, the config holds the
// change, the VM runs, the VM is gone) although its answer was lost. What
// the client makes of the lost answer is its own tests' business; here the
// outcome is only logged.
func TestLostAnswers(t *testing.T) {
	type op func(ctx context.Context, c *pve.Client, ref pve.VMRef) error
	cases := []struct {
		call  string
		setup func(t *testing.T, sim *pvesimtest.Sim) // before faults count
		act   op
		check func(t *testing.T, sim *pvesimtest.Sim)
	}{
		{
			call: pvesim.LostClone,
			act: func(ctx context.Context, c *pve.Client, _ pve.VMRef) error {
				_, err := c.Clone(ctx, pve.CloneRequest{Node: "pve", SourceVMID: 9000, NewVMID: 101, Name: "lost",
					Nonce: "n-1", Description: "x <!-- agentlab:nonce=n-1 -->"})
				return err
			},
			check: func(t *testing.T, sim *pvesimtest.Sim) {
				n := 0
				for _, id := range sim.Server.VMIDs() {
					if cfg, _ := sim.Server.VMConfig(id); strings.Contains(cfg["description"], "nonce=n-1") {
						n++
					}
				}
				if n != 1 {
					t.Errorf("%d VMs carry the clone's nonce; want exactly 1", n)
				}
			},
		},
		{
			call: pvesim.LostConfig,
			act: func(ctx context.Context, c *pve.Client, ref pve.VMRef) error {
				return c.UpdateConfig(ctx, ref, pve.ConfigUpdate{Set: map[string]string{"cores": "3"}})
			},
			check: func(t *testing.T, sim *pvesimtest.Sim) {
				if cfg, _ := sim.Server.VMConfig(101); cfg["cores"] != "3" {
					t.Errorf("cores = %q; want 3", cfg["cores"])
				}
			},
		},
		{
			call: pvesim.LostStart,
			act:  func(ctx context.Context, c *pve.Client, ref pve.VMRef) error { return c.Start(ctx, ref) },
			check: func(t *testing.T, sim *pvesimtest.Sim) {
				if vm, _ := sim.Server.VM(101); !vm.Running {
					t.Errorf("VM 101 is not running")
				}
			},
		},
		{
			call: pvesim.LostDelete,
			act:  func(ctx context.Context, c *pve.Client, ref pve.VMRef) error { return c.Destroy(ctx, ref) },
			check: func(t *testing.T, sim *pvesimtest.Sim) {
				if _, ok := sim.Server.VM(101); ok {
					t.Errorf("VM 101 still exists")
				}
			},
		},
	}
	for _, mode := range []string{pvesim.LostDrop, pvesim.LostError} {
		for _, tc := range cases {
			t.Run(tc.call+"/"+mode, func(t *testing.T) {
				sim := pvesimtest.Start(t, func(o *pvesim.Options) {
					o.LostAnswers = pvesim.LostAnswers{Rate: 1, Limit: 1, Mode: mode, Calls: []string{tc.call}}
				})
				if tc.call != pvesim.LostClone {
					if st := task(t, sim, "POST", "/nodes/pve/qemu/9000/clone", "newid=101&name=lost"); st != "OK" {
						t.Fatalf("clone = %s", st)
					}
				}
				c, err := pve.New(context.Background(), pve.Config{Endpoint: sim.URL, APIToken: sim.Token, HTTPClient: sim.Client})
				if err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				err = tc.act(ctx, c, pve.VMRef{Node: "pve", VMID: 101})
				if err != nil {
					t.Errorf("client result after a lost answer: %v; want the client to recover", err)
				}
				if got := sim.Server.Stats().Faults[pvesim.FaultLostAnswer]; got != 1 {
					t.Fatalf("lost answers = %d; want 1", got)
				}
				tc.check(t, sim)
			})
		}
	}
}

// TestLostAnswerRaw shows what a client sees: no answer at all (drop) or
// 500 (mode 500), for POST .../config too, after the change was made.
func TestLostAnswerRaw(t *testing.T) {
	for _, mode := range []string{pvesim.LostDrop, pvesim.LostError} {
		t.Run(mode, func(t *testing.T) {
			sim := pvesimtest.Start(t, func(o *pvesim.Options) {
				o.LostAnswers = pvesim.LostAnswers{Rate: 1, Mode: mode, Calls: []string{pvesim.LostConfig}}
			})
			if st := task(t, sim, "POST", "/nodes/pve/qemu/9000/clone", "newid=101"); st != "OK" {
				t.Fatalf("clone = %s", st)
			}
			req, _ := http.NewRequest("POST", sim.URL+"/nodes/pve/qemu/101/config", strings.NewReader("cores=5"))
			req.Header.Set("Authorization", sim.AuthHeader())
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			resp, err := sim.Client.Do(req)
			switch mode {
			case pvesim.LostDrop:
				if err == nil {
					resp.Body.Close()
					t.Fatalf("POST config answered %s; want the connection closed", resp.Status)
				}
			default:
				if err != nil {
					t.Fatalf("POST config: %v", err)
				}
				resp.Body.Close()
				if resp.StatusCode != 500 {
					t.Errorf("POST config = %s; want 500", resp.Status)
				}
			}
			waitFor(t, func() bool { cfg, _ := sim.Server.VMConfig(101); return cfg["cores"] == "5" })
		})
	}
}

func TestLostAnswersOptionsChecked(t *testing.T) {
	for _, la := range []pvesim.LostAnswers{
		{Rate: 2},
		{Rate: 0.1, Mode: "reset"},
		{Rate: 0.1, Calls: []string{"resize"}},
	} {
		if _, err := pvesim.New(pvesim.Options{LostAnswers: la}); err == nil {
			t.Errorf("New with %+v succeeded; want an error", la)
		}
	}
	if _, err := pvesim.ParseLostCalls("clone,bogus"); err == nil {
		t.Errorf("ParseLostCalls accepted bogus")
	}
	if got, err := pvesim.ParseLostCalls("clone,start"); err != nil || len(got) != 2 {
		t.Errorf("ParseLostCalls(clone,start) = %v, %v", got, err)
	}
}

// TestLostCloneAnswerAutoVMID: a clone whose VMID the client allocated, and
// whose answer is lost after PVE acted, must not make a second VM at the
// next free VMID.
func TestLostCloneAnswerAutoVMID(t *testing.T) {
	for _, mode := range []string{pvesim.LostDrop, pvesim.LostError} {
		t.Run(mode, func(t *testing.T) {
			sim := pvesimtest.Start(t, func(o *pvesim.Options) {
				o.LostAnswers = pvesim.LostAnswers{Rate: 1, Limit: 1, Mode: mode, Calls: []string{pvesim.LostClone}}
			})
			c, err := pve.New(context.Background(), pve.Config{Endpoint: sim.URL, APIToken: sim.Token, HTTPClient: sim.Client})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			ref, err := c.Clone(ctx, pve.CloneRequest{Node: "pve", SourceVMID: 9000, Name: "auto",
				Nonce: "n-auto", Description: "x <!-- agentlab:nonce=n-auto -->"})
			if err != nil {
				t.Fatalf("clone after a lost answer: %v", err)
			}
			var clones []int
			for _, id := range sim.Server.VMIDs() {
				if id != 9000 {
					clones = append(clones, id)
				}
			}
			if len(clones) != 1 || clones[0] != ref.VMID {
				t.Errorf("VMs besides the template: %v; want only the returned %d", clones, ref.VMID)
			}
		})
	}
}
