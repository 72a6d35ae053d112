package cloudinit

import (
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

func TestRenderWorkspace(t *testing.T) {
	c := testConfig()
	c.Workspace = &Workspace{Disk: "scsi1"}
	seed, err := c.Render()
	if err != nil {
		t.Fatalf("Render: %v", err)
	}
	want := `fs_setup:
  - label: agentlab-ws
    filesystem: ext4
    device: /dev/disk/by-id/scsi-0QEMU_QEMU_HARDDISK_drive-scsi1
    partition: auto
    overwrite: false
mounts:
  - - LABEL=agentlab-ws
    - /workspace
    - ext4
    - defaults,nofail,x-systemd.device-timeout=30s
    - "0"
    - "2"
`
	if !strings.HasSuffix(string(seed.UserData), want) {
		t.Errorf("user-data:\n%s\nwant it to end with\n%s", seed.UserData, want)
	}
	without, err := testConfig().Render()
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(without.UserData, &doc); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"fs_setup", "mounts"} {
		if _, ok := doc[k]; ok {
			t.Errorf("user-data without a workspace has %s", k)
		}
	}
}

func TestValidateWorkspace(t *testing.T) {
	for _, tt := range []struct {
		disk string
		ok   bool
	}{
		{"scsi1", true}, {"scsi30", true}, {"scsi0", false}, {"scsi31", false},
		{"virtio1", false}, {"", false}, {"scsi1 ", false},
	} {
		c := testConfig()
		c.Workspace = &Workspace{Disk: tt.disk}
		err := c.Validate()
		if tt.ok && err != nil {
			t.Errorf("disk %q: Validate() = %v; want nil", tt.disk, err)
		}
		if !tt.ok && (err == nil || !strings.Contains(err.Error(), "workspace disk")) {
			t.Errorf("disk %q: Validate() = %v; want a workspace disk error", tt.disk, err)
		}
	}
}
