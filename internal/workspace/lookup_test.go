package workspace_test

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentlab/terraform-provider-agentlab/internal/pve"
	"github.com/agentlab/terraform-provider-agentlab/internal/pvesim/pvesimtest"
	"github.com/agentlab/terraform-provider-agentlab/internal/workspace"
)

// setupSim is setup that also returns the simulator, for its request counts.
func setupSim(t *testing.T) (context.Context, *pve.Client, *pvesimtest.Sim) {
	t.Helper()
	sim := pvesimtest.Start(t)
	c, err := pve.New(context.Background(), pve.Config{Endpoint: sim.URL, APIToken: sim.Token, HTTPClient: sim.Client})
	if err != nil {
		t.Fatalf("pve.New: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx, c, sim
}

// requests returns how many requests the simulator answered while fn ran.
func requests(t *testing.T, sim *pvesimtest.Sim, fn func() error) int {
	t.Helper()
	before := sim.Server.Stats().Total
	if err := fn(); err != nil {
		t.Fatal(err)
	}
	return sim.Server.Stats().Total - before
}

// attachedList matches the holder's list in its description.
var attachedList = regexp.MustCompile(`,"attached":\[[0-9,]*\]`)

// makeLegacy rewrites the holder's description as AgentLab wrote it before
// holders listed their VMs.
func makeLegacy(ctx context.Context, t *testing.T, c *pve.Client, ws workspace.Workspace) {
	t.Helper()
	ref := pve.VMRef{Node: ws.Node, VMID: ws.Holder}
	cfg, err := c.Config(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	desc := attachedList.ReplaceAllString(cfg.Description(), "")
	if desc == cfg.Description() {
		t.Fatalf("holder description %q has no list", desc)
	}
	if err := c.UpdateConfig(ctx, ref, pve.ConfigUpdate{Set: map[string]string{"description": desc}}); err != nil {
		t.Fatal(err)
	}
}

// TestAttachmentsCost measures who-holds-it lookups on a node with 50
// sandboxes: the holder's list makes them cost the holder's config and the
// listed VMs' configs, where reading every VM's config cost 1 + 50 requests.
// It prints the figures (go test -v).
func TestAttachmentsCost(t *testing.T) {
	ctx, c, sim := setupSim(t)
	ws, err := workspace.Create(ctx, c, "pve", "local-lvm", "data", gib)
	if err != nil {
		t.Fatal(err)
	}
	var vms []pve.VMRef
	for i := range 50 {
		vms = append(vms, sandbox(ctx, t, c, fmt.Sprintf("n%02d", i)))
	}
	holderOf := func() ([]workspace.Attachment, int) {
		var atts []workspace.Attachment
		n := requests(t, sim, func() (err error) {
			atts, err = workspace.Attachments(ctx, c, ws)
			return err
		})
		return atts, n
	}

	// Nobody holds it: the holder's config alone.
	if atts, n := holderOf(); len(atts) != 0 || n != 1 {
		t.Errorf("free workspace: %d attachments in %d requests; want 0 in 1", len(atts), n)
	}
	attach := requests(t, sim, func() error { return workspace.Attach(ctx, c, vms[7], ws) })
	atts, after := holderOf()
	if len(atts) != 1 || atts[0].VM != vms[7] || atts[0].Name != "sbx-n07" {
		t.Fatalf("attachments = %+v; want %s", atts, vms[7])
	}
	if after != 2 {
		t.Errorf("lookup of an attached workspace took %d requests; want 2 (holder, holding VM)", after)
	}
	if attach > 6 {
		t.Errorf("Attach took %d requests; want at most 6 (holder, claim, VM config, VM update, holder, claim settled)", attach)
	}

	// The same lookups as AgentLab made them before holders listed VMs.
	makeLegacy(ctx, t, c, ws)
	atts, before := holderOf()
	if len(atts) != 1 || atts[0].VM != vms[7] {
		t.Fatalf("legacy attachments = %+v; want %s", atts, vms[7])
	}
	if want := 1 + 1 + len(vms); before != want {
		t.Errorf("legacy lookup took %d requests; want %d (holder, /cluster/resources, every VM)", before, want)
	}
	t.Logf("who holds the workspace, %d sandboxes on the node: %d requests reading every VM, %d with the holder's list; Attach %d",
		len(vms), before, after, attach)

	// A legacy holder gets its list at the next attach, and a second VM is
	// refused, naming the first.
	var ae *workspace.AttachedError
	if err := workspace.Attach(ctx, c, vms[9], ws); !errors.As(err, &ae) || ae.VM != vms[7] {
		t.Fatalf("Attach while %s holds it: %v; want an AttachedError naming it", vms[7], err)
	}
	if err := workspace.Attach(ctx, c, vms[7], ws); err != nil {
		t.Fatalf("Attach again to the holding VM: %v", err)
	}
	if got := listOf(ctx, t, c, ws); !slices.Equal(got, []int{vms[7].VMID}) {
		t.Errorf("list after re-attach to a legacy holder = %v; want [%d]", got, vms[7].VMID)
	}
}

// listOf returns the VMIDs the holder lists.
func listOf(ctx context.Context, t *testing.T, c *pve.Client, ws workspace.Workspace) []int {
	t.Helper()
	cfg, err := c.Config(ctx, pve.VMRef{Node: ws.Node, VMID: ws.Holder})
	if err != nil {
		t.Fatal(err)
	}
	m := attachedList.FindString(cfg.Description())
	var out []int
	for _, s := range regexp.MustCompile(`[0-9]+`).FindAllString(m, -1) {
		var n int
		fmt.Sscan(s, &n)
		out = append(out, n)
	}
	return out
}

// TestHolderList: the list names a VM before it holds the workspace, loses
// it on detach, and drops destroyed VMs at the next attach, so it stays as
// short as the workspace's current use.
func TestHolderList(t *testing.T) {
	ctx, c, _ := setupSim(t)
	ws, err := workspace.Create(ctx, c, "pve", "local-lvm", "data", gib)
	if err != nil {
		t.Fatal(err)
	}
	if got := listOf(ctx, t, c, ws); len(got) != 0 {
		t.Fatalf("a new holder lists %v; want none", got)
	}
	a, b, d := sandbox(ctx, t, c, "a"), sandbox(ctx, t, c, "b"), sandbox(ctx, t, c, "d")
	if err := workspace.Attach(ctx, c, a, ws); err != nil {
		t.Fatal(err)
	}
	if got := listOf(ctx, t, c, ws); !slices.Equal(got, []int{a.VMID}) {
		t.Fatalf("list after attaching %s = %v", a, got)
	}
	if err := workspace.Detach(ctx, c, a, ws.Volume); err != nil {
		t.Fatal(err)
	}
	if got := listOf(ctx, t, c, ws); len(got) != 0 {
		t.Fatalf("list after detaching %s = %v; want none", a, got)
	}
	if err := workspace.Attach(ctx, c, b, ws); err != nil {
		t.Fatal(err)
	}
	// The sandbox dies holding it, as when the reaper destroys it.
	if err := c.Destroy(ctx, b); err != nil {
		t.Fatal(err)
	}
	if atts, err := workspace.Attachments(ctx, c, ws); err != nil || len(atts) != 0 {
		t.Fatalf("attachments once %s is gone = %v, %v; want none", b, atts, err)
	}
	if err := workspace.Attach(ctx, c, d, ws); err != nil {
		t.Fatal(err)
	}
	if got := listOf(ctx, t, c, ws); !slices.Equal(got, []int{d.VMID}) {
		t.Fatalf("list after %s was destroyed and %s attached = %v; want [%d]", b, d, got, d.VMID)
	}
}

// TestAttachClaim: a VM named on the holder's list holds the workspace even
// before its config shows the volume (its attach is under way), so a second
// sandbox is refused, naming it; the claim's own VM takes it up, and its
// detach releases it.
func TestAttachClaim(t *testing.T) {
	ctx, c, _ := setupSim(t)
	ws, err := workspace.Create(ctx, c, "pve", "local-lvm", "data", gib)
	if err != nil {
		t.Fatal(err)
	}
	a, b := sandbox(ctx, t, c, "claim-a"), sandbox(ctx, t, c, "claim-b")
	// a has claimed the workspace and crashed before attaching it.
	setList(ctx, t, c, ws, time.Now(), a.VMID)

	var ae *workspace.AttachedError
	err = workspace.Attach(ctx, c, b, ws)
	if !errors.As(err, &ae) || ae.VM != a || !ae.Pending {
		t.Fatalf("Attach b while a's claim stands: %v; want a pending AttachedError naming %s", err, a)
	}
	if err := workspace.Attach(ctx, c, a, ws); err != nil {
		t.Fatalf("Attach a, taking up its own claim: %v", err)
	}
	if err := workspace.Detach(ctx, c, a, ws.Volume); err != nil {
		t.Fatal(err)
	}
	if err := workspace.Attach(ctx, c, b, ws); err != nil {
		t.Fatalf("Attach b after a detached: %v", err)
	}

	// A claim without an attachment is released by its VM's detach too.
	ws2, err := workspace.Create(ctx, c, "pve", "local-lvm", "data2", gib)
	if err != nil {
		t.Fatal(err)
	}
	setList(ctx, t, c, ws2, time.Now(), a.VMID)
	if err := workspace.Detach(ctx, c, a, ws2.Volume); err != nil {
		t.Fatal(err)
	}
	d := sandbox(ctx, t, c, "claim-d")
	if err := workspace.Attach(ctx, c, d, ws2); err != nil {
		t.Fatalf("Attach after the claiming VM detached: %v", err)
	}

	// A claim older than ClaimTTL lapses: its attach was cut short, or its
	// VMID went to a new VM.
	ws3, err := workspace.Create(ctx, c, "pve", "local-lvm", "data3", gib)
	if err != nil {
		t.Fatal(err)
	}
	setList(ctx, t, c, ws3, time.Now().Add(-workspace.ClaimTTL-time.Minute), a.VMID)
	if err := workspace.Attach(ctx, c, sandbox(ctx, t, c, "claim-e"), ws3); err != nil {
		t.Fatalf("Attach past a lapsed claim: %v", err)
	}
}

// TestAttachRace: of several sandboxes attaching one workspace at once,
// exactly one gets it and every other is refused naming a sandbox.
func TestAttachRace(t *testing.T) {
	ctx, c, _ := setupSim(t)
	ws, err := workspace.Create(ctx, c, "pve", "local-lvm", "data", gib)
	if err != nil {
		t.Fatal(err)
	}
	const n = 6
	var vms []pve.VMRef
	for i := range n {
		vms = append(vms, sandbox(ctx, t, c, fmt.Sprintf("race%d", i)))
	}
	errs := make([]error, n)
	done := make(chan int)
	for i, vm := range vms {
		go func() { errs[i] = workspace.Attach(ctx, c, vm, ws); done <- i }()
	}
	for range n {
		<-done
	}
	won := 0
	for i, err := range errs {
		var ae *workspace.AttachedError
		switch {
		case err == nil:
			won++
		case errors.As(err, &ae):
			if !slices.Contains(vms, ae.VM) || ae.VM == vms[i] {
				t.Errorf("sandbox %s refused naming %s", vms[i], ae.VM)
			}
		default:
			t.Errorf("sandbox %s: %v", vms[i], err)
		}
	}
	if won != 1 {
		t.Fatalf("%d sandboxes attached the workspace; want exactly 1 (errors: %v)", won, errs)
	}
	atts, err := workspace.Attachments(ctx, c, ws)
	if err != nil || len(atts) != 1 {
		t.Fatalf("Attachments = %v, %v; want the one winner", atts, err)
	}
}

// setList writes the holder's list as vmids, each claimed at time at, as an
// attach does before it attaches the volume.
func setList(ctx context.Context, t *testing.T, c *pve.Client, ws workspace.Workspace, at time.Time, vmids ...int) {
	t.Helper()
	ref := pve.VMRef{Node: ws.Node, VMID: ws.Holder}
	cfg, err := c.Config(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	var ids, claims []string
	for _, v := range vmids {
		ids = append(ids, fmt.Sprint(v))
		claims = append(claims, fmt.Sprintf("%q:%d", fmt.Sprint(v), at.Unix()))
	}
	list := `,"attached":[` + strings.Join(ids, ",") + `],"claims":{` + strings.Join(claims, ",") + `}`
	desc := attachedList.ReplaceAllString(cfg.Description(), list)
	if desc == cfg.Description() {
		t.Fatalf("holder description %q: no list to replace", desc)
	}
	if err := c.UpdateConfig(ctx, ref, pve.ConfigUpdate{Set: map[string]string{"description": desc}}); err != nil {
		t.Fatal(err)
	}
}
