package pvesim

import (
	"errors"
	"strings"
	"testing"

	"github.com/agentlab/terraform-provider-agentlab/internal/cloudinit"
)

func renderedSeed(t *testing.T, change func(*cloudinit.Config), extra string) map[string][]byte {
	t.Helper()
	c := cloudinit.Config{
		InstanceID: "agentlab-101-x", Hostname: "sbx-101", User: cloudinit.User{Sudo: true},
		NIC:       cloudinit.NIC{MAC: "BC:24:11:00:00:01"},
		Heartbeat: &cloudinit.Heartbeat{URL: "http://127.0.0.1:8846", Token: "0123456789abcdef"},
	}
	if change != nil {
		change(&c)
	}
	files, err := readSeedISO(renderSeedISO(t, c, extra))
	if err != nil {
		t.Fatalf("readSeedISO: %v", err)
	}
	return files
}

// TestParseSeedRendered parses what internal/cloudinit renders: every key
// the provider emits must be understood.
func TestParseSeedRendered(t *testing.T) {
	files := renderedSeed(t, func(c *cloudinit.Config) { c.Workspace = &cloudinit.Workspace{Disk: "scsi2"} },
		"runcmd:\n  - echo one\n  - [sh, -c, \"echo 'two' && true\"]\n")
	seed, err := parseSeed("ide2", files)
	if err != nil {
		t.Fatalf("parseSeed: %v", err)
	}
	if seed.Hostname != "sbx-101" || seed.InstanceID != "agentlab-101-x" || !seed.ManageEtcHosts {
		t.Errorf("hostname %q instance %q manage_etc_hosts %v; want sbx-101, agentlab-101-x, true", seed.Hostname, seed.InstanceID, seed.ManageEtcHosts)
	}
	if len(seed.Users) != 1 || seed.Users[0].Name != cloudinit.DefaultUser || seed.Users[0].Sudo == "" {
		t.Errorf("users = %+v; want the sudo user %s", seed.Users, cloudinit.DefaultUser)
	}
	if len(seed.WriteFiles) != 2 || seed.WriteFiles[0].Path != cloudinit.HeartbeatEnvFile ||
		seed.WriteFiles[0].Permissions != "0600" || !seed.WriteFiles[0].Defer {
		t.Errorf("write_files = %+v; want the heartbeat files, deferred", seed.WriteFiles)
	}
	if len(seed.FSSetup) != 1 || seed.FSSetup[0].Disk != "scsi2" || seed.FSSetup[0].Label != cloudinit.WorkspaceLabel {
		t.Errorf("fs_setup = %+v; want disk scsi2 labelled %s", seed.FSSetup, cloudinit.WorkspaceLabel)
	}
	if len(seed.Mounts) != 1 || seed.Mounts[0] != (guestMount{Label: cloudinit.WorkspaceLabel, Target: cloudinit.WorkspaceMountPoint}) {
		t.Errorf("mounts = %+v; want %s at %s", seed.Mounts, cloudinit.WorkspaceLabel, cloudinit.WorkspaceMountPoint)
	}
	want := "#!/bin/sh\necho one\n'sh' '-c' 'echo '\"'\"'two'\"'\"' && true'\n"
	if seed.Runcmd != want {
		t.Errorf("runcmd script = %q; want %q", seed.Runcmd, want)
	}
}

func TestParseSeedRefuses(t *testing.T) {
	const fs = "fs_setup:\n  - {label: ws, filesystem: ext4, device: /dev/disk/by-id/scsi-0QEMU_QEMU_HARDDISK_drive-scsi1, partition: auto}\n"
	tests := []struct {
		name, userData, want string
	}{
		{"unknown key", "#cloud-config\nbootcmd: [echo]\npackages: [git]\n", `user-data key "bootcmd", "packages" is not supported`},
		{"not cloud-config", "#!/bin/sh\necho hi\n", "not a #cloud-config document"},
		{"bad yaml", "#cloud-config\nruncmd: [\n", "not YAML"},
		{"unknown write_files field", "#cloud-config\nwrite_files:\n  - {path: /a, content: x, source: {uri: http://x}}\n", "field source not found"},
		{"relative path", "#cloud-config\nwrite_files:\n  - {path: a/b, content: x}\n", "write_files[0]: path \"a/b\""},
		{"bad permissions", "#cloud-config\nwrite_files:\n  - {path: /a, content: x, permissions: rw}\n", "permissions \"rw\""},
		{"gzip", "#cloud-config\nwrite_files:\n  - {path: /a, content: x, encoding: gzip}\n", `encoding "gzip"`},
		{"root user", "#cloud-config\nusers:\n  - {name: root}\n", "users[0]"},
		{"runcmd map", "#cloud-config\nruncmd:\n  - {a: b}\n", "runcmd[0]"},
		{"fs device", "#cloud-config\nfs_setup:\n  - {label: ws, filesystem: ext4, device: /dev/sdb, partition: auto}\n", "device \"/dev/sdb\""},
		{"fs overwrite", "#cloud-config\nfs_setup:\n  - {label: ws, filesystem: ext4, device: /dev/disk/by-id/scsi-0QEMU_QEMU_HARDDISK_drive-scsi1, partition: auto, overwrite: true}\n", "overwrite"},
		{"fs type", "#cloud-config\nfs_setup:\n  - {label: ws, filesystem: xfs, device: /dev/disk/by-id/scsi-0QEMU_QEMU_HARDDISK_drive-scsi1, partition: auto}\n", "xfs"},
		{"fs partition none", "#cloud-config\nfs_setup:\n  - {label: ws, filesystem: ext4, device: /dev/disk/by-id/scsi-0QEMU_QEMU_HARDDISK_drive-scsi1, partition: none}\n", `partition "none"`},
		{"mount by device", "#cloud-config\n" + fs + "mounts:\n  - [/dev/sdb, /ws]\n", "LABEL= only"},
		{"mount unknown label", "#cloud-config\n" + fs + "mounts:\n  - [LABEL=other, /ws]\n", "no fs_setup entry"},
		{"mount root", "#cloud-config\n" + fs + "mounts:\n  - [LABEL=ws, /]\n", "mount point"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseSeed("ide2", map[string][]byte{"user-data": []byte(tt.userData)})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("parseSeed = %v; want an error containing %q", err, tt.want)
			}
			if !errors.Is(err, ErrGuestSeed) {
				t.Errorf("error %v does not wrap ErrGuestSeed", err)
			}
		})
	}
}

func TestParseSeedB64AndMetaData(t *testing.T) {
	seed, err := parseSeed("ide2", map[string][]byte{
		"user-data": []byte("#cloud-config\nwrite_files:\n  - {path: /etc/x, content: aGVsbG8=, encoding: b64}\n"),
		"meta-data": []byte("instance-id: i-1\nlocal-hostname: from-meta\n"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if seed.WriteFiles[0].Content != "hello" || seed.Hostname != "from-meta" {
		t.Errorf("content %q hostname %q; want hello, from-meta", seed.WriteFiles[0].Content, seed.Hostname)
	}
	if _, err := parseSeed("ide2", map[string][]byte{"meta-data": []byte("instance-id: i\n")}); err == nil {
		t.Error("a seed without user-data parsed")
	}
}

func TestReadSeedISOWrongLabel(t *testing.T) {
	if _, err := readSeedISO([]byte("not an iso")); err == nil {
		t.Error("readSeedISO accepted garbage")
	}
}
