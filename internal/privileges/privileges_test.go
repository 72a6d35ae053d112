package privileges

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestPrivilegesWellFormed checks the lists' form; their names were checked
// against Proxmox VE 9.1's API schema (the permissions of each call the
// programs make) when they were written.
func TestPrivilegesWellFormed(t *testing.T) {
	name := regexp.MustCompile(`^(VM|Datastore|SDN|Sys)\.[A-Z][A-Za-z]*(\.[A-Z][A-Za-z]*)?$`)
	for _, ps := range [][]Privilege{Provider(), Reaper()} {
		if len(ps) == 0 {
			t.Fatal("empty privilege list")
		}
		for _, p := range ps {
			if !name.MatchString(p.Name) || p.UsedFor == "" || !strings.HasPrefix(p.Path, "/") {
				t.Errorf("want a privilege name, a path and a use, got %+v", p)
			}
		}
	}
}

func TestRender(t *testing.T) {
	ps := []Privilege{{"VM.Audit", "/vms", "reading"}, {"VM.Allocate", "/vms", "a"}, {"VM.Allocate", "/pool/x", "b"}}
	if got, want := RoleCommand("AgentLab", ps), `pveum role add AgentLab -privs "VM.Audit VM.Allocate"`; got != want {
		t.Errorf("RoleCommand = %q; want %q", got, want)
	}
	if got := Markdown(ps); !strings.Contains(got, "| `VM.Audit` | `/vms` | reading |\n") {
		t.Errorf("Markdown = %q", got)
	}
	ps = append(ps, Privilege{"VM.Audit", "/pool/x", "c"}, Privilege{"Sys.Audit", "/vms", "d"})
	if got, want := ByPath(ps), "/vms: VM.Audit, VM.Allocate, Sys.Audit; /pool/x: VM.Allocate, VM.Audit"; got != want {
		t.Errorf("ByPath = %q; want %q", got, want)
	}
}

// TestScriptTableCurrent fails when scripts/host/privileges.tsv, which the
// host setup script reads, is not what the lists render to.
func TestScriptTableCurrent(t *testing.T) {
	got, err := os.ReadFile("../../scripts/host/privileges.tsv")
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != ScriptTable() {
		t.Error("scripts/host/privileges.tsv is stale: run `make generate` and commit it")
	}
	for _, line := range strings.Split(strings.TrimSpace(ScriptTable()), "\n") {
		if !strings.HasPrefix(line, "#") && len(strings.Split(line, "\t")) != 3 {
			t.Errorf("line %q: want program, privilege and path separated by tabs", line)
		}
	}
}
