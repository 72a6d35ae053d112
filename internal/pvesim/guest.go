package pvesim

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"filippo.io/age"

	"github.com/agentlab/terraform-provider-agentlab/internal/secrets"
)

// Guest execution (Options.GuestExec).
//
// When a VM starts, its NoCloud seed is parsed (guest_seed.go) and the
// guest's init (guest_init.go: GuestInit, run through GuestExec.Init) is
// started as PID 1 of new mount, PID, UTS and IPC namespaces, sharing the
// host's network. It builds the guest's root directory from read-only bind
// mounts of the host's programs and libraries plus fresh writable
// directories, chroots into it and runs the seed's cloud-config. Stopping
// the VM kills its init, and with it, by the PID namespace, every process
// the guest started. Workspace volumes are directories under the guest-exec
// directory, bind-mounted where the guest mounts them.

// GuestExec makes the simulator run guests' cloud-init user-data (see
// Options.GuestExec). It needs root: the guest runs in its own mount and
// PID namespaces.
type GuestExec struct {
	// Init is the command that runs as a guest's init; the simulator
	// appends one argument, the path of the guest's boot plan. The
	// agentlab-pvesim binary does this as "agentlab-pvesim guest-init"
	// (GuestInitArg), calling GuestInit.
	Init []string
	// AgeIdentity, when set, is an age identity (AGE-SECRET-KEY-1...) that
	// every template's disk holds at secrets.IdentityPath (root only, 0600):
	// the identity a real template is built with, so guests open the
	// secrets bundles sealed to its recipient.
	AgeIdentity string
}

// guestNSFlags are the namespaces a guest gets: everything but the network,
// so that it reaches services on the host's loopback.
const guestNSFlags = syscall.CLONE_NEWNS | syscall.CLONE_NEWPID | syscall.CLONE_NEWUTS | syscall.CLONE_NEWIPC

// guestStopTimeout bounds the wait for a killed guest's processes to go.
const guestStopTimeout = 10 * time.Second

// guests runs the guests of one simulator.
type guests struct {
	init []string
	// diskFiles are the files every guest's disk holds from its template.
	diskFiles []guestFile
	base      string // holds guests/<vmid>/ and volumes/<node>/<volid>/
	temp      bool   // base is a temporary directory, removed by close
	log       *slog.Logger

	mu      sync.Mutex // guards running; taken inside Server.mu, never the other way round
	running map[int]*guestProc
	trashed int            // names the directories moved to trash/
	wg      sync.WaitGroup // removals of trashed directories
}

// guestProc is one guest's init process.
type guestProc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the init has exited
}

// newGuests checks that guests can run here: root, and the namespaces
// (probed by starting the init once with --probe).
func newGuests(ge *GuestExec, stateDir string, log *slog.Logger) (*guests, error) {
	if len(ge.Init) == 0 || ge.Init[0] == "" {
		return nil, errors.New("guest-exec: GuestExec.Init is empty; set it to the agentlab-pvesim binary and \"guest-init\"")
	}
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("--guest-exec needs root: each guest runs in its own mount and PID namespace with a chroot (running as uid %d); run agentlab-pvesim as root or drop --guest-exec", os.Geteuid())
	}
	g := &guests{init: ge.Init, log: log, running: map[int]*guestProc{}}
	if ge.AgeIdentity != "" {
		if _, err := age.ParseIdentities(strings.NewReader(ge.AgeIdentity)); err != nil {
			return nil, fmt.Errorf("guest-exec: the templates' age identity: %w", err)
		}
		g.diskFiles = append(g.diskFiles, guestFile{Path: secrets.IdentityPath, Owner: "root:root", Permissions: "0600", Content: ge.AgeIdentity})
	}
	if stateDir != "" {
		g.base = filepath.Join(stateDir, "guest-exec")
		if err := os.MkdirAll(g.base, 0o700); err != nil {
			return nil, fmt.Errorf("guest-exec: %w", err)
		}
	} else {
		dir, err := os.MkdirTemp("", "agentlab-pvesim-guests-")
		if err != nil {
			return nil, fmt.Errorf("guest-exec: %w", err)
		}
		g.base, g.temp = dir, true
	}
	cmd := exec.Command(ge.Init[0], append(ge.Init[1:], "--probe")...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: guestNSFlags, Pdeathsig: syscall.SIGKILL}
	if out, err := cmd.CombinedOutput(); err != nil {
		g.close()
		return nil, fmt.Errorf("--guest-exec needs mount, PID, UTS and IPC namespaces and mounting proc and tmpfs (a container must allow this, e.g. --privileged): %v %s", err, out)
	}
	return g, nil
}

func (g *guests) dir(vmid int) string { return filepath.Join(g.base, "guests", strconv.Itoa(vmid)) }

// volumeDir is the directory holding a workspace volume's files.
func (g *guests) volumeDir(node, volid string) string {
	return filepath.Join(g.base, "volumes", node, url.PathEscape(volid))
}

// start boots a guest from b, stopping a previous boot of the same VM.
func (g *guests) start(b *guestBoot) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if p := g.running[b.VMID]; p != nil {
		g.stopLocked(b.VMID, p)
	}
	dir := g.dir(b.VMID)
	// The root and /usr/local are the VM's disk: they stay from one boot to
	// the next until the VM is destroyed.
	b.DiskFiles = g.diskFiles
	b.Root = filepath.Join(dir, "root")
	b.UsrLocal = filepath.Join(dir, "usr-local")
	for _, d := range []string{b.Root, b.UsrLocal} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("guest-exec: %w", err)
		}
	}
	plan, err := json.Marshal(b)
	if err != nil {
		return fmt.Errorf("guest-exec: encode the boot plan: %w", err)
	}
	planPath := filepath.Join(dir, "boot.json")
	if err := os.WriteFile(planPath, plan, 0o600); err != nil {
		return fmt.Errorf("guest-exec: %w", err)
	}
	console, err := os.OpenFile(filepath.Join(dir, "console.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("guest-exec: %w", err)
	}
	cmd := exec.Command(g.init[0], append(g.init[1:], planPath)...)
	cmd.Stdout, cmd.Stderr = console, console
	cmd.Env = []string{"PATH=" + guestPath}
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: guestNSFlags, Pdeathsig: syscall.SIGKILL}
	p := &guestProc{cmd: cmd, done: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		// Pdeathsig fires when the thread that started the process ends, so
		// that thread stays with the process for its whole life.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		defer close(p.done)
		defer console.Close()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		err := cmd.Wait()
		g.log.Info("guest stopped", "vmid", b.VMID, "result", exitText(err))
	}()
	if err := <-started; err != nil {
		return fmt.Errorf("guest-exec: start the guest's init: %w", err)
	}
	g.running[b.VMID] = p
	g.log.Info("guest started", "vmid", b.VMID, "pid", cmd.Process.Pid, "console", filepath.Join(dir, "console.log"))
	return nil
}

func exitText(err error) string {
	if err == nil {
		return "exited"
	}
	return err.Error()
}

// stop ends a guest and every process in it; a stopped guest is fine.
func (g *guests) stop(vmid int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if p := g.running[vmid]; p != nil {
		g.stopLocked(vmid, p)
	}
}

func (g *guests) stopLocked(vmid int, p *guestProc) {
	delete(g.running, vmid)
	// Killing the PID namespace's init kills everything in it; Wait
	// returns once they are all gone.
	_ = p.cmd.Process.Kill()
	select {
	case <-p.done:
	case <-time.After(guestStopTimeout):
		g.log.Error("guest did not stop", "vmid", vmid, "pid", p.cmd.Process.Pid)
	}
}

// remove deletes a destroyed VM's guest directory.
func (g *guests) remove(vmid int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if p := g.running[vmid]; p != nil {
		g.stopLocked(vmid, p)
	}
	if err := g.trashLocked(g.dir(vmid)); err != nil {
		g.log.Error("remove guest directory", "vmid", vmid, "err", err)
	}
}

// trashLocked moves dir out of the way at once and deletes it in the
// background: a guest's root may hold a large checkout, and the caller
// holds the simulator's lock. The guest's mounts lived only in its own
// namespace, so this removes the guest's own files only.
func (g *guests) trashLocked(dir string) error {
	trash := filepath.Join(g.base, "trash")
	if err := os.MkdirAll(trash, 0o700); err != nil {
		return err
	}
	g.trashed++
	to := filepath.Join(trash, fmt.Sprintf("%d-%d", os.Getpid(), g.trashed))
	if err := os.Rename(dir, to); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		if err := os.RemoveAll(to); err != nil {
			g.log.Error("remove guest files", "dir", to, "err", err)
		}
	}()
	return nil
}

// runningVMIDs lists the VMs whose guest runs.
func (g *guests) runningVMIDs() []int {
	g.mu.Lock()
	defer g.mu.Unlock()
	var ids []int
	for id := range g.running {
		ids = append(ids, id)
	}
	sort.Ints(ids)
	return ids
}

// close stops every guest, finishes removals (left over ones too) and
// removes a temporary base directory.
func (g *guests) close() {
	g.mu.Lock()
	for id, p := range g.running {
		g.stopLocked(id, p)
	}
	g.mu.Unlock()
	g.wg.Wait()
	_ = os.RemoveAll(filepath.Join(g.base, "trash"))
	if g.temp {
		_ = os.RemoveAll(g.base)
	}
}

// guestBoot is the plan a guest's init carries out (written as JSON).
type guestBoot struct {
	VMID int `json:"vmid"`
	// Root is the host directory that becomes the guest's /; UsrLocal is
	// bind-mounted at /usr/local (writable, unlike the rest of /usr).
	Root     string `json:"root"`
	UsrLocal string `json:"usr_local"`
	// The rest is what the guest's cloud-init does. InstanceID is the
	// seed's; FirstBoot is set when it differs from the one an earlier boot
	// recorded, and only then do the per-instance modules run.
	InstanceID     string      `json:"instance_id"`
	FirstBoot      bool        `json:"first_boot"`
	Hostname       string      `json:"hostname"`
	ManageEtcHosts bool        `json:"manage_etc_hosts"`
	Users          []guestUser `json:"users,omitempty"`
	WriteFiles     []guestFile `json:"write_files,omitempty"`
	// Fstab are the lines cloud-init's mounts module adds to /etc/fstab on
	// the first boot. Mounts are volumes' directories bind-mounted into the
	// guest, as /etc/fstab mounts them on every boot; MissingMounts are
	// mount points whose file system is on no attached disk (created empty,
	// as a nofail mount leaves them).
	Fstab         []string    `json:"fstab,omitempty"`
	Mounts        []guestBind `json:"mounts,omitempty"`
	MissingMounts []string    `json:"missing_mounts,omitempty"`
	Runcmd        string      `json:"runcmd,omitempty"`
	// DiskFiles are files the template's disk holds (GuestExec.AgeIdentity),
	// written on every boot before cloud-init runs.
	DiskFiles []guestFile `json:"disk_files,omitempty"`
	// Notes are logged on the console first (what fs_setup did, why
	// nothing runs).
	Notes []string `json:"notes,omitempty"`
}

// guestBind is a host directory mounted in the guest.
type guestBind struct {
	Source string `json:"source"`
	Target string `json:"target"`
	What   string `json:"what"` // e.g. "scsi1 local-lvm:vm-990-disk-0 (LABEL=agentlab-ws)"
}

// cdromKeys are the disk keys a seed ISO may sit on, in the order searched.
func cdromKeys(conf map[string]string) []string {
	var keys []string
	for k := range conf {
		if driveKeyRE.MatchString(k) && !isUnusedKey(k) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return keys
}

func isUnusedKey(k string) bool { return len(k) > 6 && k[:6] == "unused" }

// guestSeedLocked finds and parses the NoCloud seed on one of conf's
// CD-ROMs; nil without one (s.mu held).
func (s *Server) guestSeedLocked(node string, conf map[string]string) (*guestSeed, error) {
	for _, k := range cdromKeys(conf) {
		d := parseDrive(conf[k])
		if !d.isCDROM() || d.file == "none" || d.file == "cdrom" || d.isCloudInit() {
			continue
		}
		vol := s.volumeLocked(node, d.file)
		if vol == nil || len(vol.Data) == 0 {
			continue
		}
		files, err := readSeedISO(vol.Data)
		if err != nil {
			s.log.Debug("guest-exec: CD-ROM is not a NoCloud seed", "drive", k, "volume", d.file, "err", err)
			continue
		}
		return parseSeed(k, files)
	}
	return nil, nil
}

// checkGuestLocked fails a start whose seed the guest could not run (s.mu
// held): the config with pending changes applied is the one that boots.
func (s *Server) checkGuestLocked(v *vmState) error {
	if s.guests == nil {
		return nil
	}
	conf := v.effectiveConfig()
	seed, err := s.guestSeedLocked(v.Node, conf)
	if err != nil || seed == nil {
		return err
	}
	disks := s.disksLocked(v.Node, conf)
	for _, fs := range seed.FSSetup {
		if _, ok := disks[fs.Disk]; !ok {
			if err := fsDiskError(fs, conf); err != nil {
				return err
			}
		}
	}
	return nil
}

// scheduleGuestBootLocked starts v's guest once v has booted (s.mu held):
// at StartedAt plus its boot time, when its guest agent starts answering
// too. A real guest runs its cloud-init user-data (the job runner, the
// heartbeat) only at the end of its boot, so a guest started at once would
// make every job look a boot shorter than on PVE. A VM stopped or restarted
// in the meantime does not get this boot's guest.
func (s *Server) scheduleGuestBootLocked(v *vmState) {
	if s.guests == nil || s.closed {
		return
	}
	wait := v.StartedAt.Add(s.bootTime(v.VMID, v.PID)).Sub(s.clock.Now())
	if wait <= 0 {
		s.bootGuestLocked(v)
		return
	}
	vmid, pid := v.VMID, v.PID
	t := s.timers.NewTimer(wait)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		select {
		case <-s.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if v, ok := s.st.VMs[vmid]; ok && !s.closed && v.Running && v.PID == pid {
			s.bootGuestLocked(v)
		}
		if s.guestBootDue != nil {
			s.guestBootDue(vmid)
		}
	}()
}

// bootGuestLocked starts v's guest after v started (s.mu held). A failure
// leaves the VM running without a guest, as a VM whose boot failed, and is
// logged on the simulator's log and the guest's console.
func (s *Server) bootGuestLocked(v *vmState) {
	if s.guests == nil {
		return
	}
	b, err := s.guestBootLocked(v)
	if err == nil {
		err = s.guests.start(b)
	}
	if err != nil {
		s.log.Error("guest did not boot", "vmid", v.VMID, "err", err)
		s.guests.consoleLine(v.VMID, "boot failed: "+err.Error())
	}
}

// consoleLine appends a line to a guest's console log.
func (g *guests) consoleLine(vmid int, line string) {
	dir := g.dir(vmid)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return
	}
	f, err := os.OpenFile(filepath.Join(dir, "console.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "%s agentlab-pvesim: %s\n", time.Now().UTC().Format(time.RFC3339), line)
}

// stopVMLocked marks v stopped and ends its guest (s.mu held).
func (s *Server) stopVMLocked(v *vmState) {
	if s.guests != nil {
		s.guests.stop(v.VMID)
	}
	stopVM(v)
}

// destroyGuestLocked removes a destroyed VM's guest directory (s.mu held).
func (s *Server) destroyGuestLocked(vmid int) {
	if s.guests != nil {
		s.guests.remove(vmid)
	}
}

// freeVolumeDirLocked removes the files of a freed volume (s.mu held).
func (s *Server) freeVolumeDirLocked(node, volid string) {
	if s.guests == nil {
		return
	}
	dir := s.guests.volumeDir(node, volid)
	for _, p := range []string{dir, dir + fsLabelSuffix} {
		if err := os.RemoveAll(p); err != nil {
			s.log.Error("remove volume directory", "volume", volid, "err", err)
		}
	}
}

// bootRestoredGuests boots the guests of VMs restored as running.
func (s *Server) bootRestoredGuests() {
	if s.guests == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range s.st.sortedVMIDs() {
		if v := s.st.VMs[id]; v.Running {
			s.bootGuestLocked(v)
		}
	}
}

// GuestsRunning returns the VMIDs whose guest processes run (with
// Options.GuestExec).
func (s *Server) GuestsRunning() []int {
	if s.guests == nil {
		return nil
	}
	return s.guests.runningVMIDs()
}

// GuestDir returns the host directory of VM vmid's guest: root/ is its
// root file system while it runs, console.log its console. "" without
// Options.GuestExec.
func (s *Server) GuestDir(vmid int) string {
	if s.guests == nil {
		return ""
	}
	return s.guests.dir(vmid)
}
