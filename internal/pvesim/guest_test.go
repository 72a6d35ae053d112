package pvesim

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentlab/terraform-provider-agentlab/internal/cloudinit"
)

// guestServer is a simulator whose guests are planned but never started
// (no root needed): boot plans and volume directories can be checked.
func guestServer(t *testing.T) *Server {
	t.Helper()
	s, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.guests = &guests{base: t.TempDir(), log: slog.New(slog.DiscardHandler), running: map[int]*guestProc{}}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func seedImage(t *testing.T, extra string) []byte {
	t.Helper()
	return renderSeedISO(t, cloudinit.Config{InstanceID: "i-101", Hostname: "sbx-101", NIC: cloudinit.NIC{MAC: "BC:24:11:00:00:01"},
		Workspace: &cloudinit.Workspace{Disk: "scsi1"}}, extra)
}

// renderSeedISO renders c as internal/cloudinit does for the provider, appends
// extra to its user-data and returns the seed ISO.
func renderSeedISO(t *testing.T, c cloudinit.Config, extra string) []byte {
	t.Helper()
	seed, err := c.Render()
	if err != nil {
		t.Fatal(err)
	}
	seed.UserData = append(seed.UserData, extra...)
	img, err := seed.ISO()
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func TestGuestBootPlan(t *testing.T) {
	const ws = "local-lvm:vm-990-disk-0"
	tests := []struct {
		name    string
		conf    map[string]string
		extra   string
		check   func(t *testing.T, s *Server, b *guestBoot)
		wantErr string
	}{
		{
			name: "workspace attached",
			conf: map[string]string{"ide2": "local:iso/seed.iso,media=cdrom", "scsi1": ws + ",size=1G"},
			check: func(t *testing.T, s *Server, b *guestBoot) {
				dir := s.guests.volumeDir("pve", ws)
				if len(b.Mounts) != 1 || b.Mounts[0].Source != dir || b.Mounts[0].Target != cloudinit.WorkspaceMountPoint {
					t.Fatalf("mounts = %+v; want %s at %s", b.Mounts, dir, cloudinit.WorkspaceMountPoint)
				}
				if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
					t.Errorf("volume directory %s: %v", dir, err)
				}
				if b.Hostname != "sbx-101" || !b.ManageEtcHosts || !b.FirstBoot {
					t.Errorf("hostname %q manage_etc_hosts %v first boot %v; want sbx-101 from the seed, true, true", b.Hostname, b.ManageEtcHosts, b.FirstBoot)
				}
				if fs, ok, err := readVolumeFS(dir); !ok || err != nil || fs.Label != cloudinit.WorkspaceLabel {
					t.Errorf("volume file system %+v %v %v; want it formatted with label %s", fs, ok, err, cloudinit.WorkspaceLabel)
				}
				if len(b.Fstab) != 1 || !strings.HasPrefix(b.Fstab[0], "LABEL="+cloudinit.WorkspaceLabel+"\t/workspace") {
					t.Errorf("fstab lines %q; want the workspace's", b.Fstab)
				}
			},
		},
		{
			name: "workspace not attached",
			conf: map[string]string{"ide2": "local:iso/seed.iso,media=cdrom"},
			check: func(t *testing.T, s *Server, b *guestBoot) {
				if len(b.Mounts) != 0 || len(b.MissingMounts) != 1 || b.MissingMounts[0] != cloudinit.WorkspaceMountPoint {
					t.Errorf("mounts %+v missing %v; want only %s missing", b.Mounts, b.MissingMounts, cloudinit.WorkspaceMountPoint)
				}
			},
		},
		{
			name: "no seed",
			conf: map[string]string{"ide2": "none,media=cdrom", "name": "plain"},
			check: func(t *testing.T, s *Server, b *guestBoot) {
				if len(b.Notes) == 0 || b.Runcmd != "" || b.Hostname != "plain" || b.FirstBoot {
					t.Errorf("boot %+v; want a note, nothing to run and the VM's name as hostname", b)
				}
			},
		},
		{
			name:    "workspace disk is a CD-ROM",
			conf:    map[string]string{"ide2": "local:iso/seed.iso,media=cdrom", "scsi1": "none,media=cdrom"},
			wantErr: "is a CD-ROM",
		},
		{
			name:    "workspace volume missing",
			conf:    map[string]string{"ide2": "local:iso/seed.iso,media=cdrom", "scsi1": "local-lvm:vm-991-disk-0,size=1G"},
			wantErr: "does not exist",
		},
		{
			name:    "unknown key",
			conf:    map[string]string{"ide2": "local:iso/seed.iso,media=cdrom"},
			extra:   "snap:\n  commands: [ls]\n",
			wantErr: `user-data key "snap" is not supported`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := guestServer(t)
			s.mu.Lock()
			defer s.mu.Unlock()
			s.addVolumeLocked(&volume{Node: "pve", Storage: "local", Volid: "local:iso/seed.iso", Content: "iso",
				Format: "iso", Data: seedImage(t, tt.extra)})
			s.addVolumeLocked(&volume{Node: "pve", Storage: "local-lvm", Volid: ws, Content: "images", Format: "raw",
				Size: 1 << 30, VMID: 990})
			v := &vmState{VMID: 101, Node: "pve", Conf: tt.conf}
			s.st.VMs[101] = v
			if tt.wantErr != "" {
				if err := s.checkGuestLocked(v); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("checkGuestLocked = %v; want the start refused with %q", err, tt.wantErr)
				}
			}
			b, err := s.guestBootLocked(v)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, ErrGuestSeed) {
					t.Fatalf("guestBootLocked = %v; want an ErrGuestSeed containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("guestBootLocked: %v", err)
			}
			if err := s.checkGuestLocked(v); err != nil {
				t.Errorf("checkGuestLocked: %v", err)
			}
			tt.check(t, s, b)
		})
	}
}

func TestGuestAccessors(t *testing.T) {
	plain, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if plain.GuestDir(101) != "" || plain.GuestsRunning() != nil {
		t.Errorf("without GuestExec: GuestDir %q, GuestsRunning %v; want empty", plain.GuestDir(101), plain.GuestsRunning())
	}
	s := guestServer(t)
	if got, want := s.GuestDir(101), filepath.Join(s.guests.base, "guests", "101"); got != want {
		t.Errorf("GuestDir(101) = %q; want %q", got, want)
	}
	if got := s.GuestsRunning(); len(got) != 0 {
		t.Errorf("GuestsRunning() = %v; want none", got)
	}
}

func TestGuestVolumeDirFreed(t *testing.T) {
	s := guestServer(t)
	s.mu.Lock()
	defer s.mu.Unlock()
	dir := s.guests.volumeDir("pve", "local-lvm:vm-990-disk-0")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := mkfs(dir, volumeFS{Filesystem: "ext4", Label: "agentlab-ws"}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir+"/note", []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	other := s.guests.volumeDir("pve", "local-lvm:vm-990-disk-1")
	if err := os.MkdirAll(other, 0o755); err != nil {
		t.Fatal(err)
	}
	s.freeVolumeDirLocked("pve", "local-lvm:vm-990-disk-0")
	for _, p := range []string{dir, dir + fsLabelSuffix} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s after free: %v; want it gone", p, err)
		}
	}
	if _, err := os.Stat(other); err != nil {
		t.Errorf("another volume's directory: %v; want it kept", err)
	}
}

// TestGuestDisksAcrossBoots follows a workspace disk through boots: formatted
// once, mounted by label from the guest's /etc/fstab when the seed is gone,
// a foreign file system left alone.
func TestGuestDisksAcrossBoots(t *testing.T) {
	const ws = "local-lvm:vm-990-disk-0"
	s := guestServer(t)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.addVolumeLocked(&volume{Node: "pve", Storage: "local", Volid: "local:iso/seed.iso", Content: "iso",
		Format: "iso", Data: seedImage(t, "")})
	s.addVolumeLocked(&volume{Node: "pve", Storage: "local-lvm", Volid: ws, Content: "images", Format: "raw", Size: 1 << 30, VMID: 990})
	v := &vmState{VMID: 101, Node: "pve", Conf: map[string]string{"ide2": "local:iso/seed.iso,media=cdrom", "scsi1": ws}}
	s.st.VMs[101] = v
	dir := s.guests.volumeDir("pve", ws)

	b, err := s.guestBootLocked(v)
	if err != nil || !b.FirstBoot || len(b.Mounts) != 1 {
		t.Fatalf("first boot: %+v, %v; want a first boot mounting the workspace", b, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "kept"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	// What the guest's init wrote on that boot.
	root := filepath.Join(s.GuestDir(101), "root")
	for path, content := range map[string]string{
		instanceIDFile:  "i-101\n",
		"/etc/fstab":    b.Fstab[0] + "\n",
		"/etc/hostname": "sbx-101\n",
	} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(root, path)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, path), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// The seed ISO is detached after the first boot: the workspace is still
	// mounted, from /etc/fstab, and nothing runs again.
	v.Conf["ide2"] = "none,media=cdrom"
	b, err = s.guestBootLocked(v)
	if err != nil || b.FirstBoot || len(b.Mounts) != 1 || b.Mounts[0].Source != dir || b.Hostname != "sbx-101" {
		t.Fatalf("boot without the seed: %+v, %v; want the workspace mounted from fstab, hostname kept", b, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "kept")); err != nil {
		t.Errorf("workspace file after a second boot: %v", err)
	}

	// Same instance, seed attached again: fs_setup does not run again.
	v.Conf["ide2"] = "local:iso/seed.iso,media=cdrom"
	if b, err = s.guestBootLocked(v); err != nil || b.FirstBoot || len(b.Mounts) != 1 {
		t.Fatalf("second boot of the instance: %+v, %v", b, err)
	}

	// A disk carrying another file system is neither formatted nor mounted.
	if err := os.Remove(filepath.Join(root, instanceIDFile)); err != nil {
		t.Fatal(err)
	}
	if err := mkfs(dir, volumeFS{Filesystem: "ext4", Label: "other"}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "theirs"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	b, err = s.guestBootLocked(v)
	if err != nil || !b.FirstBoot || len(b.Mounts) != 0 || len(b.MissingMounts) != 1 {
		t.Fatalf("foreign disk: %+v, %v; want nothing mounted", b, err)
	}
	if !strings.Contains(strings.Join(b.Notes, "\n"), "left alone") {
		t.Errorf("notes %q; want fs_setup to say it left the disk alone", b.Notes)
	}
	if _, err := os.Stat(filepath.Join(dir, "theirs")); err != nil {
		t.Errorf("a foreign disk's file: %v; want it untouched", err)
	}
}

func TestGuestRootLinksRefused(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/hostname", filepath.Join(root, "etc/hostname")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc", filepath.Join(root, "workspace")); err != nil {
		t.Fatal(err)
	}
	if _, err := readGuestFile(root, "etc/hostname"); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Errorf("readGuestFile through a link = %v; want it refused", err)
	}
	if data, err := readGuestFile(root, "etc/missing"); err != nil || data != nil {
		t.Errorf("readGuestFile of a missing file = %q, %v; want nothing", data, err)
	}
	b := &guestBoot{Root: root, Mounts: []guestBind{{Source: t.TempDir(), Target: "/workspace/sub"}}}
	if err := b.checkRoot(); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Errorf("checkRoot = %v; want the linked paths refused", err)
	}
	mounts, err := parseFstab([]byte("LABEL=a /ok ext4 defaults 0 2\nLABEL=b /../etc ext4 defaults 0 2\nLABEL=c relative ext4\n# LABEL=d /x\n"))
	if err != nil || len(mounts) != 1 || mounts[0].target != "/ok" {
		t.Errorf("parseFstab = %+v, %v; want only /ok", mounts, err)
	}
}
