package pvesim

import (
	"fmt"
	"sort"
	"strings"
)

// createMeta are parameters of POST /nodes/{node}/qemu that are not config options.
var createMeta = setOf("node", "vmid", "archive", "storage", "pool", "start", "unique", "force",
	"live-restore", "bwlimit", "import-working-storage")

// handleCreate is POST /nodes/{node}/qemu (task qmcreate). The VM exists at
// once with "lock: create" until the task finishes.
func handleCreate(c *call) (any, error) {
	if err := c.checkNode(); err != nil {
		return nil, err
	}
	s := c.s
	node, vmid := c.node(), c.vmid()
	if c.has("archive") {
		return nil, fail("restoring archives is not supported by the simulator")
	}
	if pool := c.str("pool"); pool != "" && !s.pools[pool] {
		return nil, fail("pool '%s' does not exist", pool)
	}
	set := map[string]string{}
	for k, v := range c.params {
		if !createMeta[k] {
			set[k] = v
		}
	}
	for k, v := range set {
		switch {
		case netKeyRE.MatchString(k):
			n, err := parseNet(v)
			if err != nil {
				return nil, paramErr1(k, err.Error())
			}
			set[k] = n.String()
		case k == "tags":
			set[k] = normalizeTags(v)
		case k == "description":
			set[k] = descTrailing.ReplaceAllString(v, "")
		case k == "cdrom":
			delete(set, k)
			set["ide2"] = v + ",media=cdrom"
		}
	}
	if keys, ok := set["sshkeys"]; ok {
		if err := validateSSHKeys(uriUnescape(keys)); err != nil {
			return nil, err
		}
	}
	s.mu.Lock()
	if other, ok := s.st.VMs[vmid]; ok {
		s.mu.Unlock()
		return nil, fail("unable to create VM %d - VM %d already exists on node '%s'", vmid, vmid, other.Node)
	}
	s.st.VMs[vmid] = &vmState{VMID: vmid, Node: node, Conf: map[string]string{"lock": "create"}}
	s.markDirtyLocked()
	s.mu.Unlock()

	start := c.flag("start")
	pool := c.str("pool")
	d := s.opts.Latency.Create
	return s.startTask(taskSpec{
		node: node, typ: "qmcreate", id: vmidString(vmid), user: c.user, duration: d,
		lockedVMs: []int{vmid},
		work: func(tr *taskRun) error {
			unlock, err := s.lockConfig(tr.ctx, vmid)
			if err != nil {
				return s.abortCreate(vmid, err)
			}
			defer unlock()
			if err := tr.sleep(d); err != nil {
				return err
			}
			s.mu.Lock()
			defer s.mu.Unlock()
			v := s.st.VMs[vmid]
			if v == nil {
				return fail("unable to create VM %d - config vanished", vmid)
			}
			conf := map[string]string{}
			keys := make([]string, 0, len(set))
			for k := range set {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				val := set[k]
				switch {
				case netKeyRE.MatchString(k):
					n, _ := parseNet(val)
					if n.mac == "" {
						n.mac = s.newMACLocked()
					}
					val = n.String()
				case driveKeyRE.MatchString(k):
					nv, err := s.createDiskLocked(v, k, val)
					if err != nil {
						delete(s.st.VMs, vmid)
						return err
					}
					if strings.Contains(nv, ":vm-") && nv != val {
						tr.t.Log = append(tr.t.Log, fmt.Sprintf("  Logical volume \"%s\" created.", volName(parseDrive(nv).file)))
					}
					val = nv
				case k == "cipassword":
					val = hashPassword(val)
				case k == "vmgenid" && val == "1":
					val = s.uuidLocked()
				}
				conf[k] = val
			}
			if _, ok := conf["smbios1"]; !ok {
				conf["smbios1"] = "uuid=" + s.uuidLocked()
			}
			if _, ok := conf["vmgenid"]; !ok {
				conf["vmgenid"] = s.uuidLocked()
			}
			conf["meta"] = fmt.Sprintf("creation-qemu=9.2.0,ctime=%d", s.clock.Now().Unix())
			v.Conf = conf
			v.Pool = pool
			if start {
				s.startVMLocked(v)
			}
			s.markDirtyLocked()
			return nil
		},
	})
}

// abortCreate removes the placeholder of a failed create.
func (s *Server) abortCreate(vmid int, err error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v := s.st.VMs[vmid]; v != nil && v.lock() == "create" {
		delete(s.st.VMs, vmid)
		s.markDirtyLocked()
	}
	return err
}
