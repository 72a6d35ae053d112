package pvesim

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// configMeta are parameters of the config update calls that are not options.
var configMeta = setOf("node", "vmid", "digest", "skiplock", "delete", "revert", "force",
	"background_delay", "skip_cloud_init", "import-working-storage")

// handleGetConfig is GET /nodes/{node}/qemu/{vmid}/config.
func handleGetConfig(c *call) (any, error) {
	if err := c.checkNode(); err != nil {
		return nil, err
	}
	if snap := c.str("snapshot"); snap != "" {
		return nil, fail("snapshot '%s' does not exist", snap)
	}
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	v, err := s.vmLocked(c.node(), c.vmid())
	if err != nil {
		return nil, err
	}
	conf := v.Conf
	if !c.flag("current") {
		conf = v.effectiveConfig()
	}
	out := make(map[string]any, len(conf)+1)
	for k, val := range conf {
		out[k] = jsonConfigValue(k, val)
	}
	out["digest"] = v.digest()
	return out, nil
}

// handleGetPending is GET /nodes/{node}/qemu/{vmid}/pending.
func handleGetPending(c *call) (any, error) {
	if err := c.checkNode(); err != nil {
		return nil, err
	}
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	v, err := s.vmLocked(c.node(), c.vmid())
	if err != nil {
		return nil, err
	}
	dels := map[string]int{}
	for _, k := range v.PendingDelete {
		if name, ok := strings.CutPrefix(k, "!"); ok {
			dels[name] = 2
		} else {
			dels[k] = 1
		}
	}
	keys := map[string]bool{}
	for k := range v.Conf {
		keys[k] = true
	}
	for k := range v.Pending {
		keys[k] = true
	}
	for k := range dels {
		keys[k] = true
	}
	names := make([]string, 0, len(keys))
	for k := range keys {
		names = append(names, k)
	}
	sort.Strings(names)
	out := []map[string]any{}
	for _, k := range names {
		item := map[string]any{"key": k}
		if val, ok := v.Conf[k]; ok {
			item["value"] = jsonConfigValue(k, val)
		}
		if val, ok := v.Pending[k]; ok {
			item["pending"] = jsonConfigValue(k, val)
		}
		if d, ok := dels[k]; ok {
			item["delete"] = d
		}
		out = append(out, item)
	}
	return out, nil
}

// configUpdate is a parsed PUT/POST config request.
type configUpdate struct {
	set      map[string]string
	del      []string
	revert   map[string]bool
	digest   string
	skiplock bool
	force    bool
}

// parseConfigUpdate does the checks qemu-server does before loading the config.
func (c *call) parseConfigUpdate() (*configUpdate, error) {
	if err := c.rootParam("skiplock"); err != nil {
		return nil, err
	}
	u := &configUpdate{set: map[string]string{}, revert: map[string]bool{}, digest: c.str("digest"),
		skiplock: c.flag("skiplock"), force: c.flag("force")}
	for k, v := range c.params {
		if !configMeta[k] {
			u.set[k] = v
		}
	}
	if keys, ok := u.set["sshkeys"]; ok {
		if err := validateSSHKeys(uriUnescape(keys)); err != nil {
			return nil, err
		}
	}
	if len(u.set) == 0 && c.str("delete") == "" && c.str("revert") == "" {
		return nil, fail("no options specified")
	}
	for _, opt := range splitList(c.str("revert")) {
		if !c.s.optionExists(opt) {
			return nil, paramErr1("revert", fmt.Sprintf("unknown option '%s'", opt))
		}
		if _, ok := u.set[opt]; ok {
			return nil, paramErr1("delete", fmt.Sprintf("you can't use '-%s' and -revert %s' at the same time", opt, opt))
		}
		u.revert[opt] = true
	}
	for _, opt := range splitList(c.str("delete")) {
		if opt == "cdrom" {
			opt = "ide2"
		}
		if _, ok := u.set[opt]; ok {
			return nil, paramErr1("delete", fmt.Sprintf("you can't use '-%s' and -delete %s' at the same time", opt, opt))
		}
		if u.revert[opt] {
			return nil, paramErr1("revert", fmt.Sprintf("you can't use '-delete %s' and -revert %s' at the same time", opt, opt))
		}
		if !c.s.optionExists(opt) {
			return nil, paramErr1("delete", fmt.Sprintf("unknown option '%s'", opt))
		}
		u.del = append(u.del, opt)
	}
	for k, v := range u.set {
		switch {
		case netKeyRE.MatchString(k):
			n, err := parseNet(v)
			if err != nil {
				return nil, paramErr1(k, err.Error())
			}
			if n.mac == "" {
				c.s.mu.Lock()
				n.mac = c.s.newMACLocked()
				c.s.mu.Unlock()
			}
			u.set[k] = n.String()
		case k == "vmgenid" && v == "1":
			c.s.mu.Lock()
			u.set[k] = c.s.uuidLocked()
			c.s.mu.Unlock()
		case k == "tags":
			u.set[k] = normalizeTags(v)
		case k == "description":
			u.set[k] = descTrailing.ReplaceAllString(v, "")
		case k == "cdrom":
			delete(u.set, k)
			u.set["ide2"] = v + ",media=cdrom"
		}
	}
	return u, nil
}

// optionExists reports whether PVE knows the config option.
func (s *Server) optionExists(opt string) bool {
	return !configMeta[opt] && s.configRoute.findParam(opt) != nil
}

// splitList splits like PVE::Tools::split_list: on commas, semicolons, NUL and whitespace.
func splitList(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool {
		return r == ',' || r == ';' || r == 0 || r == ' ' || r == '\t' || r == '\n' || r == '\r'
	})
}

func validateSSHKeys(keys string) error {
	for _, line := range strings.Split(keys, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		// Skip leading options (command="...",no-pty ...) like sshd does.
		for len(f) > 0 && !strings.HasPrefix(f[0], "ssh-") && !strings.HasPrefix(f[0], "ecdsa-") && !strings.HasPrefix(f[0], "sk-") {
			f = f[1:]
		}
		if len(f) < 2 {
			return fail("SSH public key validation error")
		}
		if _, err := base64.StdEncoding.DecodeString(f[1]); err != nil {
			return fail("SSH public key validation error")
		}
	}
	return nil
}

// checkBeforeLock is qemu-server's early load_and_check_config (s.mu held).
func (u *configUpdate) checkLocked(v *vmState) error {
	if u.digest != "" && u.digest != v.digest() {
		return fail("checksum mismatch (file change by other user?)")
	}
	if !u.skiplock {
		return checkConfigLock(v)
	}
	return nil
}

// checkedConfigUpdate parses a config update and checks it against the VM
// as it is now (node, existence, locks), before either form takes the VM's
// config lock.
func (c *call) checkedConfigUpdate() (*configUpdate, error) {
	if err := c.checkNode(); err != nil {
		return nil, err
	}
	u, err := c.parseConfigUpdate()
	if err != nil {
		return nil, err
	}
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	v, err := s.vmLocked(c.node(), c.vmid())
	if err != nil {
		return nil, err
	}
	if err := u.checkLocked(v); err != nil {
		return nil, err
	}
	return u, nil
}

// handlePutConfig is PUT .../config: synchronous, answers null.
func handlePutConfig(c *call) (any, error) {
	u, err := c.checkedConfigUpdate()
	if err != nil {
		return nil, err
	}
	s := c.s
	node, vmid := c.node(), c.vmid()
	unlock, err := s.lockConfig(c.r.Context(), vmid)
	if err != nil {
		return nil, err
	}
	defer unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.updateConfigLocked(node, vmid, u, func(string) {}); err != nil {
		return nil, err
	}
	return nil, nil
}

// handlePostConfig is POST .../config: the same update in a qmconfig task.
func handlePostConfig(c *call) (any, error) {
	u, err := c.checkedConfigUpdate()
	if err != nil {
		return nil, err
	}
	s := c.s
	node, vmid := c.node(), c.vmid()
	d := s.opts.Latency.ConfigTask
	return s.startTask(taskSpec{
		node: node, typ: "qmconfig", id: vmidString(vmid), user: c.user, duration: d,
		work: func(tr *taskRun) error {
			unlock, err := s.lockConfig(tr.ctx, vmid)
			if err != nil {
				return err
			}
			defer unlock()
			if err := tr.sleep(d); err != nil {
				return err
			}
			s.mu.Lock()
			defer s.mu.Unlock()
			return s.updateConfigLocked(node, vmid, u, func(line string) { tr.t.Log = append(tr.t.Log, line) })
		},
	})
}

// updateConfigLocked applies a config update like qemu-server's $updatefn:
// changes go to the pending section, then are applied at once for a stopped
// VM; for a running VM only the options PVE changes live are applied
// (s.mu and the VM's config lock held).
func (s *Server) updateConfigLocked(node string, vmid int, u *configUpdate, logf func(string)) error {
	v, err := s.vmLocked(node, vmid)
	if err != nil {
		return err
	}
	if err := u.checkLocked(v); err != nil {
		return err
	}
	set := make(map[string]string, len(u.set))
	for k, val := range u.set {
		set[k] = val
	}
	del := append([]string(nil), u.del...)
	for opt := range u.revert {
		if cur, ok := v.Conf[opt]; ok {
			set[opt] = cur
		} else if _, ok := v.Pending[opt]; ok {
			del = append(del, opt)
		}
	}
	logf(fmt.Sprintf("update VM %d: %s", vmid, describeUpdate(set, del)))
	if v.Pending == nil {
		v.Pending = map[string]string{}
	}
	// A deleted device leaves the boot order (qemu-server writes the new
	// order as a pending "boot", applied with the rest).
	order := bootOrder(v.Conf["boot"])
	bootDeleted := slices.Contains(del, "boot")
	for _, opt := range del {
		val, ok := v.Conf[opt]
		if !ok {
			val, ok = v.Pending[opt]
		}
		if !ok {
			logf(fmt.Sprintf("cannot delete '%s' - not set in current configuration!", opt))
			continue
		}
		if driveKeyRE.MatchString(opt) && v.Conf["protection"] == "1" {
			return fail("can't remove drive '%s' - protection mode enabled", opt)
		}
		delete(v.Pending, opt)
		if !bootDeleted && slices.Contains(order, opt) {
			order = slices.DeleteFunc(order, func(d string) bool { return d == opt })
			v.Pending["boot"] = printBootOrder(order)
		}
		switch {
		case opt == "tags":
			delete(v.Conf, opt)
		case strings.HasPrefix(opt, "unused"):
			s.freeOwnedVolumeLocked(v, parseDrive(val).file)
			delete(v.Conf, opt)
		default:
			addPendingDelete(v, opt, u.force)
		}
	}
	keys := make([]string, 0, len(set))
	for k := range set {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, opt := range keys {
		val := set[opt]
		if cur, ok := v.Pending[opt]; ok && cur == val {
			continue
		}
		if driveKeyRE.MatchString(opt) {
			nv, err := s.createDiskLocked(v, opt, val)
			if err != nil {
				return err
			}
			val = nv
		}
		if opt == "cipassword" {
			v.Conf[opt] = hashPassword(val)
			removePendingDelete(v, opt)
			continue
		}
		v.Pending[opt] = val
		removePendingDelete(v, opt)
	}
	// Drop pending values equal to the current ones (cleanup_pending).
	for k, val := range v.Pending {
		if v.Conf[k] == val {
			delete(v.Pending, k)
		}
	}
	var keep []string
	for _, k := range v.PendingDelete {
		if _, ok := v.Conf[strings.TrimPrefix(k, "!")]; ok {
			keep = append(keep, k)
		}
	}
	v.PendingDelete = keep
	if v.Running {
		for k, val := range v.Pending {
			if fastPlugKeys[k] {
				v.Conf[k] = val
				delete(v.Pending, k)
			}
		}
		keep = nil
		for _, k := range v.PendingDelete {
			if name := strings.TrimPrefix(k, "!"); fastPlugKeys[name] {
				delete(v.Conf, name)
			} else {
				keep = append(keep, k)
			}
		}
		v.PendingDelete = keep
	} else {
		s.applyPendingLocked(v)
	}
	if b, ok := v.Conf["boot"]; ok && b == "" {
		delete(v.Conf, "boot") // the order became empty
	}
	if len(v.Pending) == 0 {
		v.Pending = nil
	}
	s.markDirtyLocked()
	return nil
}

// bootOrder returns the devices of a "boot" value's order= property.
func bootOrder(boot string) []string {
	for _, part := range strings.Split(boot, ",") {
		if rest, ok := strings.CutPrefix(part, "order="); ok {
			return splitList(rest)
		}
	}
	return nil
}

// printBootOrder prints an order as qemu-server's print_bootorder: empty
// when no device is left.
func printBootOrder(devs []string) string {
	if len(devs) == 0 {
		return ""
	}
	return "order=" + strings.Join(devs, ";")
}

func describeUpdate(set map[string]string, del []string) string {
	var parts []string
	keys := make([]string, 0, len(set))
	for k := range set {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		val := set[k]
		if k == "cipassword" {
			val = "<hidden>"
		}
		parts = append(parts, "-"+k, val)
	}
	if len(del) > 0 {
		parts = append(parts, "-delete", strings.Join(del, ","))
	}
	return strings.Join(parts, " ")
}

func addPendingDelete(v *vmState, opt string, force bool) {
	removePendingDelete(v, opt)
	if force {
		opt = "!" + opt
	}
	v.PendingDelete = append(v.PendingDelete, opt)
}

func removePendingDelete(v *vmState, opt string) {
	var keep []string
	for _, k := range v.PendingDelete {
		if strings.TrimPrefix(k, "!") != opt {
			keep = append(keep, k)
		}
	}
	v.PendingDelete = keep
}

func hashPassword(pw string) string {
	if strings.HasPrefix(pw, "$5$") || strings.HasPrefix(pw, "$6$") || strings.HasPrefix(pw, "$1$") {
		return pw
	}
	sum := sha256.Sum256([]byte(pw))
	return "$5$pvesim$" + base64.RawStdEncoding.EncodeToString(sum[:])
}

// applyPendingLocked moves pending changes into the active config; drives
// that are replaced or removed become unusedN (cloud-init volumes are freed).
func (s *Server) applyPendingLocked(v *vmState) {
	for _, k := range v.PendingDelete {
		name := strings.TrimPrefix(k, "!")
		if old, ok := v.Conf[name]; ok && driveKeyRE.MatchString(name) && !strings.HasPrefix(name, "unused") {
			s.retireDriveLocked(v, old, "")
		}
		delete(v.Conf, name)
	}
	for k, val := range v.Pending {
		if old, ok := v.Conf[k]; ok && driveKeyRE.MatchString(k) && !strings.HasPrefix(k, "unused") {
			s.retireDriveLocked(v, old, parseDrive(val).file)
		}
		v.Conf[k] = val
	}
	v.Pending = nil
	v.PendingDelete = nil
}

// retireDriveLocked handles a drive value leaving the config: a disk whose
// volume is not kept becomes unusedN; a cloud-init volume is freed.
func (s *Server) retireDriveLocked(v *vmState, old, newFile string) {
	d := parseDrive(old)
	if d.file == newFile || d.file == "" || d.file == "none" {
		return
	}
	if d.isCloudInit() {
		s.freeOwnedVolumeLocked(v, d.file)
		return
	}
	if d.isCDROM() {
		return
	}
	for _, val := range v.Conf {
		if parseDrive(val).file == d.file && val != old {
			return // still referenced (e.g. already unused)
		}
	}
	for n := 0; ; n++ {
		k := "unused" + strconv.Itoa(n)
		if _, ok := v.Conf[k]; !ok {
			v.Conf[k] = d.file
			return
		}
	}
}

// freeOwnedVolumeLocked frees a volume when this VM owns it (vm-<vmid>-...),
// never a base volume or another VM's volume.
func (s *Server) freeOwnedVolumeLocked(v *vmState, volid string) {
	if volumeOwner(volid) != v.VMID || isBaseVolume(volid) {
		return
	}
	delete(s.st.Volumes, volKey(v.Node, volid))
	s.freeVolumeDirLocked(v.Node, volid)
	s.markDirtyLocked()
}

// createDiskLocked resolves a drive value: "STORAGE:SIZE" allocates a new
// disk, "STORAGE:cloudinit" a cloud-init volume; existing volumes must exist.
func (s *Server) createDiskLocked(v *vmState, opt, val string) (string, error) {
	d := parseDrive(val)
	if d.file == "" || d.file == "none" || d.file == "cdrom" || strings.HasPrefix(d.file, "/dev/") {
		return val, nil
	}
	storage, volname, ok := strings.Cut(d.file, ":")
	if !ok {
		return "", paramErr1(opt, fmt.Sprintf("invalid format - unable to parse volume ID '%s'", d.file))
	}
	sd, known := findStorage(storage)
	if !known {
		return "", fail("storage '%s' does not exist", storage)
	}
	if volname == "cloudinit" {
		if !sd.allows("images") {
			return "", fail("storage '%s' does not support vm images", storage)
		}
		name := fmt.Sprintf("vm-%d-cloudinit", v.VMID)
		volid := storage + ":" + name
		if s.volumeLocked(v.Node, volid) == nil {
			s.addVolumeLocked(&volume{Node: v.Node, Storage: storage, Volid: volid, Content: "images", Format: "raw", Size: 4 << 20, VMID: v.VMID})
		}
		d.file = volid
		d.opts = appendUnique(d.opts, "media=cdrom")
		return d.String(), nil
	}
	if m := newDiskRE.FindStringSubmatch(d.file); m != nil {
		if !sd.allows("images") {
			return "", fail("storage '%s' does not support vm images", storage)
		}
		gb, _ := strconv.ParseFloat(m[2], 64)
		size := int64(gb * (1 << 30))
		name := s.freeDiskNameLocked(v.Node, storage, v.VMID, "vm")
		volid := storage + ":" + name
		s.addVolumeLocked(&volume{Node: v.Node, Storage: storage, Volid: volid, Content: "images", Format: "raw", Size: size, VMID: v.VMID})
		d.file = volid
		d.size = formatSize(size)
		return d.String(), nil
	}
	vol := s.volumeLocked(v.Node, d.file)
	if vol == nil {
		return "", fail("volume '%s' does not exist", d.file)
	}
	if !d.isCDROM() && d.size == "" {
		d.size = formatSize(vol.Size)
	}
	return d.String(), nil
}

func appendUnique(opts []string, o string) []string {
	for _, x := range opts {
		if x == o {
			return opts
		}
	}
	return append(opts, o)
}
