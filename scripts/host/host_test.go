// Package host holds the tests of the host setup scripts in this directory.
package host

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/agentlab/terraform-provider-agentlab/internal/privileges"
)

var scripts = []string{"lib.sh", "setup-network.sh", "setup-tokens.sh", "setup-reaper.sh", "build-template.sh"}

func TestShellcheck(t *testing.T) {
	sc, err := exec.LookPath("shellcheck")
	if err != nil {
		t.Skip("shellcheck not installed (.ci/run installs it)")
	}
	cmd := exec.Command(sc, append([]string{"-x", "--severity=style"}, scripts...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("shellcheck: %v\n%s", err, out)
	}
	for _, s := range scripts[1:] {
		if fi, err := os.Stat(s); err != nil || fi.Mode()&0o111 == 0 {
			t.Errorf("%s is not executable", s)
		}
	}
}

// script runs a script and returns its exit code and output.
func script(t *testing.T, name string, args ...string) (int, string) {
	t.Helper()
	out, err := exec.Command("./"+name, args...).CombinedOutput()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0, string(out)
	case errors.As(err, &exit):
		return exit.ExitCode(), string(out)
	}
	t.Fatalf("%s: %v", name, err)
	return 0, ""
}

// TestDryRun checks what each script would do, and that without --apply it
// says it changed nothing. (These machines are not Proxmox VE hosts: every
// check finds nothing in place, so every step is shown.)
func TestDryRun(t *testing.T) {
	tests := []struct {
		script string
		args   []string
		want   []string // in this order
	}{
		{"setup-network.sh", nil, []string{
			"would write /etc/network/interfaces.d/agentlab-vmbr1 (mode 0644):",
			"    auto vmbr1\n    iface vmbr1 inet static\n    \taddress 10.77.0.1/16\n",
			"-s 10.77.0.0/16 -o vmbr0 -j MASQUERADE",
			"would run: ifreload -a\n",
			"net.ipv4.ip_forward = 1",
			"would write /etc/dnsmasq.d/agentlab-vmbr1.conf (mode 0644):",
			"    interface=vmbr1\n    bind-interfaces\n",
			"    dhcp-range=10.77.0.10,10.77.255.254,12h\n",
			"would run: systemctl restart dnsmasq\n",
		}},
		{"setup-network.sh", []string{"--dry-run", "--bridge", "vmbr7", "--subnet", "10.8.0.0/24", "--gateway", "10.8.0.1", "--dhcp-range", "10.8.0.100,10.8.0.200", "--uplink", "vmbr2"}, []string{
			"would write /etc/network/interfaces.d/agentlab-vmbr7",
			"\taddress 10.8.0.1/24\n",
			"-s 10.8.0.0/24 -o vmbr2 -j MASQUERADE",
			"    interface=vmbr7\n",
			"    dhcp-range=10.8.0.100,10.8.0.200,12h\n",
		}},
		{"setup-tokens.sh", []string{"--template-vmid", "9100", "--iso-storage", "isos"}, []string{
			"would run: pveum user add agentlab-provider@pve ",
			"would run: pveum acl modify /vms --users agentlab-provider@pve --roles AgentLab-provider-vms\n",
			"would run: pveum role add AgentLab-provider-vms-9100 --privs VM.Clone\n",
			`would run: pveum acl modify /vms/9100 --users agentlab-provider@pve --roles AgentLab-provider-vms-9100\,AgentLab-provider-vms` + "\n",
			"would run: pveum acl modify /storage/isos --users agentlab-provider@pve ",
			"/sdn/zones/localnetwork/vmbr1 --users agentlab-provider@pve",
			"would run: pveum user token add agentlab-provider@pve agentlab --privsep 0",
			"would run: pveum user add agentlab-reaper@pve ",
			"would run: pveum acl modify /vms --users agentlab-reaper@pve --roles AgentLab-reaper-vms\n",
			"would write /etc/agentlab/pve-token (mode 0600): agentlab-reaper@pve!agentlab=<secret>",
		}},
		{"setup-reaper.sh", nil, []string{
			"missing: the agentlab-reaper binary",
			"would run: systemctl enable --now agentlab-reaper\n",
		}},
		{"build-template.sh", []string{"--vmid", "9001", "--storage", "tank"}, []string{
			"would run: age-keygen -o /etc/agentlab/templates/9001.age-identity\n",
			"would run: curl -fL --retry 3 -o /var/lib/agentlab/template-build/debian-13-genericcloud-amd64.qcow2 https://cloud.debian.org/",
			`would run: virt-customize -a /var/lib/agentlab/template-build/9001.qcow2 --install cloud-init\,qemu-guest-agent\,curl\,git\,age `,
			"--upload /etc/agentlab/templates/9001.age-identity:/etc/agentlab/age.key --chmod 0400:/etc/agentlab/age.key",
			"would run: qm create 9001 --name debian-13-agentlab ",
			`would run: qm set 9001 --scsi0 tank:0\,import-from=/var/lib/agentlab/template-build/9001.qcow2 --boot order=scsi0` + "\n",
			"would run: qm template 9001\n",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.script+" "+strings.Join(tt.args, " "), func(t *testing.T) {
			code, out := script(t, tt.script, tt.args...)
			if code != 0 {
				t.Fatalf("exit %d\n%s", code, out)
			}
			rest := out
			for _, w := range tt.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("output lacks %q (after the earlier lines)\n%s", w, out)
				}
				rest = rest[i+len(w):]
			}
			if !strings.HasSuffix(out, "dry run: nothing was changed; run again with --apply to make these changes\n") {
				t.Errorf("output does not end by saying nothing changed:\n%s", out)
			}
			if strings.Contains(out, "+ ") {
				t.Errorf("a dry run ran a command:\n%s", out)
			}
		})
	}
}

// TestTokenPrivileges checks setup-tokens.sh grants each program exactly
// the privileges internal/privileges lists, nothing more.
func TestTokenPrivileges(t *testing.T) {
	_, out := script(t, "setup-tokens.sh")
	role := regexp.MustCompile(`(?m)^would run: pveum role add AgentLab-(provider|reaper)-\S+ --privs (.+)$`)
	got := map[string][]string{}
	for _, m := range role.FindAllStringSubmatch(out, -1) {
		for p := range strings.SplitSeq(strings.ReplaceAll(m[2], `\ `, " "), " ") {
			if !slices.Contains(got[m[1]], p) {
				got[m[1]] = append(got[m[1]], p)
			}
		}
	}
	for program, ps := range map[string][]privileges.Privilege{"provider": privileges.Provider(), "reaper": privileges.Reaper()} {
		want := privileges.Names(ps)
		g := slices.Clone(got[program])
		slices.Sort(want)
		slices.Sort(g)
		if !slices.Equal(g, want) {
			t.Errorf("%s roles grant %v; internal/privileges lists %v", program, g, want)
		}
	}
}

func TestBadInput(t *testing.T) {
	tests := []struct {
		script string
		args   []string
		want   string
	}{
		{"setup-network.sh", []string{"--bridge", "eth0"}, "--bridge eth0: Proxmox VE bridges are named vmbrN"},
		{"setup-network.sh", []string{"--subnet", "10.77.0.0"}, "--subnet 10.77.0.0: want an IPv4 CIDR"},
		{"setup-network.sh", []string{"--bogus"}, "unknown argument --bogus"},
		{"setup-tokens.sh", []string{"--template-vmid", "abc"}, "--template-vmid abc: want a VMID"},
		{"build-template.sh", []string{"--vmid", "12"}, "--vmid 12: want a VMID from 100"},
		{"build-template.sh", []string{"--name", "a b"}, "--name a b: a VM name is"},
		{"setup-reaper.sh", []string{"--apply", "--config", "/nonexistent/reaper.yaml"}, "cannot start the reaper before these are in place"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, out := script(t, tt.script, tt.args...)
			if code != 2 || !strings.Contains(out, tt.want) {
				t.Errorf("exit %d, output %q; want exit 2 and %q", code, out, tt.want)
			}
		})
	}
}

// TestWriteFileIdempotent applies lib.sh's write_file twice: the second
// time the file is current and nothing is written.
func TestWriteFileIdempotent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "etc", "dnsmasq.d", "x.conf")
	sh := `. ./lib.sh; APPLY=1
write_file "$1" 0640 "$2" && echo changed
write_file "$1" 0640 "$2" && echo changed
write_file "$1" 0640 "$2-new" && echo changed
true`
	out, err := exec.Command("bash", "-c", sh, "bash", path, "interface=vmbr1").CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	want := "+ write " + path + " (mode 0640)\nchanged\nok: " + path + " is current\n+ write " + path + " (mode 0640)\nchanged\n"
	if string(out) != want {
		t.Errorf("output %q; want %q", out, want)
	}
	b, err := os.ReadFile(path)
	if err != nil || string(b) != "interface=vmbr1-new\n" {
		t.Errorf("file = %q, %v", b, err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("mode = %v, %v; want 0640", fi.Mode(), err)
	}
}
