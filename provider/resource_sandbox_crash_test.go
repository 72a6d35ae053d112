package provider

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	tfjson "github.com/hashicorp/terraform-json"
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"

	"github.com/agentlab/terraform-provider-agentlab/internal/lease"
	"github.com/agentlab/terraform-provider-agentlab/internal/pve"
)

// midCloneCrash stands between the provider and the simulator and plays
// Proxmox VE dying in the middle of the first clone: the clone's task never
// reports back, and the VM it was making is left as a clone placeholder
// (no name, no description, no tag, the config lock "clone" that outlives
// the crash). Every other request passes through unchanged.
type midCloneCrash struct {
	t      *testing.T
	e      *accEnv
	target *url.URL

	// keepClone leaves the finished clone as it is: only its answer is lost.
	keepClone bool

	mu       sync.Mutex
	armed    bool
	hungUPID string
	vmid     int
}

// newMidCloneCrash starts the proxy; its URL is the endpoint to give the
// provider.
func newMidCloneCrash(t *testing.T, e *accEnv) (*midCloneCrash, *httptest.Server) {
	u, err := url.Parse(e.sim.URL)
	if err != nil {
		t.Fatal(err)
	}
	p := &midCloneCrash{t: t, e: e, target: u, armed: true}
	srv := httptest.NewTLSServer(p)
	t.Cleanup(srv.Close)
	return p, srv
}

// placeholder returns the VMID of the clone left behind, 0 before the crash.
func (p *midCloneCrash) placeholder() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.vmid
}

// ServeHTTP implements http.Handler.
func (p *midCloneCrash) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	p.mu.Lock()
	hung, armed := p.hungUPID, p.armed
	isClone := armed && r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/clone")
	if isClone {
		p.armed = false
	}
	p.mu.Unlock()
	if hung != "" && strings.Contains(r.URL.Path, hung) {
		<-r.Context().Done() // PVE is gone: the task never reports back
		return
	}

	out, err := http.NewRequestWithContext(r.Context(), r.Method, p.target.Scheme+"://"+p.target.Host+r.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	out.Header = r.Header.Clone()
	res, err := p.e.sim.Client.Do(out)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer res.Body.Close()
	answer, err := io.ReadAll(res.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	if isClone && res.StatusCode == http.StatusOK {
		p.crash(r.Context(), body, answer)
	}
	if hung != "" && strings.HasSuffix(r.URL.Path, "/tasks") && res.StatusCode == http.StatusOK {
		answer = hangInList(p.t, answer, hung)
	}
	for k, v := range res.Header {
		w.Header()[k] = v
	}
	w.Header().Del("Content-Length") // the answer may have been rewritten
	w.WriteHeader(res.StatusCode)
	w.Write(answer)
}

// hangInList rewrites a task list so that task upid runs on, as a worker
// whose node died reports nothing more.
func hangInList(t *testing.T, answer []byte, upid string) []byte {
	var env struct {
		Data  []map[string]any `json:"data"`
		Total int              `json:"total"`
	}
	if err := json.Unmarshal(answer, &env); err != nil {
		t.Errorf("task list %q: %v", answer, err)
		return answer
	}
	list := []map[string]any{{"upid": upid, "status": "RUNNING", "saved": "0"}}
	for _, e := range env.Data {
		if e["upid"] != upid {
			list = append(list, e)
		}
	}
	env.Data = list
	b, err := json.Marshal(env)
	if err != nil {
		t.Errorf("encode the task list: %v", err)
		return answer
	}
	return b
}

// crash turns the clone just started into the placeholder a crash leaves and
// makes its task hang.
func (p *midCloneCrash) crash(ctx context.Context, form, answer []byte) {
	var env struct {
		Data string `json:"data"`
	}
	if err := json.Unmarshal(answer, &env); err != nil {
		p.t.Errorf("clone answer %q: %v", answer, err)
		return
	}
	vals, err := url.ParseQuery(string(form))
	if err != nil {
		p.t.Errorf("clone form %q: %v", form, err)
		return
	}
	vmid, err := strconv.Atoi(vals.Get("newid"))
	if err != nil {
		p.t.Errorf("clone form without newid: %q", form)
		return
	}
	if _, err := p.e.sim.Server.WaitTask(ctx, env.Data); err != nil {
		p.t.Errorf("waiting for the clone task: %v", err)
		return
	}
	ref := pve.VMRef{Node: "pve", VMID: vmid}
	if p.keepClone {
		p.mu.Lock()
		p.hungUPID, p.vmid = env.Data, vmid
		p.mu.Unlock()
		return
	}
	if err := p.e.api.UpdateConfig(ctx, ref, pve.ConfigUpdate{Delete: []string{"description", "name"}}); err != nil {
		p.t.Errorf("strip the clone to a placeholder: %v", err)
		return
	}
	if err := p.e.sim.Server.SetLock(vmid, "clone"); err != nil {
		p.t.Errorf("lock the placeholder: %v", err)
		return
	}
	p.mu.Lock()
	p.hungUPID, p.vmid = env.Data, vmid
	p.mu.Unlock()
}

// TestAccSandbox_clonePlaceholderIsNeverForgotten: Proxmox VE dies mid-clone
// and leaves a locked placeholder. The failed apply keeps its VMID in state,
// a refresh does not drop it as "another VM", destroying it fails with the
// command that frees it, and once an operator has run it, the next apply
// destroys the placeholder and creates the sandbox: no orphan.
func TestAccSandbox_clonePlaceholderIsNeverForgotten(t *testing.T) {
	e := newAccEnv(t)
	proxy, srv := newMidCloneCrash(t, e)
	provider := fmt.Sprintf(`
provider "agentlab" {
  endpoint     = %q
  api_token    = %q
  insecure     = true
  profiles_dir = %q
}
`, srv.URL, e.sim.Token, e.profiles)
	const addr = "agentlab_sandbox.p"
	resource.ParallelTest(t, resource.TestCase{
		ProtoV6ProviderFactories: e.factories(),
		CheckDestroy:             e.checkNothingLeft(t),
		Steps: []resource.TestStep{
			{
				Config: provider + `
resource "agentlab_sandbox" "p" {
  template_vmid = 9000
  timeouts {
    create = "10s"
  }
}
`,
				ExpectError: regexp.MustCompile(`(?s)could not be removed.*saved in state as\s+tainted.*qm unlock \d+`),
			},
			{
				// The refresh keeps the placeholder; destroying it fails on its lock.
				PreConfig: func() {
					if proxy.placeholder() == 0 {
						t.Fatal("the proxy saw no clone")
					}
				},
				Config: provider + `
resource "agentlab_sandbox" "p" {
  template_vmid = 9000
}
`,
				ExpectError: regexp.MustCompile(`(?s)The sandbox's VM is locked.*node\s+pve.*qm unlock \d+`),
			},
			{
				// An operator ran qm unlock: the apply destroys the placeholder.
				PreConfig: func() {
					vmid := proxy.placeholder()
					if lock := e.vmConfig(t, vmid).Lock(); lock != "clone" {
						t.Fatalf("placeholder %d has lock %q; want \"clone\" (was it forgotten and touched?)", vmid, lock)
					}
					if err := e.sim.Server.SetLock(vmid, ""); err != nil {
						t.Fatal(err)
					}
				},
				Config: provider + `
resource "agentlab_sandbox" "p" {
  template_vmid = 9000
}
`,
				ConfigPlanChecks: resource.ConfigPlanChecks{PostApplyPostRefresh: emptyPlanAfterApply()},
				Check: func(s *terraform.State) error {
					vmid, err := stateVMID(s, addr)
					if err != nil {
						return err
					}
					vms := e.sandboxes(t)
					if len(vms) != 1 || vms[0].VMID != vmid {
						return fmt.Errorf("simulator VMs = %v; want only the sandbox %d (the placeholder %d destroyed)", vms, vmid, proxy.placeholder())
					}
					if _, err := lease.Decode(e.vmConfig(t, vmid).Description()); err != nil {
						return fmt.Errorf("VM %d is not a finished sandbox: %v", vmid, err)
					}
					return nil
				},
			},
		},
	})
}

// TestAccSandbox_goneVMLeavesNoISO: when a refresh finds the sandbox's VM
// gone (reaped, or deleted by hand) and its seed ISO still there, the ISO,
// which holds the heartbeat token, is deleted as the sandbox leaves the state.
func TestAccSandbox_goneVMLeavesNoISO(t *testing.T) {
	e := newAccEnv(t)
	config := e.config(`
resource "agentlab_sandbox" "g" {
  template_vmid = 9000
}
`)
	var vmid int
	resource.ParallelTest(t, resource.TestCase{
		ProtoV6ProviderFactories: e.factories(),
		CheckDestroy:             e.checkNothingLeft(t),
		Steps: []resource.TestStep{
			{
				Config: config,
				Check: func(s *terraform.State) error {
					var err error
					vmid, err = stateVMID(s, "agentlab_sandbox.g")
					return err
				},
			},
			{
				// Only the VM goes, as a reaper that crashed between the two would leave it.
				PreConfig: func() {
					if err := e.api.Destroy(context.Background(), pve.VMRef{Node: "pve", VMID: vmid}); err != nil {
						t.Fatalf("destroy outside Terraform: %v", err)
					}
					if isos := e.isos(t); len(isos) != 1 {
						t.Fatalf("ISOs before the refresh = %v; want the sandbox's", isos)
					}
				},
				RefreshState:       true,
				ExpectNonEmptyPlan: true,
				Check: func(s *terraform.State) error {
					if _, ok := s.RootModule().Resources["agentlab_sandbox.g"]; ok {
						return fmt.Errorf("the sandbox whose VM is gone is still in state")
					}
					if isos := e.isos(t); len(isos) != 0 {
						return fmt.Errorf("ISOs after the refresh = %v; want none", isos)
					}
					return nil
				},
			},
		},
	})
}

// TestAccSandbox_lostCloneAnswerKeepsVMID: the clone's answer never comes
// (its task status hangs until the create times out). The cleanup destroys
// the clone, yet the sandbox's VMID stays in state: a lost request could
// still make the VM after the cleanup looked. The next refresh finds it gone
// and drops it (the plan shows that drift), and the apply creates the
// sandbox.
func TestAccSandbox_lostCloneAnswerKeepsVMID(t *testing.T) {
	e := newAccEnv(t)
	proxy, srv := newMidCloneCrash(t, e)
	proxy.keepClone = true
	provider := fmt.Sprintf(`
provider "agentlab" {
  endpoint     = %q
  api_token    = %q
  insecure     = true
  profiles_dir = %q
}
`, srv.URL, e.sim.Token, e.profiles)
	resource.ParallelTest(t, resource.TestCase{
		ProtoV6ProviderFactories: e.factories(),
		CheckDestroy:             e.checkNothingLeft(t),
		Steps: []resource.TestStep{
			{
				Config: provider + `
resource "agentlab_sandbox" "l" {
  template_vmid = 9000
  timeouts {
    create = "10s"
  }
}
`,
				ExpectError: regexp.MustCompile(`(?s)Cloning the template failed.*stays in state as tainted`),
			},
			{
				PreConfig: func() {
					if vms := e.sandboxes(t); len(vms) != 0 {
						t.Errorf("VMs after the failed create: %v; want the clone removed", vms)
					}
				},
				Config: provider + `
resource "agentlab_sandbox" "l" {
  template_vmid = 9000
}
`,
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply:             []plancheck.PlanCheck{expectDrift{addr: "agentlab_sandbox.l", action: tfjson.ActionDelete}},
					PostApplyPostRefresh: emptyPlanAfterApply(),
				},
			},
		},
	})
}

// expectDrift is a plan check: the refresh before the plan found addr
// changed outside Terraform with action (e.g. deleted), which proves the
// state held it.
type expectDrift struct {
	addr   string
	action tfjson.Action
}

// CheckPlan implements plancheck.PlanCheck.
func (c expectDrift) CheckPlan(_ context.Context, req plancheck.CheckPlanRequest, resp *plancheck.CheckPlanResponse) {
	for _, d := range req.Plan.ResourceDrift {
		if d.Address == c.addr && d.Change != nil && slices.Contains(d.Change.Actions, c.action) {
			return
		}
	}
	resp.Error = fmt.Errorf("no %s drift of %s in the plan: the state did not hold it", c.action, c.addr)
}
