// Package privileges lists the Proxmox VE privileges AgentLab's two programs
// need, least privilege first: what the provider's API token needs to create
// and destroy sandboxes, and what the reaper's token needs to enforce
// leases. The provider's "lacks privileges" diagnostic, the reaper's log
// line for a 403 and the docs (tested) all come from these lists, so they
// cannot disagree.
package privileges

import (
	"fmt"
	"slices"
	"strings"
)

// Privilege is one Proxmox VE privilege, the ACL path it is needed on and
// what AgentLab uses it for.
type Privilege struct {
	Name    string
	Path    string
	UsedFor string
}

// Provider returns the privileges of the Terraform provider's API token.
func Provider() []Privilege {
	return []Privilege{
		{"VM.Audit", "/vms", "reading VMs, their config and status"},
		{"VM.Clone", "/vms/<template>", "cloning the template"},
		{"VM.Allocate", "/vms", "creating the clone's VMID and destroying sandboxes"},
		{"VM.Config.Options", "/vms", "name, tags, metadata block, guest agent flag"},
		{"VM.Config.CPU", "/vms", "cores"},
		{"VM.Config.Memory", "/vms", "memory"},
		{"VM.Config.Network", "/vms", "bridge and firewall of net0"},
		{"VM.Config.Disk", "/vms", "growing the boot disk"},
		{"VM.Config.CDROM", "/vms", "attaching the cloud-init ISO"},
		{"VM.PowerMgmt", "/vms", "starting, stopping, rebooting"},
		{"VM.GuestAgent.Audit", "/vms", "reading the IP address (wait_for_ip; VM.Monitor before Proxmox VE 9)"},
		{"Datastore.AllocateSpace", "/storage", "the clone's disks"},
		{"Datastore.AllocateTemplate", "/storage/<iso storage>", "uploading the cloud-init ISO"},
		{"Datastore.Allocate", "/storage/<iso storage>", "deleting the cloud-init ISO"},
		{"Datastore.Audit", "/storage", "listing ISOs and disks"},
		{"SDN.Use", "/sdn/zones/<zone>/<bridge>", "attaching net0 to the bridge"},
	}
}

// Reaper returns the privileges of the reaper's API token.
func Reaper() []Privilege {
	return []Privilege{
		{"VM.Audit", "/vms", "listing VMs, reading their config"},
		{"VM.Config.Options", "/vms", "writing the metadata block and the expiry tag (renewals, heartbeats)"},
		{"VM.Config.Disk", "/vms", "detaching a workspace before a destroy"},
		{"VM.Config.CDROM", "/vms", "ejecting a sandbox's seed ISO once its guest has booted"},
		{"VM.PowerMgmt", "/vms", "stopping"},
		{"VM.Allocate", "/vms", "destroying, pruning untagged orphans"},
		{"Datastore.Audit", "/storage", "listing the ISO storages for seed ISOs"},
		{"Datastore.Allocate", "/storage", "deleting seed ISOs (after first boot, and with their sandbox)"},
		{"Sys.Audit", "/nodes", "seeing other users' clone tasks, so that a clone under way is not taken for an interrupted one"},
	}
}

// Role names the docs' pveum commands and the diagnostics use.
const (
	ProviderRole = "AgentLab"
	ReaperRole   = "AgentLabReaper"
)

// Names returns the privileges' names, in order, without repeats.
func Names(ps []Privilege) []string {
	var names []string
	seen := map[string]bool{}
	for _, p := range ps {
		if !seen[p.Name] {
			seen[p.Name] = true
			names = append(names, p.Name)
		}
	}
	return names
}

// Markdown renders the privileges as a table for the docs.
func Markdown(ps []Privilege) string {
	var b strings.Builder
	b.WriteString("| Privilege | On | Used for |\n|---|---|---|\n")
	for _, p := range ps {
		fmt.Fprintf(&b, "| `%s` | `%s` | %s |\n", p.Name, p.Path, p.UsedFor)
	}
	return b.String()
}

// ByPath says which privileges each ACL path needs, paths in order of first
// mention: "/vms: VM.Audit, VM.Allocate; /storage: Datastore.Audit".
func ByPath(ps []Privilege) string {
	var paths []string
	names := map[string][]string{}
	for _, p := range ps {
		if _, ok := names[p.Path]; !ok {
			paths = append(paths, p.Path)
		}
		if !slices.Contains(names[p.Path], p.Name) {
			names[p.Path] = append(names[p.Path], p.Name)
		}
	}
	parts := make([]string, 0, len(paths))
	for _, path := range paths {
		parts = append(parts, path+": "+strings.Join(names[path], ", "))
	}
	return strings.Join(parts, "; ")
}

// RoleCommand is the pveum command that creates a role with the privileges.
func RoleCommand(role string, ps []Privilege) string {
	return fmt.Sprintf("pveum role add %s -privs %q", role, strings.Join(Names(ps), " "))
}

// ScriptTable renders both lists as the tab-separated table
// scripts/host/setup-tokens.sh reads on a Proxmox VE host (which has no Go):
// one "program<TAB>privilege<TAB>path" line per privilege, after a comment
// header. tools/privtable writes it; a test fails when the committed file
// differs.
func ScriptTable() string {
	var b strings.Builder
	b.WriteString("# Generated from internal/privileges by `make generate`; do not edit.\n")
	b.WriteString("# program\tprivilege\tpath\n")
	for _, l := range []struct {
		program string
		ps      []Privilege
	}{{"provider", Provider()}, {"reaper", Reaper()}} {
		for _, p := range l.ps {
			fmt.Fprintf(&b, "%s\t%s\t%s\n", l.program, p.Name, p.Path)
		}
	}
	return b.String()
}
