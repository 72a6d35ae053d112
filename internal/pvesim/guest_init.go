package pvesim

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"path"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// GuestInitArg is the first argument that makes agentlab-pvesim run as a
// guest's init instead of serving: "agentlab-pvesim guest-init PLAN".
const GuestInitArg = "guest-init"

// guestPath is the PATH of the guest's init and runcmd, as on Debian.
const guestPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

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

// GuestInit is a guest's init: the simulator starts it (through
// GuestExec.Init) as PID 1 of new mount, PID, UTS and IPC namespaces with
// the path of the guest's boot plan. It builds the guest's root, chroots
// into it, runs the seed's cloud-config the way cloud-init does (write_files,
// users, mounts, deferred write_files, runcmd; output of runcmd in
// /var/log/cloud-init-output.log) and then reaps orphans until it is
// killed, which ends every process of the guest. It logs to stdout, the
// guest's console. With "--probe" it only checks that the namespaces allow
// its mounts. It returns the exit status.
func GuestInit(args []string) int {
	// Everything the init starts is started from this thread (see
	// dropCapabilities).
	runtime.LockOSThread()
	if len(args) == 1 && args[0] == "--probe" {
		if err := probeMounts(); err != nil {
			fmt.Println(err)
			return 1
		}
		return 0
	}
	if len(args) != 1 {
		fmt.Fprintln(os.Stderr, "usage: agentlab-pvesim guest-init PLAN.json (run by agentlab-pvesim --guest-exec)")
		return 2
	}
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "guest-init must run as PID 1 of its own PID namespace (agentlab-pvesim --guest-exec starts it)")
		return 2
	}
	data, err := os.ReadFile(args[0])
	if err != nil {
		consolef("read the boot plan: %v", err)
		return 1
	}
	// The plan holds the seed's files (tokens among them): once read, it
	// exists only in the guest, as the seed does.
	_ = os.Remove(args[0])
	var b guestBoot
	if err := json.Unmarshal(data, &b); err != nil {
		consolef("decode the boot plan: %v", err)
		return 1
	}
	consolef("booting VM %d (hostname %s)", b.VMID, b.Hostname)
	for _, n := range b.Notes {
		consolef("%s", n)
	}
	if err := b.setupRoot(); err != nil {
		consolef("boot failed: %v", err)
		return 1
	}
	if err := dropCapabilities(); err != nil {
		consolef("boot failed: %v", err)
		return 1
	}
	b.cloudInit()
	return reapForever()
}

func consolef(format string, args ...any) {
	fmt.Printf("%s guest-init: %s\n", time.Now().UTC().Format(time.RFC3339), fmt.Sprintf(format, args...))
}

// probeMounts does what setupRoot needs of the namespaces: private mounts,
// a proc of the new PID namespace and a tmpfs (over /proc and /tmp, seen
// only in this namespace).
func probeMounts() error {
	if err := syscall.Mount("", "/", "", syscall.MS_REC|syscall.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make mounts private: %w", err)
	}
	if err := syscall.Mount("proc", "/proc", "proc", syscall.MS_NOSUID|syscall.MS_NODEV|syscall.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mount proc: %w", err)
	}
	if err := syscall.Mount("tmpfs", "/tmp", "tmpfs", 0, "size=1m"); err != nil {
		return fmt.Errorf("mount tmpfs: %w", err)
	}
	return nil
}

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

// writeEtc writes the guest's own /etc files: passwd and group start, on
// the first boot, as copies of the host's (system accounts); hostname and
// hosts name the guest on every boot.
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

// guestDroppedCaps are the capabilities no program the guest runs gets
// (they are dropped from the bounding set): the ones that would let root
// in the guest leave its chroot or namespaces (SYS_CHROOT, SYS_ADMIN,
// DAC_READ_SEARCH for open_by_handle_at, SYS_PTRACE), change the host
// (SYS_MODULE, SYS_RAWIO, SYS_BOOT, SYS_TIME, NET_ADMIN, MKNOD, BPF, ...).
// The guest stays root for everything else, as in a VM.
var guestDroppedCaps = []uintptr{
	2,  // CAP_DAC_READ_SEARCH
	9,  // CAP_LINUX_IMMUTABLE
	12, // CAP_NET_ADMIN
	16, // CAP_SYS_MODULE
	17, // CAP_SYS_RAWIO
	18, // CAP_SYS_CHROOT
	19, // CAP_SYS_PTRACE
	20, // CAP_SYS_PACCT
	21, // CAP_SYS_ADMIN
	22, // CAP_SYS_BOOT
	25, // CAP_SYS_TIME
	27, // CAP_MKNOD
	30, // CAP_AUDIT_CONTROL
	32, // CAP_MAC_OVERRIDE
	33, // CAP_MAC_ADMIN
	34, // CAP_SYSLOG
	35, // CAP_WAKE_ALARM
	36, // CAP_BLOCK_SUSPEND
	38, // CAP_PERFMON
	39, // CAP_BPF
	40, // CAP_CHECKPOINT_RESTORE
}

// dropCapabilities removes guestDroppedCaps from the bounding set, which
// every program the init starts inherits. The bounding set is per thread:
// it is dropped on all of the process's threads, or, in a cgo build where
// Go cannot do that, on the current one, to which GuestInit is locked. A
// capability the kernel does not know (EINVAL) is no risk.
func dropCapabilities() error {
	for _, c := range guestDroppedCaps {
		_, _, errno := syscall.AllThreadsSyscall(syscall.SYS_PRCTL, syscall.PR_CAPBSET_DROP, c, 0)
		if errno == syscall.ENOTSUP {
			_, _, errno = syscall.RawSyscall(syscall.SYS_PRCTL, syscall.PR_CAPBSET_DROP, c, 0)
		}
		if errno != 0 && errno != syscall.EINVAL {
			return fmt.Errorf("drop capability %d: %w", c, errno)
		}
	}
	return nil
}

// reapForever collects the exit status of every orphan the guest leaves
// (they are re-parented to PID 1) until SIGTERM or SIGINT.
func reapForever() int {
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, syscall.SIGCHLD, syscall.SIGTERM, syscall.SIGINT)
	for {
		for {
			var ws syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
		if sig := <-sigs; sig != syscall.SIGCHLD {
			consolef("%v: stopping", sig)
			return 0
		}
	}
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
