package profile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/agentlab/terraform-provider-agentlab/internal/egressrule"
	"time"
)

func ptr[T any](v T) *T { return &v }

func TestLoadTestdata(t *testing.T) {
	tests := []struct {
		name string
		want Profile
	}{
		{"yolo-ephemeral", Profile{
			Name:         "yolo-ephemeral",
			Path:         filepath.Join("testdata", "yolo-ephemeral.yaml"),
			TemplateVMID: ptr(9000),
			Network:      Network{Bridge: ptr("vmbr1"), Model: ptr("virtio"), Firewall: ptr(true)},
			Resources:    Resources{Cores: ptr(4), MemoryMiB: ptr(6144), DiskSize: ptr("40G")},
			Behavior:     Behavior{TTL: ptr(180 * time.Minute), KeepaliveDefault: ptr(false)},
			Ignored: []IgnoredKey{
				{"network.firewall_group", 8}, {"resources.balloon", 12}, {"storage.workspace", 15},
				{"behavior.mode", 17}, {"secrets_bundle", 20}, {"repo.clone_path", 22},
				{"artifacts.upload", 24}, {"artifacts.endpoint", 25},
			},
		}},
		{"compact", Profile{
			Name:         "compact",
			Path:         filepath.Join("testdata", "compact.yaml"),
			TemplateVMID: ptr(9001),
			Network:      Network{Bridge: ptr("vmbr0")},
			Resources:    Resources{Cores: ptr(2), MemoryMiB: ptr(4096), DiskSize: ptr("20G")},
			Behavior:     Behavior{TTL: ptr(30 * time.Minute)},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Load("testdata", tt.name)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %s\nwant %s", dump(got), dump(tt.want))
			}
		})
	}
}

// writeProfile writes a profile file into a fresh directory and returns the directory.
func writeProfile(t *testing.T, file, content string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, file), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name    string
		content string
		want    []string // each must appear in the error text
		line    int      // line of the first ParseError; 0 to skip
	}{
		{"unknown key",
			"template_vmid: 9000\nnetwork:\n  model: virtio\n  brige: vmbr1\n",
			[]string{`p.yaml:4: unknown key "network.brige" (did you mean "network.bridge"?); known keys: network.bridge, network.egress, network.firewall, network.firewall_group, network.mode, network.model`}, 4},
		{"unknown top-level key",
			"template_vmid: 9000\ncpus: 4\n",
			[]string{`p.yaml:2: unknown key "cpus"; known keys: artifacts, behavior, name, network, node, repo, resources, secrets, secrets_bundle, storage, template_vm, template_vmid`}, 2},
		{"bad secrets recipient",
			"template_vmid: 9000\nsecrets:\n  recipient: age1notakey\n",
			[]string{`p.yaml:3: secrets.recipient: secrets recipient "age1notakey": want an age X25519 public key`}, 3},
		{"bad node",
			"template_vmid: 9000\nnode: \"pve 2\"\n",
			[]string{`p.yaml:2: node: "pve 2" is not a Proxmox VE node name`}, 2},
		{"wrong type int",
			"template_vmid: 9000\nresources:\n  cores: four\n",
			[]string{`p.yaml:3: resources.cores: want a whole number, got "four"`}, 3},
		{"wrong type bool",
			"network:\n  firewall: yes\n",
			[]string{`p.yaml:2: network.firewall: want true or false, got "yes"`}, 2},
		{"bad egress policy",
			"network:\n  egress: closed\n",
			[]string{`p.yaml:2: network.egress: invalid egress policy "closed": want open, allowlist or none`}, 2},
		{"wrong type string",
			"network:\n  bridge: 1\n",
			[]string{`p.yaml:2: network.bridge: want a string, got the number 1`}, 2},
		{"section not a mapping",
			"network: vmbr1\n",
			[]string{`p.yaml:1: network: want a mapping of keys (network.bridge,`}, 1},
		{"float memory",
			"resources:\n  memory_mb: 1.5\n",
			[]string{`p.yaml:2: resources.memory_mb: want a whole number of MiB or a size such as "4G", got the number 1.5`}, 2},
		{"bad size string",
			"storage:\n  root_size_gb: lots\n",
			[]string{`p.yaml:2: storage.root_size_gb: "lots" is not a number followed by K, M, G or T (powers of 1024), such as "20G"`}, 2},
		{"decimal unit is ambiguous",
			"resources:\n  memory: 2GB\n",
			[]string{`p.yaml:2: resources.memory: "2GB" uses GB, which is ambiguous`, `write 2G or 2GiB`}, 2},
		{"size too large",
			"storage:\n  root_size_gb: 99999999999999999999T\n",
			[]string{`p.yaml:2: storage.root_size_gb: "99999999999999999999T" is too large`}, 2},
		{"size overflows unit",
			"storage:\n  root_size_gb: 18014398509481984T\n",
			[]string{`is too large`}, 2},
		{"negative size",
			"resources:\n  storage: -5\n",
			[]string{`resources.storage: want a positive size, got -5`}, 2},
		{"zero disk",
			"resources:\n  storage: 0\n",
			[]string{`resources.storage: want a positive size`}, 2},
		{"memory too small",
			"resources:\n  memory: 8M\n",
			[]string{`want at least 16 MiB`}, 2},
		{"memory not whole MiB",
			"resources:\n  memory: 1025K\n",
			[]string{`not a whole number of MiB`}, 2},
		{"bad model",
			"network:\n  model: virtio-net\n",
			[]string{`"virtio-net" is not a Proxmox VE NIC model`}, 2},
		{"bad vmid",
			"template_vmid: 7\n",
			[]string{`template_vmid: 7 is not a VMID`}, 1},
		{"zero ttl",
			"behavior:\n  ttl_minutes_default: 0\n",
			[]string{`behavior.ttl_minutes_default: want at least 1 minute`}, 2},
		{"alias and key",
			"template_vmid: 9000\ntemplate_vm: 9001\n",
			[]string{`p.yaml:2: "template_vmid" and "template_vm" set the same thing; keep one`}, 2},
		{"disk twice under different sections",
			"resources:\n  storage: 20G\nstorage:\n  root_size_gb: 30\n",
			[]string{`p.yaml:4: "resources.storage" and "storage.root_size_gb" set the same thing`}, 4},
		{"duplicate key",
			"template_vmid: 9000\ntemplate_vmid: 9001\n",
			[]string{`p.yaml:2: key "template_vmid" repeats the one on line 1`}, 2},
		{"name mismatch",
			"name: other\n",
			[]string{`p.yaml:1: name: "other" does not match the file name "p"`}, 1},
		{"several problems",
			"template_vmid: x\nnetwork:\n  brdge: y\n",
			[]string{"p.yaml:1: template_vmid: want a whole number", `p.yaml:3: unknown key "network.brdge"`}, 1},
		{"syntax error",
			"template_vmid: 9000\nnetwork: [\n",
			[]string{"p.yaml:", "invalid YAML"}, 0},
		{"empty file", "", []string{"p.yaml: file is empty"}, 0},
		{"comments only", "# nothing\n", []string{"p.yaml: file is empty"}, 0},
		{"not a mapping", "- a\n- b\n", []string{"p.yaml:1: want a mapping of profile keys"}, 1},
		{"two documents", "template_vmid: 9000\n---\ntemplate_vmid: 9001\n", []string{"more than one YAML document"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeProfile(t, "p.yaml", tt.content)
			_, err := Load(dir, "p")
			if err == nil {
				t.Fatalf("Load succeeded; want an error containing %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error\n%s\ndoes not contain\n%s", err, w)
				}
			}
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error %v is not a *ParseError", err)
			}
			if want := filepath.Join(dir, "p.yaml"); pe.Path != want {
				t.Errorf("ParseError.Path = %q; want %q", pe.Path, want)
			}
			if tt.line != 0 && pe.Line != tt.line {
				t.Errorf("ParseError.Line = %d; want %d", pe.Line, tt.line)
			}
		})
	}
}

func TestLoadUnknownProfile(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"alpha.yaml", "beta.yml", "README.md", "Bad Name.yaml"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("template_vmid: 9000\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "sub.yaml"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := Load(dir, "gamma")
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("Load(gamma) error = %v; want ErrNotFound", err)
	}
	want := filepath.Join(dir, "gamma.yaml") + " does not exist; profiles in " + dir + ": alpha, beta"
	if !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not contain %q", err, want)
	}
	if p, err := Load(dir, "beta"); err != nil || p.Path != filepath.Join(dir, "beta.yml") {
		t.Errorf("Load(beta) = %+v, %v; want it read from beta.yml", p, err)
	}

	empty := t.TempDir()
	if _, err := Load(empty, "x"); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "holds no profiles") {
		t.Errorf("Load from an empty dir: %v; want ErrNotFound saying it holds no profiles", err)
	}
	if _, err := Load(filepath.Join(empty, "missing"), "x"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Load from a missing dir: %v; want ErrNotFound", err)
	}

	both := writeProfile(t, "dup.yaml", "template_vmid: 9000\n")
	if err := os.WriteFile(filepath.Join(both, "dup.yml"), []byte("template_vmid: 9001\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(both, "dup"); err == nil || !strings.Contains(err.Error(), "defined twice") {
		t.Errorf("Load with dup.yaml and dup.yml: %v; want a 'defined twice' error", err)
	}
}

func TestLoadRejectsUnsafeNames(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "profiles")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// A file outside dir that a traversal would reach.
	if err := os.WriteFile(filepath.Join(parent, "secret.yaml"), []byte("template_vmid: 9000\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"../secret", "..", ".", "", "a/b", "/etc/passwd", ".hidden", "Upper", "a b", "a\\b", strings.Repeat("a", 65)} {
		_, err := Load(dir, name)
		if !errors.Is(err, ErrInvalidName) {
			t.Errorf("Load(%q) error = %v; want ErrInvalidName", name, err)
		}
	}
	for _, name := range []string{"a", "yolo-ephemeral", "v1.2_x", "9"} {
		if err := ValidateName(name); err != nil {
			t.Errorf("ValidateName(%q) = %v; want nil", name, err)
		}
	}
}

func TestSizes(t *testing.T) {
	tests := []struct {
		yaml     string
		wantMem  int
		wantDisk string
	}{
		{"resources:\n  memory: 2048\n  storage: 20\n", 2048, "20G"},
		{"resources:\n  memory: 2G\n  storage: 20g\n", 2048, "20G"},
		{"resources:\n  memory: 512MiB\n  storage: 1024M\n", 512, "1G"},
		{"resources:\n  memory: 1T\n  storage: 1536M\n", 1 << 20, "1536M"},
		{"resources:\n  memory: \"4096\"\n  storage: 2TiB\n", 4096, "2T"},
		{"resources:\n  memory: 16M\n  storage: 100K\n", 16, "100K"},
	}
	for _, tt := range tests {
		dir := writeProfile(t, "s.yaml", tt.yaml)
		p, err := Load(dir, "s")
		if err != nil {
			t.Errorf("Load(%q): %v", tt.yaml, err)
			continue
		}
		if *p.Resources.MemoryMiB != tt.wantMem || *p.Resources.DiskSize != tt.wantDisk {
			t.Errorf("Load(%q) memory %d, disk %s; want %d, %s", tt.yaml, *p.Resources.MemoryMiB, *p.Resources.DiskSize, tt.wantMem, tt.wantDisk)
		}
	}
}

func TestUnsetAndNull(t *testing.T) {
	dir := writeProfile(t, "n.yaml", "template_vmid: 9000\nnetwork:\n  bridge:\nresources:\n")
	p, err := Load(dir, "n")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if p.Network.Bridge != nil || p.Network.Model != nil || p.Resources.Cores != nil || p.Behavior.TTL != nil {
		t.Errorf("unset or null settings came back set: %s", dump(p))
	}
}

func TestList(t *testing.T) {
	got, err := List("testdata")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"compact", "yolo-ephemeral"}; !reflect.DeepEqual(got, want) {
		t.Errorf("List(testdata) = %q; want %q", got, want)
	}
}

// dump prints a profile with its pointers followed.
func dump(p Profile) string {
	show := func(v any) string {
		switch x := v.(type) {
		case *int:
			if x != nil {
				return fmt.Sprint(*x)
			}
		case *string:
			if x != nil {
				return *x
			}
		case *bool:
			if x != nil {
				return fmt.Sprint(*x)
			}
		case *time.Duration:
			if x != nil {
				return x.String()
			}
		}
		return "<unset>"
	}
	return fmt.Sprintf("name=%s path=%s template=%s bridge=%s model=%s firewall=%s cores=%s memory=%s disk=%s ttl=%s keepalive=%s ignored=%v",
		p.Name, p.Path, show(p.TemplateVMID), show(p.Network.Bridge), show(p.Network.Model), show(p.Network.Firewall),
		show(p.Resources.Cores), show(p.Resources.MemoryMiB), show(p.Resources.DiskSize), show(p.Behavior.TTL),
		show(p.Behavior.KeepaliveDefault), p.Ignored)
}

func TestEgress(t *testing.T) {
	dir := writeProfile(t, "e.yaml", "template_vmid: 9000\nnetwork:\n  egress: none\n")
	p, err := Load(dir, "e")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if p.Network.Egress == nil || *p.Network.Egress != egressrule.None {
		t.Errorf("network.egress = %v; want none", p.Network.Egress)
	}
}

func TestNode(t *testing.T) {
	dir := writeProfile(t, "n.yaml", "template_vmid: 9000\nnode: pve2\n")
	p, err := Load(dir, "n")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if p.Node == nil || *p.Node != "pve2" {
		t.Errorf("node = %v; want pve2", p.Node)
	}
}

func TestLoadSecretsRecipient(t *testing.T) {
	const r = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"
	dir := writeProfile(t, "p.yaml", "template_vmid: 9000\nsecrets:\n  recipient: "+r+"\n")
	p, err := Load(dir, "p")
	if err != nil {
		t.Fatal(err)
	}
	if p.Secrets.Recipient == nil || *p.Secrets.Recipient != r {
		t.Errorf("Secrets.Recipient = %v, want %s", p.Secrets.Recipient, r)
	}
}
