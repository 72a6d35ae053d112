package provider

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"

	"github.com/agentlab/terraform-provider-agentlab/internal/lease"
	"github.com/agentlab/terraform-provider-agentlab/internal/pve"
	"github.com/agentlab/terraform-provider-agentlab/internal/volume"
)

const testKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHk2cGv0fSJ3nF1sJm8hXW7q1l3uCz4bZ4YJ5n5q8mWc test@agentlab"

func TestAccSandbox_createUpdateImport(t *testing.T) {
	e := newAccEnv(t)
	const addr = "agentlab_sandbox.test"
	var firstVMID int
	resource.ParallelTest(t, resource.TestCase{
		ProtoV6ProviderFactories: e.factories(),
		CheckDestroy:             e.checkNothingLeft(t),
		Steps: []resource.TestStep{
			{
				Config: e.config(`
resource "agentlab_sandbox" "test" {
  name                = "acc-one"
  template_vmid       = 9000
  ttl                 = "2h"
  wait_for_ip         = true
  ssh_authorized_keys = [` + strconv.Quote(testKey) + `]
  tags                = ["team-ml"]
}
`),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply: []plancheck.PlanCheck{
						plancheck.ExpectResourceAction(addr, plancheck.ResourceActionCreate),
						plancheck.ExpectKnownValue(addr, tfjsonpath.New("cores"), knownvalue.Int64Exact(defaultCores)),
						plancheck.ExpectKnownValue(addr, tfjsonpath.New("memory"), knownvalue.Int64Exact(defaultMemory)),
						plancheck.ExpectUnknownValue(addr, tfjsonpath.New("lease_expires_at")),
						plancheck.ExpectUnknownValue(addr, tfjsonpath.New("disk_size")),
					},
					PostApplyPostRefresh: emptyPlanAfterApply(),
				},
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue(addr, tfjsonpath.New("status"), knownvalue.StringExact("running")),
					statecheck.ExpectKnownValue(addr, tfjsonpath.New("ip_address"), knownvalue.StringRegexp(regexp.MustCompile(`^\d+\.\d+\.\d+\.\d+$`))),
					statecheck.ExpectKnownValue(addr, tfjsonpath.New("lease_expires_at"), knownvalue.StringExact(t0.Add(2*time.Hour).Format(time.RFC3339))),
					statecheck.ExpectKnownValue(addr, tfjsonpath.New("disk_size"), knownvalue.StringExact("8G")),
					statecheck.ExpectKnownValue(addr, tfjsonpath.New("bridge"), knownvalue.StringExact(defaultBridge)),
					statecheck.ExpectKnownValue(addr, tfjsonpath.New("owner"), knownvalue.StringExact("root@pam")),
					statecheck.ExpectKnownValue(addr, tfjsonpath.New("tags"), knownvalue.SetExact([]knownvalue.Check{knownvalue.StringExact("team-ml")})),
				},
				Check: func(s *terraform.State) error {
					vmid, err := stateVMID(s, addr)
					if err != nil {
						return err
					}
					firstVMID = vmid
					if got := s.RootModule().Resources[addr].Primary.ID; got != fmt.Sprintf("pve/%d", vmid) {
						return fmt.Errorf("id = %q; want pve/%d", got, vmid)
					}
					cfg := e.vmConfig(t, vmid)
					tags := cfg.Tags()
					wantExp := lease.ExpiryTag(t0.Add(2 * time.Hour))
					if !hasTag(tags, lease.TagOwned) || !hasTag(tags, "team-ml") || expiryTag(tags) != wantExp {
						return fmt.Errorf("tags = %v; want agentlab, team-ml and %s", tags, wantExp)
					}
					md, err := lease.Decode(cfg.Description())
					if err != nil {
						return fmt.Errorf("metadata block: %w", err)
					}
					if !md.ExpiresAt.Equal(t0.Add(2*time.Hour)) || !md.CreatedAt.Equal(t0) || md.Owner != "root@pam" {
						return fmt.Errorf("metadata = %+v; want created %s, expires %s, owner root@pam", md, t0, t0.Add(2*time.Hour))
					}
					if cfg.Name() != "acc-one" || cfg.Int("cores") != defaultCores || cfg.Value("agent") != "1" {
						return fmt.Errorf("name, cores, agent = %q, %d, %q", cfg.Name(), cfg.Int("cores"), cfg.Value("agent"))
					}
					// wait_for_ip saw the guest boot: its seed is ejected and deleted.
					if d, ok := cfg.Drive(isoDrive); !ok || d.Volume != "none" || !d.CDROM() {
						return fmt.Errorf("%s = %+v; want an empty CD-ROM once the guest booted", isoDrive, d)
					}
					if isos := e.isos(t); len(isos) != 0 {
						return fmt.Errorf("ISOs = %v; want none once the guest booted", isos)
					}
					return nil
				},
			},
			{
				// In place: name, cores, memory, disk growth, bridge, firewall, tags.
				Config: e.config(`
resource "agentlab_sandbox" "test" {
  name                = "acc-renamed"
  template_vmid       = 9000
  cores               = 4
  memory              = 4096
  disk_size           = "12G"
  bridge              = "vmbr1"
  firewall            = false
  ttl                 = "2h"
  wait_for_ip         = true
  ssh_authorized_keys = [` + strconv.Quote(testKey) + `]
  tags                = ["team-ml", "agentlab-keep"]
}
`),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply: []plancheck.PlanCheck{
						plancheck.ExpectResourceAction(addr, plancheck.ResourceActionUpdate),
						plancheck.ExpectKnownValue(addr, tfjsonpath.New("lease_expires_at"), knownvalue.StringExact(t0.Add(2*time.Hour).Format(time.RFC3339))),
					},
					PostApplyPostRefresh: emptyPlanAfterApply(),
				},
				Check: func(s *terraform.State) error {
					vmid, err := stateVMID(s, addr)
					if err != nil {
						return err
					}
					if vmid != firstVMID {
						return fmt.Errorf("vmid = %d; want %d (updated in place)", vmid, firstVMID)
					}
					cfg := e.vmConfig(t, vmid)
					nic, _ := cfg.NIC("net0")
					disk, _ := cfg.Drive(cfg.BootDisk())
					if cfg.Name() != "acc-renamed" || cfg.Int("cores") != 4 || cfg.Int("memory") != 4096 ||
						nic.Bridge != "vmbr1" || nic.Firewall || disk.SizeBytes != 12<<30 {
						return fmt.Errorf("config = name %q cores %d memory %d net0 %+v disk %s; want the updated values",
							cfg.Name(), cfg.Int("cores"), cfg.Int("memory"), nic, disk.Size)
					}
					if !hasTag(cfg.Tags(), "agentlab-keep") || expiryTag(cfg.Tags()) != lease.ExpiryTag(t0.Add(2*time.Hour)) {
						return fmt.Errorf("tags = %v; want agentlab-keep and the unchanged expiry tag", cfg.Tags())
					}
					return nil
				},
			},
			{
				ResourceName:      addr,
				ImportState:       true,
				ImportStateVerify: true,
				// Settings an import cannot read from the VM: the keys live in
				// the cloud-init ISO; wait_for_ip (with the address it fills) is
				// a Terraform-side choice; LVM-thin does not tell a linked
				// clone's template; iso_storage is read from the CD-ROM, which is
				// empty once the guest booted. The first apply after an import
				// records the configuration's values for them without replacing
				// anything.
				ImportStateVerifyIgnore: []string{"ssh_authorized_keys", "wait_for_ip", "ip_address", "ssh_command", "timeouts", "template_vmid", "full_clone", "iso_storage"},
			},
		},
	})
}

func TestAccSandbox_import(t *testing.T) {
	e := newAccEnv(t)
	ctx := context.Background()
	// A VM cloned outside AgentLab: no agentlab tag.
	unmanaged, err := e.api.Clone(ctx, pve.CloneRequest{Node: "pve", SourceVMID: 9000, Name: "hand-made", Description: "made by hand"})
	if err != nil {
		t.Fatalf("clone outside AgentLab: %v", err)
	}
	// A sandbox made by another Terraform workspace: tagged, with metadata.
	l, err := lease.New(t0, time.Hour, 0, lease.Destroy)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := lease.Encode("", lease.Metadata{Owner: "someone@pve", Nonce: lease.NewNonce(), Lease: l})
	if err != nil {
		t.Fatal(err)
	}
	managed, err := e.api.Clone(ctx, pve.CloneRequest{Node: "pve", SourceVMID: 9000, Name: "made-elsewhere", Description: desc})
	if err != nil {
		t.Fatalf("clone a sandbox by hand: %v", err)
	}
	tags, err := lease.SandboxTags(nil, l.ExpiresAt)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.api.UpdateConfig(ctx, managed, pve.ConfigUpdate{Set: map[string]string{"tags": tags}}); err != nil {
		t.Fatal(err)
	}

	const addr = "agentlab_sandbox.imported"
	config := e.config(`
resource "agentlab_sandbox" "imported" {
  name          = "made-elsewhere"
  template_vmid = 9000
  cores         = 1
  memory        = 1024
  firewall      = false
  owner         = "someone@pve"
}
`)
	resource.ParallelTest(t, resource.TestCase{
		ProtoV6ProviderFactories: e.factories(),
		Steps: []resource.TestStep{
			{
				Config:        config,
				ResourceName:  addr,
				ImportState:   true,
				ImportStateId: unmanaged.String(),
				ExpectError:   regexp.MustCompile(`Not an AgentLab sandbox`),
			},
			{
				Config:        config,
				ResourceName:  addr,
				ImportState:   true,
				ImportStateId: "pve-9000",
				ExpectError:   regexp.MustCompile(`Invalid import ID`),
			},
			{
				Config:        config,
				ResourceName:  addr,
				ImportState:   true,
				ImportStateId: "pve/4242",
				ExpectError:   regexp.MustCompile(`Cannot import: no such VM`),
			},
			{
				Config:             config,
				ResourceName:       addr,
				ImportState:        true,
				ImportStateId:      managed.String(),
				ImportStatePersist: true,
				ImportStateCheck: func(states []*terraform.InstanceState) error {
					if len(states) != 1 {
						return fmt.Errorf("imported %d states; want 1", len(states))
					}
					a := states[0].Attributes
					want := map[string]string{
						"id": managed.String(), "name": "made-elsewhere", "ttl": "1h", "owner": "someone@pve",
						"on_expiry": "destroy", "disk_size": "8G", "lease_expires_at": t0.Add(time.Hour).Format(time.RFC3339),
						"status": "stopped", "tags.#": "0",
					}
					for k, v := range want {
						if a[k] != v {
							return fmt.Errorf("imported %s = %q; want %q", k, a[k], v)
						}
					}
					return nil
				},
			},
			{
				// The first apply records what the import could not read, in place.
				Config: config,
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply:             []plancheck.PlanCheck{plancheck.ExpectResourceAction(addr, plancheck.ResourceActionUpdate)},
					PostApplyPostRefresh: emptyPlanAfterApply(),
				},
				Check: func(s *terraform.State) error {
					vmid, err := stateVMID(s, addr)
					if err != nil || vmid != managed.VMID {
						return fmt.Errorf("vmid = %d, %v; want the imported %d, not a replacement", vmid, err, managed.VMID)
					}
					return nil
				},
			},
		},
	})
	// The hand-made VM is untouched; the imported sandbox was destroyed.
	if cfg := e.vmConfig(t, unmanaged.VMID); cfg.Name() != "hand-made" {
		t.Errorf("hand-made VM's name = %q; want it untouched", cfg.Name())
	}
	if _, err := e.api.Config(ctx, managed); !pve.IsNotFound(err) {
		t.Errorf("imported sandbox after destroy: %v; want it gone", err)
	}
}

func TestAccSandbox_leaseRenewal(t *testing.T) {
	e := newAccEnv(t)
	const addr = "agentlab_sandbox.lease"
	cfg := func(ttl string, renew bool) string {
		return e.config(fmt.Sprintf(`
resource "agentlab_sandbox" "lease" {
  template_vmid  = 9000
  ttl            = %q
  max_ttl        = "3h"
  on_expiry      = "stop"
  renew_on_apply = %t
}
`, ttl, renew))
	}
	expires := func(at time.Time) statecheck.StateCheck {
		return statecheck.ExpectKnownValue(addr, tfjsonpath.New("lease_expires_at"), knownvalue.StringExact(at.Format(time.RFC3339)))
	}
	// checkVM checks that the VM's metadata and expiry tag agree on at.
	checkVM := func(at time.Time) resource.TestCheckFunc {
		return func(s *terraform.State) error {
			vmid, err := stateVMID(s, addr)
			if err != nil {
				return err
			}
			cfg := e.vmConfig(t, vmid)
			md, err := lease.Decode(cfg.Description())
			if err != nil {
				return err
			}
			if !md.ExpiresAt.Equal(at) || md.OnExpiry != lease.Stop || md.MaxTTL != 3*time.Hour || !md.CreatedAt.Equal(t0) {
				return fmt.Errorf("metadata = %+v; want expiry %s, on_expiry stop, max_ttl 3h, created %s", md.Lease, at, t0)
			}
			if got, want := expiryTag(cfg.Tags()), lease.ExpiryTag(at); got != want {
				return fmt.Errorf("expiry tag = %q; want %q", got, want)
			}
			return nil
		}
	}
	resource.ParallelTest(t, resource.TestCase{
		ProtoV6ProviderFactories: e.factories(),
		CheckDestroy:             e.checkNothingLeft(t),
		Steps: []resource.TestStep{
			{
				Config:            cfg("1h", false),
				ConfigPlanChecks:  resource.ConfigPlanChecks{PostApplyPostRefresh: emptyPlanAfterApply()},
				ConfigStateChecks: []statecheck.StateCheck{expires(t0.Add(time.Hour))},
				Check:             checkVM(t0.Add(time.Hour)),
			},
			{
				// Time passes; the same ttl spelled differently renews nothing.
				PreConfig:         func() { e.clock.Advance(30 * time.Minute) },
				Config:            cfg("60m", false),
				ConfigPlanChecks:  resource.ConfigPlanChecks{PostApplyPostRefresh: emptyPlanAfterApply()},
				ConfigStateChecks: []statecheck.StateCheck{expires(t0.Add(time.Hour))},
			},
			{
				// A new ttl renews from now (t0+30m): the plan shows the expiry unknown.
				Config: cfg("2h", false),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply: []plancheck.PlanCheck{
						plancheck.ExpectResourceAction(addr, plancheck.ResourceActionUpdate),
						plancheck.ExpectUnknownValue(addr, tfjsonpath.New("lease_expires_at")),
					},
					PostApplyPostRefresh: emptyPlanAfterApply(),
				},
				ConfigStateChecks: []statecheck.StateCheck{expires(t0.Add(150 * time.Minute))},
				Check:             checkVM(t0.Add(150 * time.Minute)),
			},
			{
				// At t0+1h30m, renewing for 2h would end past created+max_ttl (t0+3h): refused at plan time.
				PreConfig:   func() { e.clock.Advance(time.Hour) },
				Config:      cfg("2h", true),
				PlanOnly:    true,
				ExpectError: regexp.MustCompile(`(?s)Lease renewal past max_ttl.*lower ttl to at most 1h30m`),
			},
			{
				// The plan at t0+1h30m is fine (ends at t0+3h exactly), but by the time
				// of the apply 10 minutes have passed: refused at apply time too.
				Config: cfg("90m", true),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply: []plancheck.PlanCheck{advanceClock{clock: e.clock, by: 10 * time.Minute}},
				},
				ExpectError: regexp.MustCompile(`past max_ttl`),
			},
			{
				// renew_on_apply renews on every apply, within the cap (t0+1h40m + 1h20m = t0+3h).
				Config:             cfg("80m", true),
				ExpectNonEmptyPlan: true, // renew_on_apply always plans a renewal
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PostApplyPostRefresh: []plancheck.PlanCheck{
						plancheck.ExpectResourceAction(addr, plancheck.ResourceActionUpdate),
						plancheck.ExpectUnknownValue(addr, tfjsonpath.New("lease_expires_at")),
					},
				},
				ConfigStateChecks: []statecheck.StateCheck{expires(t0.Add(3 * time.Hour))},
				Check:             checkVM(t0.Add(3 * time.Hour)),
			},
			{
				// Without renew_on_apply and with the same ttl, nothing is renewed.
				PreConfig:         func() { e.clock.Advance(5 * time.Minute) },
				Config:            cfg("80m", false),
				ConfigPlanChecks:  resource.ConfigPlanChecks{PostApplyPostRefresh: emptyPlanAfterApply()},
				ConfigStateChecks: []statecheck.StateCheck{expires(t0.Add(3 * time.Hour))},
			},
		},
	})
}

func TestAccSandbox_profile(t *testing.T) {
	e := newAccEnv(t)
	e.writeProfile(t, "yolo-ephemeral", `
name: yolo-ephemeral
template_vmid: 9000
network:
  bridge: vmbr1
  model: e1000
  firewall: false
resources:
  cores: 4
  memory_mb: 3072
storage:
  root_size_gb: 12
behavior:
  ttl_minutes_default: 180
`)
	e.writeProfile(t, "typo", `
template_vmid: 9000
resources:
  corez: 4
`)
	const addr = "agentlab_sandbox.p"
	resource.ParallelTest(t, resource.TestCase{
		ProtoV6ProviderFactories: e.factories(),
		CheckDestroy:             e.checkNothingLeft(t),
		Steps: []resource.TestStep{
			{
				Config: e.config(`
resource "agentlab_sandbox" "p" {
  profile = "yolo-ephemeral"
}
`),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					// The plan shows the profile's values, not "known after apply".
					PreApply: []plancheck.PlanCheck{
						plancheck.ExpectKnownValue(addr, tfjsonpath.New("template_vmid"), knownvalue.Int64Exact(9000)),
						plancheck.ExpectKnownValue(addr, tfjsonpath.New("cores"), knownvalue.Int64Exact(4)),
						plancheck.ExpectKnownValue(addr, tfjsonpath.New("memory"), knownvalue.Int64Exact(3072)),
						plancheck.ExpectKnownValue(addr, tfjsonpath.New("disk_size"), knownvalue.StringExact("12G")),
						plancheck.ExpectKnownValue(addr, tfjsonpath.New("bridge"), knownvalue.StringExact("vmbr1")),
						plancheck.ExpectKnownValue(addr, tfjsonpath.New("firewall"), knownvalue.Bool(false)),
						plancheck.ExpectKnownValue(addr, tfjsonpath.New("ttl"), knownvalue.StringExact("3h")),
					},
					PostApplyPostRefresh: emptyPlanAfterApply(),
				},
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue(addr, tfjsonpath.New("lease_expires_at"), knownvalue.StringExact(t0.Add(3*time.Hour).Format(time.RFC3339))),
				},
				Check: func(s *terraform.State) error {
					vmid, err := stateVMID(s, addr)
					if err != nil {
						return err
					}
					cfg := e.vmConfig(t, vmid)
					nic, _ := cfg.NIC("net0")
					disk, _ := cfg.Drive(cfg.BootDisk())
					if cfg.Int("cores") != 4 || cfg.Int("memory") != 3072 || nic.Bridge != "vmbr1" || nic.Model != "e1000" ||
						nic.Firewall || disk.SizeBytes != 12<<30 {
						return fmt.Errorf("cores %d memory %d net0 %+v disk %s; want the profile's values",
							cfg.Int("cores"), cfg.Int("memory"), nic, disk.Size)
					}
					md, err := lease.Decode(cfg.Description())
					if err != nil || md.Profile != "yolo-ephemeral" {
						return fmt.Errorf("metadata profile = %q, %v; want yolo-ephemeral", md.Profile, err)
					}
					return nil
				},
			},
			{
				// Attributes on the resource override the profile, in place.
				Config: e.config(`
resource "agentlab_sandbox" "p" {
  profile = "yolo-ephemeral"
  cores   = 2
  ttl     = "3h"
}
`),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply: []plancheck.PlanCheck{
						plancheck.ExpectResourceAction(addr, plancheck.ResourceActionUpdate),
						plancheck.ExpectKnownValue(addr, tfjsonpath.New("cores"), knownvalue.Int64Exact(2)),
						plancheck.ExpectKnownValue(addr, tfjsonpath.New("memory"), knownvalue.Int64Exact(3072)),
					},
					PostApplyPostRefresh: emptyPlanAfterApply(),
				},
			},
			{
				Config: e.config(`
resource "agentlab_sandbox" "p" {
  profile = "typo"
}
`),
				PlanOnly:    true,
				ExpectError: regexp.MustCompile(`(?s)Invalid profile.*typo\.yaml:4.*corez`),
			},
			{
				Config: e.config(`
resource "agentlab_sandbox" "p" {
  profile = "nope"
}
`),
				PlanOnly:    true,
				ExpectError: regexp.MustCompile(`(?s)Unknown profile.*nope\.yaml\s+does\s+not\s+exist.*typo,\s+yolo-ephemeral`),
			},
			{
				// Back to a valid configuration (the test's destroy uses the last one).
				Config: e.config(`
resource "agentlab_sandbox" "p" {
  profile = "yolo-ephemeral"
  cores   = 2
  ttl     = "3h"
}
`),
				ConfigPlanChecks: resource.ConfigPlanChecks{PostApplyPostRefresh: emptyPlanAfterApply()},
			},
		},
	})
}

func TestAccSandbox_recreatedAfterExternalDelete(t *testing.T) {
	e := newAccEnv(t)
	const addr = "agentlab_sandbox.gone"
	config := e.config(`
resource "agentlab_sandbox" "gone" {
  template_vmid = 9000
}
`)
	var first int
	resource.ParallelTest(t, resource.TestCase{
		ProtoV6ProviderFactories: e.factories(),
		CheckDestroy:             e.checkNothingLeft(t),
		Steps: []resource.TestStep{
			{
				Config:           config,
				ConfigPlanChecks: resource.ConfigPlanChecks{PostApplyPostRefresh: emptyPlanAfterApply()},
				Check: func(s *terraform.State) error {
					var err error
					first, err = stateVMID(s, addr)
					return err
				},
			},
			{
				// The reaper (or a person) deletes the VM and its ISO outside Terraform.
				PreConfig: func() {
					ref := pve.VMRef{Node: "pve", VMID: first}
					if err := e.api.Destroy(context.Background(), ref); err != nil {
						t.Fatalf("destroy outside Terraform: %v", err)
					}
					if err := e.api.DeleteVolume(context.Background(), "pve", volume.SeedISOVolid("local", first)); err != nil {
						t.Fatalf("delete ISO outside Terraform: %v", err)
					}
				},
				Config: config,
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply:             []plancheck.PlanCheck{plancheck.ExpectResourceAction(addr, plancheck.ResourceActionCreate)},
					PostApplyPostRefresh: emptyPlanAfterApply(),
				},
				Check: func(s *terraform.State) error {
					if len(e.sandboxes(t)) != 1 {
						return fmt.Errorf("simulator has %d sandboxes; want the one re-created", len(e.sandboxes(t)))
					}
					_, err := stateVMID(s, addr)
					return err
				},
			},
		},
	})
}

func TestAccSandbox_diskShrinkRefused(t *testing.T) {
	e := newAccEnv(t)
	disk := func(size string) string {
		return e.config(fmt.Sprintf(`
resource "agentlab_sandbox" "d" {
  template_vmid = 9000
  disk_size     = %q
}
`, size))
	}
	resource.ParallelTest(t, resource.TestCase{
		ProtoV6ProviderFactories: e.factories(),
		CheckDestroy:             e.checkNothingLeft(t),
		Steps: []resource.TestStep{
			{
				Config:           disk("20G"),
				ConfigPlanChecks: resource.ConfigPlanChecks{PostApplyPostRefresh: emptyPlanAfterApply()},
			},
			{
				// The same size written in MiB is no change.
				Config:           disk("20480M"),
				ConfigPlanChecks: resource.ConfigPlanChecks{PostApplyPostRefresh: emptyPlanAfterApply()},
			},
			{
				Config:      disk("10G"),
				PlanOnly:    true,
				ExpectError: regexp.MustCompile(`(?s)Disk cannot shrink.*from 20480M to 10G`),
			},
			{
				Config:      disk("20 GB"),
				PlanOnly:    true,
				ExpectError: regexp.MustCompile(`Invalid disk size`),
			},
			{
				// Growing works in place.
				Config:           disk("24G"),
				ConfigPlanChecks: resource.ConfigPlanChecks{PostApplyPostRefresh: emptyPlanAfterApply()},
			},
		},
	})
}

func TestAccSandbox_failedCreateLeavesNothing(t *testing.T) {
	e := newAccEnv(t)
	resource.ParallelTest(t, resource.TestCase{
		ProtoV6ProviderFactories: e.factories(),
		CheckDestroy:             e.checkNothingLeft(t),
		Steps: []resource.TestStep{
			{
				// The template's disk is 8G: the resize after the clone fails, and the
				// half-made VM and its ISO are removed.
				Config: e.config(`
resource "agentlab_sandbox" "f" {
  template_vmid = 9000
  disk_size     = "4G"
}
`),
				ExpectError: regexp.MustCompile(`(?s)Creating the sandbox failed.*cannot shrink.*were removed`),
			},
			{
				// Nothing was left behind; a good configuration then applies.
				PreConfig: func() {
					if vms := e.sandboxes(t); len(vms) != 0 {
						t.Errorf("VMs left after the failed create: %v", vms)
					}
					if isos := e.isos(t); len(isos) != 0 {
						t.Errorf("ISOs left after the failed create: %v", isos)
					}
				},
				Config: e.config(`
resource "agentlab_sandbox" "f" {
  template_vmid = 9000
  disk_size     = "8G"
}
`),
				ConfigPlanChecks: resource.ConfigPlanChecks{PostApplyPostRefresh: emptyPlanAfterApply()},
			},
			{
				Config: e.config(`
resource "agentlab_sandbox" "f" {
  template_vmid = 9000
  disk_size     = "8G"
}
resource "agentlab_sandbox" "nope" {
  template_vmid = 4242
}
`),
				ExpectError: regexp.MustCompile(`Template not found`),
			},
		},
	})
}

func TestAccSandbox_fiftyInParallel(t *testing.T) {
	e := newAccEnv(t)
	resource.ParallelTest(t, resource.TestCase{
		ProtoV6ProviderFactories: e.factories(),
		CheckDestroy:             e.checkNothingLeft(t),
		Steps: []resource.TestStep{
			{
				Config: e.config(`
resource "agentlab_sandbox" "many" {
  count         = 50
  name          = "many-${count.index}"
  template_vmid = 9000
}
`),
				ConfigPlanChecks: resource.ConfigPlanChecks{PostApplyPostRefresh: emptyPlanAfterApply()},
				Check: func(s *terraform.State) error {
					seen := map[int]string{}
					for i := 0; i < 50; i++ {
						name := fmt.Sprintf("agentlab_sandbox.many.%d", i)
						vmid, err := stateVMID(s, name)
						if err != nil {
							return err
						}
						if other, dup := seen[vmid]; dup {
							return fmt.Errorf("%s and %s share VMID %d", name, other, vmid)
						}
						seen[vmid] = name
					}
					vms := e.sandboxes(t)
					if len(vms) != 50 {
						return fmt.Errorf("simulator has %d sandboxes; want 50", len(vms))
					}
					for _, vm := range vms {
						if _, ok := seen[vm.VMID]; !ok {
							return fmt.Errorf("simulator VM %d (%s) is not in state", vm.VMID, vm.Name)
						}
					}
					return nil
				},
			},
		},
	})
}

func TestAccSandbox_failedCleanupTaints(t *testing.T) {
	e := newAccEnv(t)
	template := pve.VMRef{Node: "pve", VMID: 9000}
	setProtection := func(ref pve.VMRef, on string) {
		if err := e.api.UpdateConfig(context.Background(), ref, pve.ConfigUpdate{Set: map[string]string{"protection": on}}); err != nil {
			t.Fatalf("set protection=%s on %s: %v", on, ref, err)
		}
	}
	var leftover int
	resource.ParallelTest(t, resource.TestCase{
		ProtoV6ProviderFactories: e.factories(),
		CheckDestroy:             e.checkNothingLeft(t),
		Steps: []resource.TestStep{
			{
				// Clones inherit the template's protection flag, so the removal of the
				// half-made VM fails too: it must end up in state, tainted.
				PreConfig: func() { setProtection(template, "1") },
				Config: e.config(`
resource "agentlab_sandbox" "t" {
  template_vmid = 9000
  disk_size     = "4G"
}
`),
				ExpectError: regexp.MustCompile(`(?s)could not be removed.*saved in state as\s+tainted`),
			},
			{
				PreConfig: func() {
					vms := e.sandboxes(t)
					if len(vms) != 1 {
						t.Fatalf("simulator has %d sandboxes after the failed cleanup; want the 1 half-made VM", len(vms))
					}
					leftover = vms[0].VMID
					setProtection(template, "0")
					setProtection(pve.VMRef{Node: "pve", VMID: leftover}, "0")
				},
				Config: e.config(`
resource "agentlab_sandbox" "t" {
  template_vmid = 9000
  disk_size     = "8G"
}
`),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					// The tainted VM is replaced: the plan destroys it.
					PreApply:             []plancheck.PlanCheck{plancheck.ExpectResourceAction("agentlab_sandbox.t", plancheck.ResourceActionDestroyBeforeCreate)},
					PostApplyPostRefresh: emptyPlanAfterApply(),
				},
				Check: func(s *terraform.State) error {
					vms := e.sandboxes(t)
					if len(vms) != 1 {
						return fmt.Errorf("simulator has %d sandboxes; want 1", len(vms))
					}
					for _, vm := range vms {
						if vm.VMID == leftover {
							// VMIDs may be reused; the old one must have been destroyed first.
							if e.vmConfig(t, vm.VMID).Int("protection") == 1 {
								return fmt.Errorf("the half-made VM %d survived", leftover)
							}
						}
					}
					return nil
				},
			},
		},
	})
}

func TestAccSandbox_hardwareChangesOnRunningVM(t *testing.T) {
	e := newAccEnv(t)
	const addr = "agentlab_sandbox.hw"
	config := func(cores int, reboot bool) string {
		return e.config(fmt.Sprintf(`
resource "agentlab_sandbox" "hw" {
  template_vmid    = 9000
  cores            = %d
  wait_for_ip      = true
  reboot_on_change = %t
}
`, cores, reboot))
	}
	var vmid int
	pending := func(wantPending, wantActive string) resource.TestCheckFunc {
		return func(s *terraform.State) error {
			vm, ok := e.sim.Server.VM(vmid)
			if !ok {
				return fmt.Errorf("VM %d is gone", vmid)
			}
			if vm.Pending["cores"] != wantPending || vm.Config["cores"] != wantActive {
				return fmt.Errorf("cores pending %q, active %q; want pending %q, active %q",
					vm.Pending["cores"], vm.Config["cores"], wantPending, wantActive)
			}
			return nil
		}
	}
	resource.ParallelTest(t, resource.TestCase{
		ProtoV6ProviderFactories: e.factories(),
		CheckDestroy:             e.checkNothingLeft(t),
		Steps: []resource.TestStep{
			{
				Config:           config(2, false),
				ConfigPlanChecks: resource.ConfigPlanChecks{PostApplyPostRefresh: emptyPlanAfterApply()},
				Check: func(s *terraform.State) error {
					var err error
					vmid, err = stateVMID(s, addr)
					return err
				},
			},
			{
				// Without reboot_on_change, PVE keeps the change pending (the apply warns).
				Config: config(4, false),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply:             []plancheck.PlanCheck{plancheck.ExpectKnownValue(addr, tfjsonpath.New("ip_address"), knownvalue.NotNull())},
					PostApplyPostRefresh: emptyPlanAfterApply(),
				},
				Check: pending("4", "2"),
			},
			{
				// With it, the sandbox is restarted and the change is active; the IP is read again.
				Config: config(3, true),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply:             []plancheck.PlanCheck{plancheck.ExpectUnknownValue(addr, tfjsonpath.New("ip_address"))},
					PostApplyPostRefresh: emptyPlanAfterApply(),
				},
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue(addr, tfjsonpath.New("status"), knownvalue.StringExact("running")),
					statecheck.ExpectKnownValue(addr, tfjsonpath.New("ip_address"), knownvalue.NotNull()),
				},
				Check: pending("", "3"),
			},
		},
	})
}

// checkHeartbeat checks that the sandbox's cloud-init ISO carries a heartbeat
// token for the reaper's default guest listener, and that the VM's metadata
// keeps its sha256.
func checkHeartbeat(e *accEnv, vmid int, md lease.Metadata) error {
	iso, ok := e.sim.Server.Volume("local", "iso/"+volume.SeedISOName(vmid))
	if !ok {
		return fmt.Errorf("no cloud-init ISO for VM %d", vmid)
	}
	if !bytes.Contains(iso, []byte("AGENTLAB_HEARTBEAT_URL="+defaultReaperGuestURL+"\n")) {
		return fmt.Errorf("the ISO does not name the reaper's guest listener %s", defaultReaperGuestURL)
	}
	const key = "AGENTLAB_HEARTBEAT_TOKEN="
	i := bytes.Index(iso, []byte(key))
	if i < 0 {
		return errors.New("the ISO carries no heartbeat token")
	}
	token, _, _ := bytes.Cut(iso[i+len(key):], []byte("\n"))
	sum := sha256.Sum256(token)
	if got, want := md.HeartbeatTokenSHA256, hex.EncodeToString(sum[:]); got != want || len(token) < 32 {
		return fmt.Errorf("metadata heartbeat sha256 = %q; want %q, the sha256 of the %d-byte token in the ISO", got, want, len(token))
	}
	return nil
}

// TestAccSandbox_seedUntilBoot: a sandbox that does not wait for its guest
// keeps its seed ISO as a CD-ROM after the apply, carrying the heartbeat
// token whose sha256 the metadata records.
func TestAccSandbox_seedUntilBoot(t *testing.T) {
	e := newAccEnv(t)
	resource.ParallelTest(t, resource.TestCase{
		ProtoV6ProviderFactories: e.factories(),
		CheckDestroy:             e.checkNothingLeft(t),
		Steps: []resource.TestStep{{
			Config: e.config(`
resource "agentlab_sandbox" "seed" {
  template_vmid = 9000
}
`),
			Check: func(s *terraform.State) error {
				vmid, err := stateVMID(s, "agentlab_sandbox.seed")
				if err != nil {
					return err
				}
				cfg := e.vmConfig(t, vmid)
				d, ok := cfg.Drive(isoDrive)
				if !ok || d.Volume != volume.SeedISOVolid("local", vmid) || !d.CDROM() {
					return fmt.Errorf("%s = %+v; want the cloud-init ISO as a CD-ROM", isoDrive, d)
				}
				if isos := e.isos(t); len(isos) != 1 || isos[0] != volume.SeedISOVolid("local", vmid) {
					return fmt.Errorf("ISOs = %v; want only %s", isos, volume.SeedISOVolid("local", vmid))
				}
				md, err := lease.Decode(cfg.Description())
				if err != nil {
					return fmt.Errorf("metadata block: %w", err)
				}
				return checkHeartbeat(e, vmid, md)
			},
		}},
	})
}
