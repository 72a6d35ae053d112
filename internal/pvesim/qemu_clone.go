package pvesim

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// clonePlan is what qemu-server's $load_and_check computes for a clone.
type clonePlan struct {
	full    bool
	running bool
	newConf map[string]string
	drives  []string // drive keys to copy or link, sorted
	oldConf map[string]string
}

// planClone repeats PVE's checks for a clone (s.mu held). They run once
// before the task starts (errors are the call's answer) and again inside the
// task under the locks (errors end the task).
func (c *call) planCloneLocked(node string, vmid, newid int, target string) (*clonePlan, error) {
	s := c.s
	if pool := c.str("pool"); pool != "" && !s.pools[pool] {
		return nil, fail("pool '%s' does not exist", pool)
	}
	if target != "" && !s.hasNode(target) {
		return nil, fail("no such cluster node '%s'", target)
	}
	storage := c.str("storage")
	if storage != "" {
		sd, ok := findStorage(storage)
		if !ok {
			return nil, fail("storage '%s' does not exist", storage)
		}
		if !sd.allows("images") {
			return nil, paramErr1("storage", fmt.Sprintf("storage '%s' does not support vm images", storage))
		}
		if target != "" {
			return nil, fail("can't clone to non-shared storage '%s'", storage)
		}
	}
	v, err := s.vmLocked(node, vmid)
	if err != nil {
		return nil, err
	}
	if err := checkConfigLock(v); err != nil {
		return nil, err
	}
	if snap := c.str("snapname"); snap != "" {
		return nil, fail("snapshot '%s' does not exist", snap)
	}
	full := !v.isTemplate()
	if c.has("full") {
		full = c.flag("full")
	}
	if c.has("storage") && !full {
		return nil, fail("parameter 'storage' not allowed for linked clones")
	}
	if c.has("format") && !full {
		return nil, fail("parameter 'format' not allowed for linked clones")
	}
	p := &clonePlan{full: full, running: v.Running, newConf: map[string]string{}, oldConf: map[string]string{}}
	for k, val := range v.Conf {
		p.oldConf[k] = val
	}
	keys := make([]string, 0, len(v.Conf))
	for k := range v.Conf {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		val := v.Conf[k]
		switch {
		case k == "parent" || k == "snaptime" || k == "vmstate" || k == "runningcpu" ||
			k == "runningmachine" || k == "running-nets-host-mtu" || k == "lock":
			continue
		case strings.HasPrefix(k, "unused"):
			continue
		case netKeyRE.MatchString(k):
			n, err := parseNet(val)
			if err != nil {
				return nil, fail("unable to parse network options for '%s'", k)
			}
			n.mac = s.newMACLocked()
			p.newConf[k] = n.String()
		case driveKeyRE.MatchString(k):
			d := parseDrive(val)
			if d.isCDROM() && !d.isCloudInit() {
				p.newConf[k] = val
				continue
			}
			if !full && !d.isCloudInit() && !isBaseVolume(d.file) {
				return nil, fail("Linked clone feature is not supported for '%s' (%s)", d.file, k)
			}
			p.drives = append(p.drives, k)
		default:
			p.newConf[k] = val
		}
	}
	if target != "" && target != node {
		return nil, fail("can't clone VM to node '%s' (VM uses local storage)", target)
	}
	if _, exists := s.st.VMs[newid]; exists {
		return nil, fail("unable to create VM %d: config file already exists", newid)
	}
	return p, nil
}

// handleClone is POST /nodes/{node}/qemu/{vmid}/clone (task qmclone, id = source VMID).
func handleClone(c *call) (any, error) {
	if err := c.checkNode(); err != nil {
		return nil, err
	}
	s := c.s
	node, vmid, newid := c.node(), c.vmid(), c.integer("newid", 0)
	target := c.str("target")
	if target == node || target == "localhost" {
		target = ""
	}
	s.mu.Lock()
	p, err := c.planCloneLocked(node, vmid, newid, target)
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	d := s.opts.Latency.LinkedClone
	if p.full {
		d = s.opts.Latency.FullClone
	}
	return s.startTask(taskSpec{
		node: node, typ: "qmclone", id: vmidString(vmid), user: c.user, duration: d,
		lockedVMs: []int{newid},
		work:      func(tr *taskRun) error { return c.cloneWork(tr, node, vmid, newid, target, p.running) },
	})
}

func (c *call) cloneWork(tr *taskRun, node string, vmid, newid int, target string, running bool) error {
	s := c.s
	lat := s.opts.Latency
	// Exclusive lock on a running source, else shared; then the target's lock.
	unlockSrc, err := s.lockVM(tr.ctx, vmid, running, lat.cloneLockTimeout())
	if err != nil {
		return err
	}
	defer unlockSrc()
	unlockDst, err := s.lockVM(tr.ctx, newid, true, lat.cloneLockTimeout())
	if err != nil {
		return err
	}
	defer unlockDst()

	s.mu.Lock()
	p, err := c.planCloneLocked(node, vmid, newid, target)
	if err != nil {
		s.mu.Unlock()
		return err
	}
	tr.t.Log = append(tr.t.Log, fmt.Sprintf("create %s clone of drive(s) of VM %d", map[bool]string{true: "full", false: "linked"}[p.full], vmid))
	p.newConf["smbios1"] = replaceUUID(p.newConf["smbios1"], s.uuidLocked())
	if _, ok := p.newConf["vmgenid"]; ok {
		p.newConf["vmgenid"] = s.uuidLocked()
	}
	delete(p.newConf, "template")
	if name := c.str("name"); name != "" {
		p.newConf["name"] = name
	} else if old, ok := p.oldConf["name"]; ok {
		p.newConf["name"] = "Copy-of-VM-" + old
	} else {
		p.newConf["name"] = fmt.Sprintf("Copy-of-VM-%d", vmid)
	}
	if desc := c.str("description"); desc != "" {
		p.newConf["description"] = strings.TrimRight(desc, " \t\r\n")
	}
	// The target exists at once as qemu-server's temporary config, "lock:
	// clone" alone, durable before any disk is copied.
	s.st.VMs[newid] = &vmState{VMID: newid, Node: node, Conf: map[string]string{"lock": "clone"}}
	s.markDirtyLocked()
	s.mu.Unlock()
	if err := s.waitDurable(); err != nil {
		return err
	}

	dur := lat.LinkedClone
	if p.full {
		dur = lat.FullClone
	}
	// As in qemu-server's clone_vm, the disks are copied one after the other
	// and the config (still locked, with the disks copied so far) is written
	// after each; the lock goes in the last write. A crash in between leaves
	// that placeholder and the disks made so far (persist.go).
	step := dur
	if len(p.drives) > 1 {
		step = dur / time.Duration(len(p.drives))
	}
	if len(p.drives) == 0 {
		if err := tr.sleep(dur); err != nil {
			return err
		}
	}
	for _, k := range p.drives {
		if err := tr.sleep(step); err != nil {
			return err
		}
		s.mu.Lock()
		v := s.st.VMs[newid]
		if v == nil {
			s.mu.Unlock()
			return fail("clone failed: target VM %d vanished", newid)
		}
		p.newConf[k] = c.cloneDriveLocked(tr, p, k, node, newid)
		conf := map[string]string{"lock": "clone"}
		for ck, cv := range p.newConf {
			conf[ck] = cv
		}
		v.Conf = conf
		s.markDirtyLocked()
		s.mu.Unlock()
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.st.VMs[newid]
	if v == nil {
		return fail("clone failed: target VM %d vanished", newid)
	}
	v.Conf = p.newConf
	if target != "" {
		v.Node = target
	}
	if pool := c.str("pool"); pool != "" {
		v.Pool = pool
	}
	s.markDirtyLocked()
	return nil
}

// cloneDriveLocked makes the target's volume for drive k and returns the
// drive's new value (s.mu held).
func (c *call) cloneDriveLocked(tr *taskRun, p *clonePlan, k, node string, newid int) string {
	s := c.s
	dr := parseDrive(p.oldConf[k])
	src := s.volumeLocked(node, dr.file)
	srcStorage, _, _ := strings.Cut(dr.file, ":")
	if dr.isCloudInit() {
		name := fmt.Sprintf("vm-%d-cloudinit", newid)
		volid := srcStorage + ":" + name
		s.addVolumeLocked(&volume{Node: node, Storage: srcStorage, Volid: volid, Content: "images", Format: "raw", Size: 4 << 20, VMID: newid})
		dr.file = volid
		return dr.String()
	}
	dstStorage := srcStorage
	if st := c.str("storage"); st != "" && p.full {
		dstStorage = st
	}
	size := int64(0)
	if src != nil {
		size = src.Size
	} else if n, ok := parseSize(dr.size); ok {
		size = n
	}
	name := s.freeDiskNameLocked(node, dstStorage, newid, "vm")
	volid := dstStorage + ":" + name
	vol := &volume{Node: node, Storage: dstStorage, Volid: volid, Content: "images", Format: "raw", Size: size, VMID: newid}
	if !p.full {
		_, base, _ := strings.Cut(dr.file, ":")
		vol.Parent = base
		tr.t.Log = append(tr.t.Log, fmt.Sprintf("create linked clone of drive %s (%s)", k, dr.file))
	} else {
		tr.t.Log = append(tr.t.Log, fmt.Sprintf("create full clone of drive %s (%s)", k, dr.file),
			fmt.Sprintf("  Logical volume \"%s\" created.", name),
			"transferred 8.0 GiB of 8.0 GiB (100.00%)")
	}
	s.addVolumeLocked(vol)
	dr.file = volid
	if size > 0 {
		dr.size = formatSize(size)
	}
	return dr.String()
}

func replaceUUID(smbios, uuid string) string {
	if smbios == "" {
		return "uuid=" + uuid
	}
	parts := strings.Split(smbios, ",")
	found := false
	for i, p := range parts {
		if strings.HasPrefix(p, "uuid=") {
			parts[i] = "uuid=" + uuid
			found = true
		}
	}
	if !found {
		parts = append(parts, "uuid="+uuid)
	}
	return strings.Join(parts, ",")
}
