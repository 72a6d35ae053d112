package pvesim_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/Telmate/proxmox-api-go/proxmox"

	"github.com/agentlab/terraform-provider-agentlab/internal/clock"
	"github.com/agentlab/terraform-provider-agentlab/internal/pvesim"
	"github.com/agentlab/terraform-provider-agentlab/internal/pvesim/pvesimtest"
)

// Calls other Proxmox clients make (issue 10, "Other clients").

func TestPools(t *testing.T) {
	sim := pvesimtest.Start(t)
	if got := data(t, sim, "GET", "/pools", ""); len(got.([]any)) != 0 {
		t.Errorf("GET /pools without pools = %v; want []", got)
	}
	a := do(t, sim, "GET", "/pools/nope", "", "")
	if a.status != 500 || a.reason != "pool 'nope' does not exist" {
		t.Errorf("GET /pools/nope = %d %q; want 500 pool 'nope' does not exist", a.status, a.reason)
	}

	sim = pvesimtest.Start(t, func(o *pvesim.Options) { o.Pools = []string{"sbx", "ci"} })
	if st := task(t, sim, "POST", "/nodes/pve/qemu/9000/clone", "newid=101&pool=sbx"); st != "OK" {
		t.Fatalf("clone into pool = %s", st)
	}
	list := data(t, sim, "GET", "/pools", "").([]any)
	if len(list) != 2 || asObject(list[0])["poolid"] != "ci" || asObject(list[1])["poolid"] != "sbx" {
		t.Errorf("GET /pools = %v; want ci and sbx", list)
	}
	one := asObject(data(t, sim, "GET", "/pools/sbx", ""))
	members, _ := one["members"].([]any)
	if len(members) != 1 || asObject(members[0])["id"] != "qemu/101" || asObject(members[0])["vmid"] != float64(101) {
		t.Errorf("GET /pools/sbx = %v; want member qemu/101", one)
	}
	if m := asObject(data(t, sim, "GET", "/pools/sbx?type=storage", ""))["members"].([]any); len(m) != 0 {
		t.Errorf("storage members = %v; want none", m)
	}
	withMembers := data(t, sim, "GET", "/pools?poolid=sbx", "").([]any)
	if len(withMembers) != 1 || len(asObject(withMembers[0])["members"].([]any)) != 1 {
		t.Errorf("GET /pools?poolid=sbx = %v; want the pool with its member", withMembers)
	}
}

func TestUsersAndPermissions(t *testing.T) {
	sim := pvesimtest.Start(t)
	users := data(t, sim, "GET", "/access/users", "").([]any)
	if len(users) != 1 || asObject(users[0])["userid"] != "root@pam" || asObject(users[0])["tokens"] != nil {
		t.Errorf("GET /access/users = %v; want root@pam without tokens", users)
	}
	full := data(t, sim, "GET", "/access/users?full=1", "").([]any)
	toks, _ := asObject(full[0])["tokens"].([]any)
	if len(toks) != 1 || asObject(toks[0])["tokenid"] != strings.Split(sim.TokenID, "!")[1] || asObject(toks[0])["privsep"] != float64(0) {
		t.Errorf("GET /access/users?full=1 = %v; want root@pam with the token (privsep 0)", full)
	}
	perms := asObject(data(t, sim, "GET", "/access/permissions", ""))
	root := asObject(perms["/"])
	if root["VM.Clone"] != float64(1) || root["Sys.Audit"] != float64(1) || perms["/vms"] == nil {
		t.Errorf("GET /access/permissions = %v; want every privilege on / and /vms", perms)
	}
	one := asObject(data(t, sim, "GET", "/access/permissions?path=/vms/101", ""))
	if len(one) != 1 || asObject(one["/vms/101"])["VM.Allocate"] != float64(1) {
		t.Errorf("permissions on /vms/101 = %v; want that path only", one)
	}
	if got := asObject(data(t, sim, "GET", "/access/permissions?userid=nobody@pve", "")); len(got) != 0 {
		t.Errorf("permissions of an unknown user = %v; want {}", got)
	}
	if a := do(t, sim, "GET", "/access/permissions?userid=bad", "", ""); a.status != 400 {
		t.Errorf("permissions?userid=bad = %d; want 400", a.status)
	}
}

func TestCloudinitRegenerate(t *testing.T) {
	sim := pvesimtest.Start(t)
	if st := task(t, sim, "POST", "/nodes/pve/qemu/9000/clone", "newid=101"); st != "OK" {
		t.Fatalf("clone = %s", st)
	}
	if got := data(t, sim, "PUT", "/nodes/pve/qemu/101/cloudinit", ""); got != nil {
		t.Errorf("PUT cloudinit = %v; want null", got)
	}
	if err := sim.Server.SetLock(101, "backup"); err != nil {
		t.Fatal(err)
	}
	if a := do(t, sim, "PUT", "/nodes/pve/qemu/101/cloudinit", "", ""); a.status != 500 || a.reason != "VM is locked (backup)" {
		t.Errorf("PUT cloudinit on a locked VM = %d %q; want 500 VM is locked (backup)", a.status, a.reason)
	}
	if a := do(t, sim, "PUT", "/nodes/pve/qemu/999/cloudinit", "", ""); a.status != 500 {
		t.Errorf("PUT cloudinit on a missing VM = %d; want 500", a.status)
	}
}

func TestDriveStrings(t *testing.T) {
	sim := pvesimtest.Start(t)
	if st := task(t, sim, "POST", "/nodes/pve/qemu", "vmid=150&scsi0=local-lvm%3A2%2C%2Cdiscard%3Don&ide2=file%3Dlocal-lvm%3Acloudinit%2C&net0=virtio%2Cbridge%3Dvmbr0&boot=order%3Dscsi0%3Bide2%3Bnet0"); st != "OK" {
		t.Fatalf("create = %s", st)
	}
	cfg, _ := sim.Server.VMConfig(150)
	if got, want := cfg["scsi0"], "local-lvm:vm-150-disk-0,discard=on,size=2G"; got != want {
		t.Errorf("scsi0 = %q; want %q (empty segment skipped)", got, want)
	}
	if strings.Contains(cfg["ide2"], ",,") || strings.HasSuffix(cfg["ide2"], ",") || !strings.Contains(cfg["ide2"], "vm-150-cloudinit") {
		t.Errorf("ide2 = %q; want the cloud-init volume without empty segments", cfg["ide2"])
	}
	// A size given in bytes is written as PVE writes it.
	data(t, sim, "POST", "/nodes/pve/storage/local-lvm/content", "filename=vm-150-disk-1&size=2G&vmid=150")
	data(t, sim, "PUT", "/nodes/pve/qemu/150/config", "scsi1=local-lvm%3Avm-150-disk-1%2Csize%3D2147483648")
	cfg, _ = sim.Server.VMConfig(150)
	if !strings.HasSuffix(cfg["scsi1"], ",size=2G") {
		t.Errorf("scsi1 = %q; want size=2G", cfg["scsi1"])
	}
	// A deleted disk leaves the boot order.
	data(t, sim, "PUT", "/nodes/pve/qemu/150/config", "delete=ide2")
	cfg, _ = sim.Server.VMConfig(150)
	if cfg["boot"] != "order=scsi0;net0" {
		t.Errorf("boot after deleting ide2 = %q; want order=scsi0;net0", cfg["boot"])
	}
}

func TestVersionDefaultAndChosen(t *testing.T) {
	sim := pvesimtest.Start(t)
	v := asObject(data(t, sim, "GET", "/version", ""))
	if v["version"] != pvesim.DefaultVersion || v["release"] != "9.1" {
		t.Errorf("version = %v; want %s, release 9.1", v, pvesim.DefaultVersion)
	}
	sim = pvesimtest.Start(t, func(o *pvesim.Options) { o.Version = "8.4.14" })
	if v := asObject(data(t, sim, "GET", "/version", "")); v["version"] != "8.4.14" || v["release"] != "8.4" {
		t.Errorf("version with Options.Version 8.4.14 = %v", v)
	}
}

// TestGuestAgentAddresses: the agent reports the address ipconfig0 gives
// (static, or the DHCP lease on any bridge), and nothing for a VM without a boot disk.
func TestGuestAgentAddresses(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	sim := pvesimtest.Start(t, func(o *pvesim.Options) {
		o.Clock = clk
		o.Latency = pvesim.Latency{GuestAgentIP: 10 * time.Second}
	})
	ips := func(vmid int) []string {
		d := asObject(data(t, sim, "GET", "/nodes/pve/qemu/"+strconv.Itoa(vmid)+"/agent/network-get-interfaces", ""))
		var out []string
		for _, i := range d["result"].([]any) {
			for _, a := range asObject(i)["ip-addresses"].([]any) {
				if asObject(a)["ip-address-type"] == "ipv4" {
					out = append(out, fmt.Sprint(asObject(a)["ip-address"], "/", asObject(a)["prefix"]))
				}
			}
		}
		return out
	}
	for _, tc := range []struct {
		vmid  int
		extra string
	}{
		{101, ""},
		{102, "ide2=local-lvm%3Acloudinit&ipconfig0=ip%3D192.0.2.10%2F24%2Cgw%3D192.0.2.1"},
		{103, "ide2=local-lvm%3Acloudinit&ipconfig0=ip%3Ddhcp&net0=virtio%2Cbridge%3Dvmbr2"},
		{104, "ide2=local-lvm%3Acloudinit&ipconfig0=ip6%3Dauto"},
		{106, "ipconfig0=ip%3D192.0.2.11%2F24"}, // no cloud-init drive: DHCP
		{105, "delete=net0"},
	} {
		if st := task(t, sim, "POST", "/nodes/pve/qemu/9000/clone", "newid="+strconv.Itoa(tc.vmid)); st != "OK" {
			t.Fatalf("clone = %s", st)
		}
		data(t, sim, "PUT", "/nodes/pve/qemu/"+strconv.Itoa(tc.vmid)+"/config", "agent=1&"+tc.extra)
		task(t, sim, "POST", "/nodes/pve/qemu/"+strconv.Itoa(tc.vmid)+"/status/start", "")
	}
	clk.Advance(11 * time.Second)
	for _, tc := range []struct {
		vmid int
		want string
	}{
		{101, "127.0.0.1/8 " + pvesim.GuestIPv4(101).String() + "/16"},
		{102, "127.0.0.1/8 192.0.2.10/24"},
		{103, "127.0.0.1/8 " + pvesim.GuestIPv4(103).String() + "/16"},
		{104, "127.0.0.1/8"},
		{105, "127.0.0.1/8"},
		{106, "127.0.0.1/8 " + pvesim.GuestIPv4(106).String() + "/16"},
	} {
		if got := strings.Join(ips(tc.vmid), " "); got != tc.want {
			t.Errorf("VM %d reports %q; want %q", tc.vmid, got, tc.want)
		}
	}
	// No boot disk: the agent never answers.
	data(t, sim, "PUT", "/nodes/pve/qemu/101/config", "delete=scsi0")
	task(t, sim, "POST", "/nodes/pve/qemu/101/status/stop", "")
	task(t, sim, "POST", "/nodes/pve/qemu/101/status/start", "")
	clk.Advance(time.Minute)
	if a := do(t, sim, "GET", "/nodes/pve/qemu/101/agent/network-get-interfaces", "", ""); a.status != 500 || a.reason != "QEMU guest agent is not running" {
		t.Errorf("agent of a VM without a boot disk = %d %q; want 500 QEMU guest agent is not running", a.status, a.reason)
	}
}

func TestLibraryOtherClients(t *testing.T) {
	sim := pvesimtest.Start(t, func(o *pvesim.Options) { o.Pools = []string{"sbx"} })
	c := newLibClient(t, sim)
	ctx := context.Background()
	pools, err := proxmox.ListPools(ctx, c)
	if err != nil || len(pools) != 1 || pools[0] != "sbx" {
		t.Errorf("ListPools = %v, %v; want [sbx]", pools, err)
	}
	users, err := proxmox.ListUsers(ctx, c, true)
	if err != nil || users == nil || len(*users) != 1 || (*users)[0].User.String() != "root@pam" {
		t.Errorf("ListUsers(full) = %v, %v; want root@pam", users, err)
	}
	if err := c.RefreshPermissions(ctx); err != nil {
		t.Fatalf("RefreshPermissions: %v", err)
	}
	if err := c.CheckPermissions(ctx, []proxmox.Permission{{Category: proxmox.PermissionCategory_Root, Privileges: proxmox.Privileges{VMClone: true, VMAllocate: true}}}); err != nil {
		t.Errorf("CheckPermissions(VM.Clone, VM.Allocate on /) = %v", err)
	}
	v, err := c.GetVersion(ctx)
	if err != nil || v.Major != 9 {
		t.Errorf("GetVersion = %+v, %v; want major 9", v, err)
	}
}
