package pvesim_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/Telmate/proxmox-api-go/proxmox"

	"github.com/agentlab/terraform-provider-agentlab/internal/pvesim"
	"github.com/agentlab/terraform-provider-agentlab/internal/pvesim/pvesimtest"
)

// These tests drive the simulator through the client library the project
// uses, github.com/Telmate/proxmox-api-go, to show that it cannot tell the
// simulator from PVE.

func newLibClient(t *testing.T, sim *pvesimtest.Sim) *proxmox.Client {
	t.Helper()
	c, err := proxmox.NewClient(sim.URL, sim.Client, "", sim.TLSConfig, "", 300, false)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	var id proxmox.ApiTokenID
	if err := id.Parse(sim.TokenID); err != nil {
		t.Fatalf("parse token id %q: %v", sim.TokenID, err)
	}
	c.SetAPIToken(id, proxmox.ApiTokenSecret(sim.TokenSecret))
	return c
}

func vmRef(id int, node string) *proxmox.VmRef {
	r := proxmox.NewVmRef(proxmox.GuestID(id))
	r.SetNode(node)
	r.SetVmType(proxmox.GuestQemu)
	return r
}

func apiError(t *testing.T, err error) *proxmox.ApiError {
	t.Helper()
	var ae *proxmox.ApiError
	if !errors.As(err, &ae) {
		t.Fatalf("error %v (%T) is not an *ApiError", err, err)
	}
	return ae
}

func TestLibraryLinkedCloneLifecycle(t *testing.T) {
	sim := pvesimtest.Start(t)
	c := newLibClient(t, sim)
	ctx := context.Background()

	v, err := c.GetVersion(ctx)
	if err != nil {
		t.Fatalf("GetVersion: %v", err)
	}
	if v.Major < 8 {
		t.Fatalf("GetVersion major = %d; want >= 8", v.Major)
	}

	// Auto-ID linked clone: the library asks nextid, clones, waits for the task.
	name := proxmox.GuestName("sbx-one")
	clone, err := vmRef(9000, "pve").CloneQemu(ctx, proxmox.CloneQemuTarget{
		Linked: &proxmox.CloneLinked{Node: "pve", Name: &name},
	}, c)
	if err != nil {
		t.Fatalf("CloneQemu: %v", err)
	}
	if got, want := int(clone.VmId()), 100; got != want {
		t.Fatalf("clone VMID = %d; want %d", got, want)
	}
	cfg, err := c.GetVmConfig(ctx, clone)
	if err != nil {
		t.Fatalf("GetVmConfig: %v", err)
	}
	if got, want := cfg["scsi0"], "local-lvm:vm-100-disk-0,size=8G"; got != want {
		t.Errorf("scsi0 = %v; want %v", got, want)
	}
	if got, want := cfg["name"], "sbx-one"; got != want {
		t.Errorf("name = %v; want %v", got, want)
	}
	if _, ok := cfg["template"]; ok {
		t.Errorf("clone config has template = %v; want none", cfg["template"])
	}
	tmplCfg, _ := sim.Server.VMConfig(9000)
	if cfg["net0"] == tmplCfg["net0"] {
		t.Errorf("clone net0 = template net0 %v; want a new MAC", cfg["net0"])
	}

	if _, err := c.SetVmConfig(clone, map[string]any{"cores": 2, "memory": 2048, "tags": "agentlab,Team-A agentlab"}); err != nil {
		t.Fatalf("SetVmConfig: %v", err)
	}
	cfg, err = c.GetVmConfig(ctx, clone)
	if err != nil {
		t.Fatalf("GetVmConfig: %v", err)
	}
	if got, want := cfg["cores"], float64(2); got != want {
		t.Errorf("cores = %#v; want %#v (a JSON number)", got, want)
	}
	if got, want := cfg["memory"], "2048"; got != want {
		t.Errorf("memory = %#v; want %#v (a JSON string)", got, want)
	}
	if got, want := cfg["tags"], "agentlab;team-a"; got != want {
		t.Errorf("tags = %#v; want %#v", got, want)
	}

	if _, err := c.StartVm(ctx, clone); err != nil {
		t.Fatalf("StartVm: %v", err)
	}
	ifaces, state, err := clone.GetAgentInformation(ctx, c)
	if err != nil || state != proxmox.GuestAgentStateRunning {
		t.Fatalf("GetAgentInformation = state %v, err %v; want running, nil", state, err)
	}
	var ips []string
	for _, i := range ifaces.Get() {
		for _, ip := range i.IpAddresses {
			ips = append(ips, ip.String())
		}
	}
	if want := pvesim.GuestIPv4(100).String(); !strings.Contains(strings.Join(ips, " "), want) {
		t.Errorf("agent IPs = %v; want %s among them", ips, want)
	}

	// Delete stops the running guest first, then destroys it.
	if err := clone.Delete(ctx, c); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, ok := sim.Server.VM(100); ok {
		t.Errorf("VM 100 exists after Delete; want it gone")
	}
	vols := map[string]bool{}
	for _, v := range sim.Server.Volumes("") {
		vols[v.Volid] = true
	}
	if vols["local-lvm:vm-100-disk-0"] {
		t.Errorf("volume local-lvm:vm-100-disk-0 exists after Delete; want it freed")
	}
	if !vols["local-lvm:base-9000-disk-0"] {
		t.Errorf("template volume local-lvm:base-9000-disk-0 is gone; want it kept")
	}
}

func TestLibraryFullClone(t *testing.T) {
	sim := pvesimtest.Start(t)
	c := newLibClient(t, sim)
	ctx := context.Background()
	id := proxmox.GuestID(120)
	clone, err := vmRef(9000, "pve").CloneQemu(ctx, proxmox.CloneQemuTarget{
		Full: &proxmox.CloneQemuFull{Node: "pve", ID: &id},
	}, c)
	if err != nil {
		t.Fatalf("CloneQemu full: %v", err)
	}
	cfg, err := c.GetVmConfig(ctx, clone)
	if err != nil {
		t.Fatalf("GetVmConfig: %v", err)
	}
	if got, want := cfg["scsi0"], "local-lvm:vm-120-disk-0,size=8G"; got != want {
		t.Errorf("scsi0 = %v; want %v", got, want)
	}
	if got, want := cfg["name"], "Copy-of-VM-debian-12-cloud"; got != want {
		t.Errorf("name = %v; want %v", got, want)
	}
	for _, v := range sim.Server.Volumes("pve") {
		if v.Volid == "local-lvm:vm-120-disk-0" && v.Parent != "" {
			t.Errorf("full clone volume parent = %q; want none", v.Parent)
		}
	}
}

func TestLibraryTicketLoginAndCSRF(t *testing.T) {
	sim := pvesimtest.Start(t)
	ctx := context.Background()
	c, err := proxmox.NewClient(sim.URL, sim.Client, "", sim.TLSConfig, "", 300, false)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	if err := c.Login(ctx, sim.User, sim.Password, ""); err != nil {
		t.Fatalf("Login: %v", err)
	}
	if _, err := c.CloneQemuVm(ctx, vmRef(9000, "pve"), map[string]any{"newid": 130}); err != nil {
		t.Fatalf("CloneQemuVm with ticket: %v", err)
	}
	if _, err := c.SetVmConfig(vmRef(130, "pve"), map[string]any{"description": "hello  \n"}); err != nil {
		t.Fatalf("SetVmConfig with ticket: %v", err)
	}
	cfg, _ := sim.Server.VMConfig(130)
	if got, want := cfg["description"], "hello"; got != want {
		t.Errorf("description = %q; want %q (trailing whitespace stripped)", got, want)
	}

	bad, err := proxmox.NewClient(sim.URL, sim.Client, "", sim.TLSConfig, "", 300, false)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	if err := bad.Login(ctx, sim.User, "wrong", ""); err == nil {
		t.Errorf("Login with a wrong password succeeded; want an error")
	}
	// A valid ticket with a forged CSRF token is refused for POST.
	bad.SetTicket(ticketOf(t, sim), "00000000:forged")
	err = bad.Post(ctx, map[string]any{}, "/nodes/pve/qemu/130/status/start")
	if err == nil || !strings.Contains(err.Error(), "401 Permission denied - invalid csrf token") {
		t.Errorf("POST with a bad CSRF token: err = %v; want 401 Permission denied - invalid csrf token", err)
	}
}

// ticketOf logs in over HTTP and returns a valid ticket.
func ticketOf(t *testing.T, sim *pvesimtest.Sim) string {
	t.Helper()
	var out struct {
		Data struct {
			Ticket string `json:"ticket"`
		} `json:"data"`
	}
	doJSON(t, sim, http.MethodPost, "/access/ticket", "username="+sim.User+"&password="+sim.Password, "", &out)
	if out.Data.Ticket == "" {
		t.Fatalf("no ticket in login answer")
	}
	return out.Data.Ticket
}

func TestLibraryErrorPaths(t *testing.T) {
	sim := pvesimtest.Start(t)
	c := newLibClient(t, sim)
	ctx := context.Background()
	tmpl := vmRef(9000, "pve")
	if _, err := c.CloneQemuVm(ctx, tmpl, map[string]any{"newid": 101, "name": "victim"}); err != nil {
		t.Fatalf("clone: %v", err)
	}
	vm := vmRef(101, "pve")

	t.Run("existing target", func(t *testing.T) {
		_, err := c.CloneQemuVm(ctx, tmpl, map[string]any{"newid": 101})
		if got, want := apiError(t, err).Message, "unable to create VM 101: config file already exists"; got != want {
			t.Errorf("message = %q; want %q", got, want)
		}
	})
	t.Run("locked VM", func(t *testing.T) {
		if err := sim.Server.SetLock(101, "backup"); err != nil {
			t.Fatal(err)
		}
		defer sim.Server.SetLock(101, "")
		_, err := c.SetVmConfig(vm, map[string]any{"cores": 4})
		if got, want := apiError(t, err).Message, "VM is locked (backup)"; got != want {
			t.Errorf("message = %q; want %q", got, want)
		}
	})
	t.Run("missing VM", func(t *testing.T) {
		_, err := proxmox.NewRawConfigQemuFromApi(ctx, vmRef(555, "pve"), c)
		if got, want := apiError(t, err).Message, "Configuration file 'nodes/pve/qemu-server/555.conf' does not exist"; got != want {
			t.Errorf("message = %q; want %q", got, want)
		}
	})
	t.Run("shrink", func(t *testing.T) {
		_, err := c.ResizeQemuDiskRaw(ctx, vm, "scsi0", "4G")
		if err == nil || !strings.Contains(err.Error(), "shrinking disks is not supported") {
			t.Errorf("resize to 4G: err = %v; want shrinking disks is not supported", err)
		}
		if _, err := c.ResizeQemuDiskRaw(ctx, vm, "scsi0", "+2G"); err != nil {
			t.Errorf("resize +2G: %v", err)
		}
		cfg, _ := sim.Server.VMConfig(101)
		if got, want := cfg["scsi0"], "local-lvm:vm-101-disk-0,size=10G"; got != want {
			t.Errorf("scsi0 after resize = %q; want %q", got, want)
		}
	})
	t.Run("running destroy", func(t *testing.T) {
		if _, err := c.StartVm(ctx, vm); err != nil {
			t.Fatal(err)
		}
		defer c.StopVm(ctx, vm)
		_, err := c.DeleteVmParams(ctx, vm, map[string]any{"purge": 1})
		if got, want := apiError(t, err).Message, "VM 101 is running - destroy failed"; got != want {
			t.Errorf("message = %q; want %q", got, want)
		}
	})
	t.Run("protection", func(t *testing.T) {
		if _, err := c.SetVmConfig(vm, map[string]any{"protection": 1}); err != nil {
			t.Fatal(err)
		}
		defer c.SetVmConfig(vm, map[string]any{"protection": 0})
		_, err := c.DeleteVmParams(ctx, vm, nil)
		if got, want := apiError(t, err).Message, "can't remove VM 101 - protection mode enabled"; got != want {
			t.Errorf("message = %q; want %q", got, want)
		}
	})
	t.Run("unknown parameter", func(t *testing.T) {
		_, err := c.SetVmConfig(vm, map[string]any{"bogus": 1})
		ae := apiError(t, err)
		if ae.Code != "400" || ae.Message != "Parameter verification failed." {
			t.Errorf("got %s %q; want 400 Parameter verification failed.", ae.Code, ae.Message)
		}
		if got, want := ae.Errors["bogus"], "property is not defined in schema and the schema does not allow additional properties"; got != want {
			t.Errorf("errors[bogus] = %v; want %q", got, want)
		}
	})
	t.Run("bad token", func(t *testing.T) {
		bad, err := proxmox.NewClient(sim.URL, sim.Client, "", sim.TLSConfig, "", 300, false)
		if err != nil {
			t.Fatal(err)
		}
		var id proxmox.ApiTokenID
		_ = id.Parse(sim.TokenID)
		bad.SetAPIToken(id, "not-the-secret")
		err = bad.Post(ctx, map[string]any{}, "/nodes/pve/qemu/101/status/start")
		if err == nil || err.Error() != "401 Authentication failed!" {
			t.Errorf("err = %v; want 401 Authentication failed!", err)
		}
	})
}

func TestLibraryLegacyErrorsLoseText(t *testing.T) {
	sim := pvesimtest.Start(t, func(o *pvesim.Options) { o.LegacyErrors = true })
	c := newLibClient(t, sim)
	ctx := context.Background()
	_, err := c.CloneQemuVm(ctx, vmRef(9000, "pve"), map[string]any{"newid": 9000})
	ae := apiError(t, err)
	if ae.Code != "500" || ae.Message != "" {
		t.Errorf("legacy error = code %s message %q; want 500 and an empty message", ae.Code, ae.Message)
	}
}
