package pvesim

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"strconv"
	"strings"
	"time"
)

// The cloud-init modules a guest's init runs inside the chroot, in
// cloud-init's order (guest_init.go).

// instanceIDFile records the instance an earlier boot set up, as
// cloud-init's /var/lib/cloud/data/instance-id does.
const instanceIDFile = "/var/lib/cloud/data/instance-id"

// cloudInit runs the seed's modules in cloud-init's order. A failing module
// is logged and the next one runs, as cloud-init does. The modules run once
// per instance: a later boot with the same instance-id (a stop and start, a
// reboot) only mounts and names the guest.
func (b *guestBoot) cloudInit() {
	if !b.FirstBoot {
		if b.InstanceID != "" {
			consolef("instance %s was set up on an earlier boot: write_files, users and runcmd run once per instance", b.InstanceID)
		}
		consolef("cloud-init finished")
		return
	}
	if b.InstanceID != "" {
		if err := os.MkdirAll(path.Dir(instanceIDFile), 0o755); err == nil {
			_ = os.WriteFile(instanceIDFile, []byte(b.InstanceID+"\n"), 0o644)
		}
	}
	step := func(name string, err error) {
		if err != nil {
			consolef("%s failed: %v", name, err)
		}
	}
	step("write_files", b.writeFiles(false))
	step("users", b.createUsers())
	step("mounts", b.writeFstab())
	step("write_files (deferred)", b.writeFiles(true))
	step("runcmd", b.runcmd())
	_ = os.WriteFile("/var/lib/cloud/instance/boot-finished", []byte(time.Now().UTC().Format(time.RFC3339)+"\n"), 0o644)
	consolef("cloud-init finished")
}

// writeFstab replaces the mounts module's lines of /etc/fstab (marked
// comment=cloudconfig) with this instance's; the mounts themselves were
// made before the chroot.
func (b *guestBoot) writeFstab() error {
	old, err := os.ReadFile("/etc/fstab")
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	var keep []string
	for _, l := range strings.Split(strings.TrimRight(string(old), "\n"), "\n") {
		if l != "" && !strings.Contains(l, cloudconfigMark) {
			keep = append(keep, l)
		}
	}
	lines := append(keep, b.Fstab...)
	if len(lines) == 0 {
		return nil
	}
	return os.WriteFile("/etc/fstab", []byte(strings.Join(lines, "\n")+"\n"), 0o644)
}

// createUsers adds the seed's users to /etc/passwd and /etc/group, with a
// home, their SSH keys and their sudo rule.
func (b *guestBoot) createUsers() error {
	for _, u := range b.Users {
		uid, _, err := lookupID("/etc/passwd", u.Name)
		if err != nil {
			uid, err = nextUID()
			if err != nil {
				return err
			}
			shell := u.Shell
			if shell == "" {
				shell = "/bin/sh"
			}
			if err := appendLine("/etc/passwd", fmt.Sprintf("%s:x:%d:%d::/home/%s:%s", u.Name, uid, uid, u.Name, shell)); err != nil {
				return err
			}
			if err := appendLine("/etc/group", fmt.Sprintf("%s:x:%d:", u.Name, uid)); err != nil {
				return err
			}
		}
		home := "/home/" + u.Name
		if err := os.MkdirAll(home, 0o755); err != nil {
			return err
		}
		if err := os.Chown(home, uid, uid); err != nil {
			return err
		}
		if len(u.SSHAuthorizedKeys) > 0 {
			if err := os.MkdirAll(home+"/.ssh", 0o700); err != nil {
				return err
			}
			keys := strings.Join(u.SSHAuthorizedKeys, "\n") + "\n"
			if err := os.WriteFile(home+"/.ssh/authorized_keys", []byte(keys), 0o600); err != nil {
				return err
			}
			for _, p := range []string{home + "/.ssh", home + "/.ssh/authorized_keys"} {
				if err := os.Chown(p, uid, uid); err != nil {
					return err
				}
			}
		}
		if u.Sudo != "" {
			if err := os.MkdirAll("/etc/sudoers.d", 0o755); err != nil {
				return err
			}
			if err := appendLine("/etc/sudoers.d/90-cloud-init-users", u.Name+" "+u.Sudo); err != nil {
				return err
			}
			if err := os.Chmod("/etc/sudoers.d/90-cloud-init-users", 0o440); err != nil {
				return err
			}
		}
		consolef("users: %s (uid %d)", u.Name, uid)
	}
	return nil
}

// writeFiles writes the write_files entries whose defer flag is deferred.
func (b *guestBoot) writeFiles(deferred bool) error {
	var errs []error
	for _, f := range b.WriteFiles {
		if f.Defer != deferred {
			continue
		}
		if err := writeGuestFile(f); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f.Path, err))
			continue
		}
		consolef("write_files: %s", f.Path)
	}
	return errors.Join(errs...)
}

func writeGuestFile(f guestFile) error {
	mode := os.FileMode(0o644)
	if f.Permissions != "" {
		m, err := strconv.ParseUint(f.Permissions, 8, 32)
		if err != nil {
			return fmt.Errorf("permissions %q: %w", f.Permissions, err)
		}
		mode = os.FileMode(m)
	}
	owner := f.Owner
	if owner == "" {
		owner = "root:root"
	}
	user, group, hasGroup := strings.Cut(owner, ":")
	uid, gid, err := lookupID("/etc/passwd", user)
	if err != nil {
		return err
	}
	if hasGroup {
		if gid, _, err = lookupID("/etc/group", group); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(path.Dir(f.Path), 0o755); err != nil {
		return err
	}
	flags := os.O_CREATE | os.O_WRONLY | os.O_TRUNC
	if f.Append {
		flags = os.O_CREATE | os.O_WRONLY | os.O_APPEND
	}
	fh, err := os.OpenFile(f.Path, flags, 0o600)
	if err != nil {
		return err
	}
	if _, err := fh.WriteString(f.Content); err != nil {
		fh.Close()
		return err
	}
	if err := fh.Close(); err != nil {
		return err
	}
	if err := os.Chown(f.Path, uid, gid); err != nil {
		return err
	}
	return os.Chmod(f.Path, mode)
}

// runcmd runs the runcmd script as cloud-init's scripts-user does; what it
// prints goes to /var/log/cloud-init-output.log.
func (b *guestBoot) runcmd() error {
	if b.Runcmd == "" {
		return nil
	}
	const script = "/var/lib/cloud/instance/scripts/runcmd"
	if err := os.WriteFile(script, []byte(b.Runcmd), 0o700); err != nil {
		return err
	}
	out, err := os.OpenFile("/var/log/cloud-init-output.log", os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer out.Close()
	cmd := exec.Command(script)
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=" + guestPath, "HOME=/root", "USER=root", "LOGNAME=root", "SHELL=/bin/sh", "LANG=C.UTF-8"}
	cmd.Stdout, cmd.Stderr = out, out
	consolef("runcmd: running %s", script)
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w (its output is in /var/log/cloud-init-output.log)", script, err)
	}
	consolef("runcmd: done")
	return nil
}

// lookupID returns the numeric id (and, for passwd, the primary group) of
// name in a passwd or group file.
func lookupID(file, name string) (id, gid int, err error) {
	f, err := os.Open(file)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Split(sc.Text(), ":")
		if len(fields) < 3 || fields[0] != name {
			continue
		}
		id, err := strconv.Atoi(fields[2])
		if err != nil {
			return 0, 0, fmt.Errorf("%s: bad id for %s", file, name)
		}
		gid := id
		if len(fields) > 3 {
			if g, err := strconv.Atoi(fields[3]); err == nil {
				gid = g
			}
		}
		return id, gid, nil
	}
	return 0, 0, fmt.Errorf("no %s %q in %s", map[string]string{"/etc/passwd": "user", "/etc/group": "group"}[file], name, file)
}

// nextUID is the first free uid from 1000 in passwd whose gid is free too.
func nextUID() (int, error) {
	used := map[int]bool{}
	for _, file := range []string{"/etc/passwd", "/etc/group"} {
		data, err := os.ReadFile(file)
		if err != nil {
			return 0, err
		}
		for _, line := range strings.Split(string(data), "\n") {
			if fields := strings.Split(line, ":"); len(fields) >= 3 {
				if n, err := strconv.Atoi(fields[2]); err == nil {
					used[n] = true
				}
			}
		}
	}
	for id := 1000; id < 60000; id++ {
		if !used[id] {
			return id, nil
		}
	}
	return 0, errors.New("no free uid from 1000 to 59999")
}

func appendLine(file, line string) error {
	f, err := os.OpenFile(file, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(line + "\n"); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
