package pvesim

import (
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"
)

// GuestInitArg is the first argument that makes agentlab-pvesim run as a
// guest's init instead of serving: "agentlab-pvesim guest-init PLAN".
const GuestInitArg = "guest-init"

// guestPath is the PATH of the guest's init and runcmd, as on Debian.
const guestPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

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
	for _, f := range b.DiskFiles {
		if err := writeGuestFile(f); err != nil {
			consolef("template file %s: %v", f.Path, err)
		}
	}
	b.cloudInit()
	return reapForever()
}

// consolef writes a line to the guest's console (the init's stdout).
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
