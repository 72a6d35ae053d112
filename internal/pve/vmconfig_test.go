package pve

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"testing"
)

const sampleConfig = `{
 "name":"sbx-1","cores":2,"sockets":1,"memory":"2048","agent":"1","onboot":0,
 "boot":"order=ide2;scsi0;net0","scsihw":"virtio-scsi-single",
 "scsi0":"local-lvm:vm-101-disk-0,iothread=1,size=32G",
 "scsi1":"local-lvm:vm-101-disk-1,size=512M",
 "ide2":"local-lvm:vm-101-cloudinit,media=cdrom",
 "ide0":"none,media=cdrom",
 "efidisk0":"local-lvm:vm-101-disk-2,efitype=4m,size=4M",
 "net0":"virtio=BC:24:11:2E:4F:10,bridge=vmbr0,firewall=1",
 "net1":"e1000=BC:24:11:00:00:02,bridge=vmbr1,tag=20,mtu=1400",
 "tags":"agentlab;agentlab-exp-1767225600",
 "description":"hello\n<!-- agentlab:meta {} -->",
 "lock":"clone","template":1,
 "digest":"2bfa6a8d5d0f1f0d4c0f5b83f4d0e1a2b3c4d5e6"
}`

func readSample(t *testing.T, body string) VMConfig {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api2/json/nodes/pve/qemu/101/config" {
			t.Errorf("got path %q", r.URL.Path)
		}
		writeData(w, body)
	}))
	t.Cleanup(srv.Close)
	c, _ := newTestClient(t, srv)
	cfg, err := c.Config(context.Background(), VMRef{Node: "pve", VMID: 101})
	if err != nil {
		t.Fatalf("Config: %v", err)
	}
	return cfg
}

func TestVMConfigHelpers(t *testing.T) {
	cfg := readSample(t, sampleConfig)
	if got := cfg.Value("cores"); got != "2" {
		t.Errorf("got cores %q; want \"2\" (numbers keep their text)", got)
	}
	if got := cfg.Int("cores"); got != 2 {
		t.Errorf("got Int(cores) %d; want 2", got)
	}
	if got := cfg.Value("memory"); got != "2048" {
		t.Errorf("got memory %q; want 2048", got)
	}
	if got, want := cfg.Digest(), "2bfa6a8d5d0f1f0d4c0f5b83f4d0e1a2b3c4d5e6"; got != want {
		t.Errorf("got digest %q; want %q", got, want)
	}
	if got, want := cfg.Tags(), []string{"agentlab", "agentlab-exp-1767225600"}; !reflect.DeepEqual(got, want) {
		t.Errorf("got tags %q; want %q", got, want)
	}
	if got, want := cfg.Description(), "hello\n<!-- agentlab:meta {} -->"; got != want {
		t.Errorf("got description %q; want %q", got, want)
	}
	if cfg.Lock() != "clone" || !cfg.Template() || cfg.Name() != "sbx-1" {
		t.Errorf("got lock %q template %v name %q; want clone, true, sbx-1", cfg.Lock(), cfg.Template(), cfg.Name())
	}
	if _, ok := cfg.Get("nope"); ok {
		t.Error("got a value for an unset key")
	}

	var keys []string
	for _, d := range cfg.Disks() {
		keys = append(keys, d.Key)
	}
	if want := []string{"efidisk0", "scsi0", "scsi1"}; !reflect.DeepEqual(keys, want) {
		t.Errorf("got disks %q; want %q", keys, want)
	}
	if got, want := len(cfg.Drives()), 5; got != want {
		t.Errorf("got %d drives; want %d", got, want)
	}
	d, ok := cfg.Drive("scsi0")
	if !ok {
		t.Fatal("no scsi0")
	}
	if d.Volume != "local-lvm:vm-101-disk-0" || d.Storage != "local-lvm" || d.Size != "32G" || d.SizeBytes != 32<<30 || d.Options["iothread"] != "1" || d.CDROM() {
		t.Errorf("got scsi0 %+v; want local-lvm:vm-101-disk-0 of 32G with iothread", d)
	}
	if ci, _ := cfg.Drive("ide2"); !ci.CDROM() {
		t.Errorf("got ide2 %+v; want a cd-rom", ci)
	}
	if got := cfg.BootDisk(); got != "scsi0" {
		t.Errorf("got boot disk %q; want scsi0 (ide2 is a cd-rom)", got)
	}

	n, ok := cfg.NIC("net0")
	if !ok {
		t.Fatal("no net0")
	}
	if n.Model != "virtio" || n.MAC != "BC:24:11:2E:4F:10" || n.Bridge != "vmbr0" || !n.Firewall || n.Tag != 0 {
		t.Errorf("got net0 %+v; want virtio BC:24:11:2E:4F:10 on vmbr0 with firewall", n)
	}
	if got := len(cfg.NICs()); got != 2 {
		t.Errorf("got %d nics; want 2", got)
	}
	n1, _ := cfg.NIC("net1")
	n1.Bridge = "vmbr9"
	if got, want := n1.String(), "e1000=BC:24:11:00:00:02,bridge=vmbr9,tag=20,mtu=1400"; got != want {
		t.Errorf("got %q; want %q (MAC kept)", got, want)
	}
}

func TestBootDisk(t *testing.T) {
	tests := []struct {
		name string
		raw  map[string]any
		want string
	}{
		{"order", map[string]any{"boot": "order=virtio0;net0", "virtio0": "local:100/vm-100-disk-0.qcow2,size=8G"}, "virtio0"},
		{"order skips missing", map[string]any{"boot": "order=scsi5;sata0", "sata0": "local-lvm:vm-1-disk-0,size=1G"}, "sata0"},
		{"legacy bootdisk", map[string]any{"boot": "cdn", "bootdisk": "scsi0", "scsi0": "local-lvm:vm-1-disk-0,size=1G"}, "scsi0"},
		{"only cdrom", map[string]any{"boot": "order=ide2", "ide2": "none,media=cdrom"}, ""},
		{"nothing", map[string]any{}, ""},
	}
	for _, tt := range tests {
		if got := (VMConfig{Raw: tt.raw}).BootDisk(); got != tt.want {
			t.Errorf("%s: got %q; want %q", tt.name, got, tt.want)
		}
	}
}

func TestParseNIC(t *testing.T) {
	tests := []struct {
		in      string
		want    NIC
		wantErr bool
	}{
		{"virtio=BC:24:11:2E:4F:10,bridge=vmbr0,firewall=1", NIC{Key: "net0", Model: "virtio", MAC: "BC:24:11:2E:4F:10", Bridge: "vmbr0", Firewall: true, Options: map[string]string{}}, false},
		{"model=vmxnet3,macaddr=AA:BB:CC:DD:EE:FF,bridge=vmbr1,queues=4", NIC{Key: "net0", Model: "vmxnet3", MAC: "AA:BB:CC:DD:EE:FF", Bridge: "vmbr1", Options: map[string]string{"queues": "4"}}, false},
		{"virtio,bridge=vmbr0", NIC{Key: "net0", Model: "virtio", Bridge: "vmbr0", Options: map[string]string{}}, false},
		{"bridge=vmbr0", NIC{}, true},
		{"virtio=AA:BB:CC:DD:EE:FF,tag=x", NIC{}, true},
	}
	for _, tt := range tests {
		got, err := ParseNIC("net0", tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("ParseNIC(%q): got error %v; want error %v", tt.in, err, tt.wantErr)
			continue
		}
		if err == nil && !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseNIC(%q) = %+v; want %+v", tt.in, got, tt.want)
		}
	}
	n, _ := ParseNIC("net0", "virtio,bridge=vmbr0")
	if got, want := n.String(), "model=virtio,bridge=vmbr0"; got != want {
		t.Errorf("got %q; want %q", got, want)
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in      string
		want    int64
		wantErr bool
	}{
		{"20G", 20 << 30, false},
		{"512M", 512 << 20, false},
		{"4096K", 4 << 20, false},
		{"1.5T", 3 << 39, false},
		{"1048576", 1 << 20, false},
		{"+5G", 0, true},
		{"5GB", 0, true},
		{"", 0, true},
	}
	for _, tt := range tests {
		got, err := ParseSize(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestTags(t *testing.T) {
	if got, want := SplitTags("a;b, c  d,,"), []string{"a", "b", "c", "d"}; !reflect.DeepEqual(got, want) {
		t.Errorf("got %q; want %q", got, want)
	}
	if got, want := JoinTags([]string{"Zeta", "agentlab", "agentlab", "b;a"}), "a;agentlab;b;zeta"; got != want {
		t.Errorf("got %q; want %q", got, want)
	}
	if got := SplitTags(""); got != nil {
		t.Errorf("got %q; want none", got)
	}
}

func TestEncodeSSHKeys(t *testing.T) {
	keys := []string{"ssh-ed25519 AAAAC3Nza+/= me@host", " ", "ssh-rsa AAAAB3 you@there\n"}
	got := EncodeSSHKeys(keys)
	want := "ssh-ed25519%20AAAAC3Nza%2B%2F%3D%20me%40host%0Assh-rsa%20AAAAB3%20you%40there"
	if got != want {
		t.Errorf("got %q; want %q", got, want)
	}
	// PVE's "urlencoded" format accepts only these characters
	for _, ch := range got {
		if !(ch >= 'A' && ch <= 'Z' || ch >= 'a' && ch <= 'z' || ch >= '0' && ch <= '9' || ch == '%' || ch == '-' || ch == '_' || ch == '.' || ch == '!' || ch == '~' || ch == '*' || ch == '\'' || ch == '(' || ch == ')') {
			t.Errorf("got character %q outside PVE's urlencoded set", ch)
		}
	}
	dec, err := url.PathUnescape(got)
	if err != nil || dec != "ssh-ed25519 AAAAC3Nza+/= me@host\nssh-rsa AAAAB3 you@there" {
		t.Errorf("got decoded %q, %v; want the keys joined by newlines", dec, err)
	}
}

func TestParseVMRef(t *testing.T) {
	r, err := ParseVMRef("pve1/123")
	if err != nil || r != (VMRef{Node: "pve1", VMID: 123}) || r.String() != "pve1/123" {
		t.Errorf("got %+v, %v; want pve1/123", r, err)
	}
	for _, bad := range []string{"123", "pve/abc", "pve/99", "/123", "p ve/123"} {
		if _, err := ParseVMRef(bad); err == nil {
			t.Errorf("ParseVMRef(%q): got nil error; want one", bad)
		}
	}
}
