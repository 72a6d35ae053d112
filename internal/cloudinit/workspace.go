package cloudinit

import (
	"fmt"
	"regexp"
)

// Names a workspace disk is set up with in the guest.
const (
	// WorkspaceLabel is the ext4 label of a workspace file system; cloud-init
	// formats the disk only when it has no file system with this label.
	WorkspaceLabel = "agentlab-ws"
	// WorkspaceMountPoint is where the workspace is mounted in the guest.
	WorkspaceMountPoint = "/workspace"
	// WorkspaceFilesystem is the workspace's file system type.
	WorkspaceFilesystem = "ext4"
	// WorkspaceMountOptions keep a boot going when the disk is missing
	// (nofail) instead of dropping the guest into an emergency shell.
	WorkspaceMountOptions = "defaults,nofail,x-systemd.device-timeout=30s"
)

// Workspace attaches a persistent workspace volume: cloud-init formats the
// disk once (ext4, label WorkspaceLabel; a disk that already carries that
// file system is never formatted again) and mounts it at
// WorkspaceMountPoint on every boot.
type Workspace struct {
	// Disk is the PVE disk key the volume is attached as on the VM's
	// VirtIO SCSI controller, e.g. "scsi1".
	Disk string
}

// workspaceDisk is a SCSI disk key other than the boot disk scsi0.
var workspaceDisk = regexp.MustCompile(`^scsi([1-9]|[12][0-9]|30)$`)

func (w *Workspace) validate() error {
	if w == nil {
		return nil
	}
	if !workspaceDisk.MatchString(w.Disk) {
		return fmt.Errorf("workspace disk %q: want a SCSI disk key from scsi1 to scsi30 (scsi0 is the boot disk)", w.Disk)
	}
	return nil
}

// WorkspaceDevice is the stable device path under which a guest on a VirtIO
// SCSI controller sees the PVE disk key (e.g. "scsi1"): QEMU names the
// drive "drive-<key>" and udev links it by that serial.
func WorkspaceDevice(disk string) string {
	return "/dev/disk/by-id/scsi-0QEMU_QEMU_HARDDISK_drive-" + disk
}

// fsSetup is one fs_setup entry (cloud-init's disk_setup module).
// partition "auto" with the label makes cloud-init look for a file system
// with that label and type on the raw disk and skip formatting when one is
// there; a blank disk is formatted; a disk holding any other file system is
// left alone. overwrite stays false.
type fsSetup struct {
	Label      string `yaml:"label"`
	Filesystem string `yaml:"filesystem"`
	Device     string `yaml:"device"`
	Partition  string `yaml:"partition"`
	Overwrite  bool   `yaml:"overwrite"`
}

// workspaceFS and workspaceMounts are the fs_setup and mounts entries that
// set up c.Workspace; both are empty without one.
func (c Config) workspaceFS() []fsSetup {
	if c.Workspace == nil {
		return nil
	}
	return []fsSetup{{
		Label:      WorkspaceLabel,
		Filesystem: WorkspaceFilesystem,
		Device:     WorkspaceDevice(c.Workspace.Disk),
		Partition:  "auto",
		Overwrite:  false,
	}}
}

func (c Config) workspaceMounts() [][]string {
	if c.Workspace == nil {
		return nil
	}
	return [][]string{{"LABEL=" + WorkspaceLabel, WorkspaceMountPoint, WorkspaceFilesystem, WorkspaceMountOptions, "0", "2"}}
}
