package pvesim

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// The guest's root directory: what the init mounts and writes there before
// it chroots (guest_init.go).

// hostEtc are the host's /etc entries the guest sees, read-only: what
// programs need to find libraries, names, certificates and the resolver.
var hostEtc = []string{"ssl", "ca-certificates", "ca-certificates.conf", "pki", "crypto-policies",
	"alternatives", "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "nsswitch.conf", "host.conf",
	"gai.conf", "services", "protocols", "resolv.conf", "localtime", "gitconfig", "mime.types", "shells"}

// hostTop are the host's top-level program and library directories, bound
// read-only (or, when the host has them as symlinks into /usr, linked alike).
var hostTop = []string{"bin", "sbin", "lib", "lib32", "lib64", "libx32"}

// hostDev are the device nodes the guest gets from the host.
var hostDev = []string{"null", "zero", "full", "random", "urandom", "tty"}

// bind mounts src at dst (with what is mounted below src), read-only when
// readOnly.
func bind(src, dst string, readOnly bool) error {
	if err := syscall.Mount(src, dst, "", syscall.MS_BIND|syscall.MS_REC, ""); err != nil {
		return fmt.Errorf("bind %s at %s: %w", src, dst, err)
	}
	if readOnly {
		if err := syscall.Mount("", dst, "", syscall.MS_BIND|syscall.MS_REMOUNT|syscall.MS_RDONLY|syscall.MS_NOSUID, ""); err != nil {
			return fmt.Errorf("make %s read-only: %w", dst, err)
		}
	}
	return nil
}

// mountPoint creates dst as a directory, or an empty file when src is not
// a directory.
func mountPoint(dst string, dir bool) error {
	if dir {
		return os.MkdirAll(dst, 0o755)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	return f.Close()
}

// guestDirs are the directories of a guest's root, made on its first boot.
var guestDirs = []string{"etc/agentlab", "var/log", "var/tmp", "var/lib/cloud/instance/scripts", "home", "root",
	"tmp", "opt", "srv", "mnt", "run", "proc", "dev", "usr"}

// noSymlinks fails when a component of rel under root is a symbolic link.
// Outside the chroot, a link the guest made on an earlier boot would lead
// the host's file operations and mounts out of the guest's root.
func noSymlinks(root, rel string) error {
	cur := root
	for _, part := range strings.Split(filepath.Clean(rel), "/") {
		if part == "" || part == "." {
			continue
		}
		cur = filepath.Join(cur, part)
		fi, err := os.Lstat(cur)
		if errors.Is(err, fs.ErrNotExist) {
			return nil // made afresh from here on
		}
		if err != nil {
			return err
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			return fmt.Errorf("guest root: /%s is a symbolic link; the simulator follows no links out of a guest's root (destroy the VM to start from a clean disk)", rel)
		}
	}
	return nil
}

// checkRoot checks every path setupRoot touches in the root with noSymlinks;
// the top-level links into /usr it made itself must still be what they were.
func (b *guestBoot) checkRoot() error {
	rels := append([]string{"usr/local", "etc/passwd", "etc/group", "etc/hostname", "etc/hosts"}, guestDirs...)
	for _, name := range hostEtc {
		rels = append(rels, "etc/"+name)
	}
	for _, m := range b.Mounts {
		rels = append(rels, m.Target)
	}
	rels = append(rels, b.MissingMounts...)
	for _, name := range hostTop {
		hostTarget, err := os.Readlink("/" + name)
		if err != nil {
			rels = append(rels, name) // a directory on the host, bound here
			continue
		}
		if got, err := os.Readlink(filepath.Join(b.Root, name)); err == nil && got != hostTarget {
			return fmt.Errorf("guest root: /%s links to %s, not %s", name, got, hostTarget)
		}
	}
	for _, rel := range rels {
		if err := noSymlinks(b.Root, rel); err != nil {
			return err
		}
	}
	return nil
}

// setupRoot builds the guest's root from b.Root and chroots into it.
func (b *guestBoot) setupRoot() error {
	// First of all: nothing mounted here may propagate to the host.
	if err := syscall.Mount("", "/", "", syscall.MS_REC|syscall.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make mounts private: %w", err)
	}
	r := b.Root
	at := func(p string) string { return filepath.Join(r, p) }
	if err := b.checkRoot(); err != nil {
		return err
	}
	for _, d := range guestDirs {
		if err := os.MkdirAll(at(d), 0o755); err != nil {
			return err
		}
	}
	_ = os.Chmod(at("root"), 0o700)
	_ = os.Chmod(at("var/tmp"), 0o1777)
	for _, name := range hostTop {
		fi, err := os.Lstat("/" + name)
		switch {
		case err != nil:
			continue
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink("/" + name)
			if err != nil {
				return err
			}
			if _, err := os.Lstat(at(name)); err == nil {
				continue // made on an earlier boot
			}
			if err := os.Symlink(target, at(name)); err != nil {
				return err
			}
		case fi.IsDir():
			if err := mountPoint(at(name), true); err != nil {
				return err
			}
			if err := bind("/"+name, at(name), true); err != nil {
				return err
			}
		}
	}
	if err := bind("/usr", at("usr"), true); err != nil {
		return err
	}
	if fi, err := os.Stat("/usr/local"); err == nil && fi.IsDir() {
		if err := bind(b.UsrLocal, at("usr/local"), false); err != nil {
			return err
		}
	}
	if err := b.writeEtc(r); err != nil {
		return err
	}
	for _, name := range hostEtc {
		src := "/etc/" + name
		fi, err := os.Stat(src)
		if err != nil {
			continue
		}
		if err := mountPoint(at("etc/"+name), fi.IsDir()); err != nil {
			return err
		}
		if err := bind(src, at("etc/"+name), true); err != nil {
			return err
		}
	}
	if err := syscall.Mount("proc", at("proc"), "proc", syscall.MS_NOSUID|syscall.MS_NODEV|syscall.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mount proc: %w", err)
	}
	for _, m := range []struct{ dir, opts string }{{"dev", "mode=755,size=1m"}, {"run", "mode=755"}, {"tmp", "mode=1777"}} {
		if err := syscall.Mount("tmpfs", at(m.dir), "tmpfs", syscall.MS_NOSUID, m.opts); err != nil {
			return fmt.Errorf("mount tmpfs at /%s: %w", m.dir, err)
		}
	}
	for _, d := range hostDev {
		if _, err := os.Stat("/dev/" + d); err != nil {
			continue
		}
		if err := mountPoint(at("dev/"+d), false); err != nil {
			return err
		}
		if err := bind("/dev/"+d, at("dev/"+d), false); err != nil {
			return err
		}
	}
	for name, target := range map[string]string{"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0",
		"stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2"} {
		if err := os.Symlink(target, at("dev/"+name)); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(at("dev/shm"), 0o1777); err != nil {
		return err
	}
	if err := syscall.Mount("tmpfs", at("dev/shm"), "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, "mode=1777"); err != nil {
		return fmt.Errorf("mount tmpfs at /dev/shm: %w", err)
	}
	// cloud-init's mounts module: the volume's directory where the disk's
	// file system would be mounted.
	for _, m := range b.Mounts {
		if err := mountPoint(at(m.Target), true); err != nil {
			return err
		}
		if err := bind(m.Source, at(m.Target), false); err != nil {
			return err
		}
		consolef("mounts: %s mounted at %s", m.What, m.Target)
	}
	for _, t := range b.MissingMounts {
		if err := mountPoint(at(t), true); err != nil {
			return err
		}
		consolef("mounts: no disk for %s (nofail): left as an empty directory", t)
	}
	if err := syscall.Chroot(r); err != nil {
		return fmt.Errorf("chroot %s: %w", r, err)
	}
	if err := os.Chdir("/"); err != nil {
		return err
	}
	if b.Hostname != "" {
		if err := syscall.Sethostname([]byte(b.Hostname)); err != nil {
			return fmt.Errorf("set the hostname: %w", err)
		}
	}
	return nil
}

// writeEtc writes the guest's own /etc files: passwd and group start, when
// the root has none, as copies of the host's (system accounts); hostname
// and hosts name the guest on the first boot of an instance (later boots
// keep what is there).
func (b *guestBoot) writeEtc(r string) error {
	for _, name := range []string{"passwd", "group"} {
		if _, err := os.Stat(filepath.Join(r, "etc", name)); err == nil {
			continue
		}
		data, err := os.ReadFile("/etc/" + name)
		if err != nil {
			data = []byte("root:x:0:0:root:/root:/bin/sh\n")
			if name == "group" {
				data = []byte("root:x:0:\n")
			}
		}
		if err := os.WriteFile(filepath.Join(r, "etc", name), data, 0o644); err != nil {
			return err
		}
	}
	host := b.Hostname
	if host == "" {
		host = "localhost"
	}
	hosts := "127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n"
	if b.ManageEtcHosts {
		short, _, _ := strings.Cut(host, ".")
		hosts += fmt.Sprintf("127.0.1.1 %s %s\n", host, short)
	}
	if _, err := os.Stat(filepath.Join(r, "etc/hosts")); err == nil && !b.FirstBoot {
		return nil // an earlier boot of this instance named the guest
	}
	if err := os.WriteFile(filepath.Join(r, "etc/hostname"), []byte(host+"\n"), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(r, "etc/hosts"), []byte(hosts), 0o644)
}
