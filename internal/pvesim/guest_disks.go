package pvesim

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// Disks as a guest sees them.
//
// A disk image's files are the directory volumeDir(node, volid); the file
// system it carries (type and label, what mkfs writes and blkid reads) is a
// sidecar file next to it, so the label travels with the volume from VM to
// VM as on a real disk. cloud-init's fs_setup (once per instance) formats a
// blank disk, which here means recording the file system; its mounts module
// (once per instance) writes /etc/fstab in the guest; every boot then mounts
// each LABEL= line of the guest's /etc/fstab from whichever attached disk
// carries that label, whether or not the seed is still attached.

// fsLabelSuffix names a volume's file system sidecar: <volume dir>.fs.
const fsLabelSuffix = ".fs"

// volumeFS is the file system on a volume.
type volumeFS struct {
	Filesystem string `json:"filesystem"`
	Label      string `json:"label"`
}

// readVolumeFS returns the file system on a volume; ok is false for a blank disk.
func readVolumeFS(dir string) (fs volumeFS, ok bool, err error) {
	data, err := os.ReadFile(dir + fsLabelSuffix)
	if errors.Is(err, os.ErrNotExist) {
		return fs, false, nil
	}
	if err != nil {
		return fs, false, err
	}
	if err := json.Unmarshal(data, &fs); err != nil {
		return fs, false, fmt.Errorf("file system record %s: %w", dir+fsLabelSuffix, err)
	}
	return fs, true, nil
}

// mkfs makes a file system on a blank volume: an empty directory and its record.
func mkfs(dir string, fs volumeFS) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	data, err := json.Marshal(fs)
	if err != nil {
		return err
	}
	return os.WriteFile(dir+fsLabelSuffix, data, 0o644)
}

// guestDisk is a disk attached to the VM (CD-ROMs excluded).
type guestDisk struct {
	key, volid, dir string
}

// disksLocked lists conf's disks whose volume exists, by key (s.mu held).
func (s *Server) disksLocked(node string, conf map[string]string) map[string]guestDisk {
	disks := map[string]guestDisk{}
	for k, val := range conf {
		if !driveKeyRE.MatchString(k) || isUnusedKey(k) {
			continue
		}
		d := parseDrive(val)
		if d.isCDROM() {
			continue
		}
		if vol := s.volumeLocked(node, d.file); vol != nil {
			disks[k] = guestDisk{key: k, volid: vol.Volid, dir: s.guests.volumeDir(node, vol.Volid)}
		}
	}
	return disks
}

// fstabMount is a LABEL= line of /etc/fstab; managed lines are the mounts
// module's (marked comment=cloudconfig, as cloud-init marks them).
type fstabMount struct {
	label, target string
	managed       bool
}

// cloudconfigMark marks the /etc/fstab lines cloud-init's mounts module owns.
const cloudconfigMark = "comment=cloudconfig"

// parseFstab returns the LABEL= mounts of a guest's /etc/fstab.
func parseFstab(data []byte) ([]fstabMount, error) {
	var out []fstabMount
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 || strings.HasPrefix(fields[0], "#") {
			continue
		}
		// The guest wrote this file: a mount point must stay inside its root.
		if t := fields[1]; !path.IsAbs(t) || path.Clean(t) != t || t == "/" {
			continue
		}
		if label, ok := strings.CutPrefix(fields[0], "LABEL="); ok {
			out = append(out, fstabMount{label: label, target: fields[1],
				managed: len(fields) > 3 && strings.Contains(fields[3], cloudconfigMark)})
		}
	}
	return out, sc.Err()
}

// readGuestFile reads a file of a stopped guest's root, following no
// symbolic link the guest may have made; a missing file reads as nothing.
func readGuestFile(root, rel string) ([]byte, error) {
	if err := noSymlinks(root, rel); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(filepath.Join(root, rel))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	return data, err
}

// guestBootLocked plans the boot of v from its active config (s.mu held).
func (s *Server) guestBootLocked(v *vmState) (*guestBoot, error) {
	root := filepath.Join(s.guests.dir(v.VMID), "root")
	b := &guestBoot{VMID: v.VMID, Hostname: v.Conf["name"]}
	h, err := readGuestFile(root, "etc/hostname")
	if err != nil {
		return nil, fmt.Errorf("guest-exec: %w", err)
	}
	if strings.TrimSpace(string(h)) != "" {
		b.Hostname = strings.TrimSpace(string(h))
	}
	seed, err := s.guestSeedLocked(v.Node, v.Conf)
	if err != nil {
		return nil, err
	}
	id, err := readGuestFile(root, instanceIDFile)
	if err != nil {
		return nil, fmt.Errorf("guest-exec: %w", err)
	}
	prevID := strings.TrimSpace(string(id))
	disks := s.disksLocked(v.Node, v.Conf)
	switch {
	case seed == nil && prevID == "":
		b.Notes = append(b.Notes, "no CD-ROM holds a NoCloud seed (an ISO labelled cidata): cloud-init has nothing to do")
	case seed == nil:
		b.Notes = append(b.Notes, fmt.Sprintf("no NoCloud seed attached: booting instance %s as an earlier boot set it up", prevID))
	case seed.InstanceID != "" && seed.InstanceID == prevID:
		b.InstanceID = seed.InstanceID
	default:
		b.InstanceID, b.FirstBoot = seed.InstanceID, true
		if seed.Hostname != "" {
			b.Hostname = seed.Hostname
		}
		b.ManageEtcHosts, b.Users, b.WriteFiles, b.Runcmd = seed.ManageEtcHosts, seed.Users, seed.WriteFiles, seed.Runcmd
		for _, fs := range seed.FSSetup {
			note, err := fsSetupLocked(fs, v.Conf, disks)
			if err != nil {
				return nil, err
			}
			b.Notes = append(b.Notes, note)
		}
		for _, m := range seed.Mounts {
			b.Fstab = append(b.Fstab, fmt.Sprintf("LABEL=%s\t%s\text4\tdefaults,nofail,%s\t0\t2", m.Label, m.Target, cloudconfigMark))
		}
	}
	// What /etc/fstab says on this boot: on the first boot of an instance
	// the mounts module replaces its lines with the seed's.
	data, err := readGuestFile(root, "etc/fstab")
	if err != nil {
		return nil, fmt.Errorf("guest-exec: read the guest's /etc/fstab: %w", err)
	}
	fstab, err := parseFstab(data)
	if err != nil {
		return nil, fmt.Errorf("guest-exec: read the guest's /etc/fstab: %w", err)
	}
	var mounts []fstabMount
	for _, m := range fstab {
		if !b.FirstBoot || !m.managed {
			mounts = append(mounts, m)
		}
	}
	if b.FirstBoot {
		for _, m := range seed.Mounts {
			mounts = append(mounts, fstabMount{label: m.Label, target: m.Target, managed: true})
		}
	}
	keys := make([]string, 0, len(disks))
	for k := range disks {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, m := range mounts {
		found := false
		for _, k := range keys {
			d := disks[k]
			fs, ok, err := readVolumeFS(d.dir)
			if err != nil {
				return nil, fmt.Errorf("guest-exec: %w", err)
			}
			if ok && fs.Label == m.label {
				b.Mounts = append(b.Mounts, guestBind{Source: d.dir, Target: m.target,
					What: fmt.Sprintf("%s %s (LABEL=%s)", k, d.volid, m.label)})
				found = true
				break
			}
		}
		if !found {
			b.MissingMounts = append(b.MissingMounts, m.target)
		}
	}
	return b, nil
}

// fsDiskError says why the disk an fs_setup entry names, when attached,
// cannot be formatted: a CD-ROM, or a volume that does not exist. A disk
// that is not attached at all is no error (nothing is formatted).
func fsDiskError(fs guestFS, conf map[string]string) error {
	val, attached := conf[fs.Disk]
	if !attached {
		return nil
	}
	if d := parseDrive(val); d.isCDROM() {
		return seedError("fs_setup device %s: %s is a CD-ROM, not a disk", fs.Device, fs.Disk)
	}
	return seedError("fs_setup device %s: the volume %s on %s does not exist", fs.Device, parseDrive(val).file, fs.Disk)
}

// fsSetupLocked is one fs_setup entry with partition auto on the disk its
// device names: a disk carrying the file system is kept, a blank disk is
// formatted, a disk with another file system is left alone (s.mu held).
func fsSetupLocked(fs guestFS, conf map[string]string, disks map[string]guestDisk) (string, error) {
	d, ok := disks[fs.Disk]
	if !ok {
		if err := fsDiskError(fs, conf); err != nil {
			return "", err
		}
		return fmt.Sprintf("fs_setup: no disk %s (%s): nothing to format", fs.Disk, fs.Device), nil
	}
	have, formatted, err := readVolumeFS(d.dir)
	if err != nil {
		return "", fmt.Errorf("guest-exec: %w", err)
	}
	want := volumeFS{Filesystem: fs.Filesystem, Label: fs.Label}
	switch {
	case formatted && have == want:
		return fmt.Sprintf("fs_setup: %s %s already has %s label %s: kept", fs.Disk, d.volid, have.Filesystem, have.Label), nil
	case formatted:
		return fmt.Sprintf("fs_setup: %s %s has %s label %s, not %s: left alone", fs.Disk, d.volid, have.Filesystem, have.Label, fs.Label), nil
	}
	if err := mkfs(d.dir, want); err != nil {
		return "", fmt.Errorf("guest-exec: format %s: %w", d.volid, err)
	}
	return fmt.Sprintf("fs_setup: formatted %s %s as %s label %s", fs.Disk, d.volid, want.Filesystem, want.Label), nil
}
