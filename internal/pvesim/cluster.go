package pvesim

import (
	"strconv"
	"strings"
)

// The version the simulator reports for GET /version.
const (
	// DefaultVersion is the PVE release GET /version reports by default.
	DefaultVersion = "9.1.1"
	pveRepoID      = "42db4a6cf33dac83"
)

func handleVersion(c *call) (any, error) {
	v := c.s.opts.Version
	if v == "" {
		v = DefaultVersion
	}
	release := v
	if parts := strings.SplitN(v, ".", 3); len(parts) == 3 {
		release = parts[0] + "." + parts[1]
	}
	return map[string]any{"version": v, "release": release, "repoid": pveRepoID}, nil
}

// checkNode fails like PVE's proxy step for a node that is not in the cluster.
func (c *call) checkNode() error {
	n := c.str("node")
	if n == "localhost" || c.s.hasNode(n) {
		return nil
	}
	return fail("hostname lookup '%s' failed - failed to get address info for: %s: Name or service not known", n, n)
}

// node returns the {node} parameter, "localhost" resolved to the first node.
func (c *call) node() string {
	n := c.str("node")
	if n == "localhost" {
		return c.s.nodes[0]
	}
	return n
}

// handleNextID is GET /cluster/nextid: a free VMID as a JSON string.
func handleNextID(c *call) (any, error) {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	if c.has("vmid") {
		id := c.integer("vmid", 0)
		if _, taken := c.s.st.VMs[id]; taken {
			return nil, paramErr1("vmid", "VM "+strconv.Itoa(id)+" already exists")
		}
		return strconv.Itoa(id), nil
	}
	for id := 100; id < 1000000; id++ {
		if _, taken := c.s.st.VMs[id]; !taken {
			return strconv.Itoa(id), nil
		}
	}
	return nil, fail("unable to get any free VMID in range [100, 1000000]")
}

func handleClusterResources(c *call) (any, error) {
	typ := c.str("type")
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []map[string]any{}
	if typ == "" || typ == "node" {
		for _, n := range s.nodes {
			out = append(out, s.nodeStatusLocked(n))
		}
	}
	if typ == "" || typ == "vm" {
		for _, id := range s.st.sortedVMIDs() {
			out = append(out, s.vmResourceLocked(s.st.VMs[id]))
		}
	}
	if typ == "" || typ == "storage" {
		for _, n := range s.nodes {
			for _, sd := range storageDefs() {
				out = append(out, s.storageResourceLocked(n, sd))
			}
		}
	}
	return out, nil
}

func (s *Server) nodeStatusLocked(n string) map[string]any {
	var mem int64
	for _, v := range s.st.VMs {
		if v.Node == n && v.Running {
			mem += memoryMiB(v.Conf) << 20 / 2
		}
	}
	return map[string]any{
		"id": "node/" + n, "type": "node", "node": n, "status": "online", "level": "",
		"cpu": 0.02, "maxcpu": 16, "mem": int64(2<<30) + mem, "maxmem": int64(64 << 30),
		"disk": int64(5 << 30), "maxdisk": int64(100 << 30), "uptime": 864000,
		"cgroup-mode": 2,
	}
}

func (s *Server) vmResourceLocked(v *vmState) map[string]any {
	now := s.clock.Now()
	m := map[string]any{
		"id": "qemu/" + strconv.Itoa(v.VMID), "vmid": v.VMID, "node": v.Node, "type": "qemu",
		"status": "stopped", "template": 0,
		"maxcpu": cpuCount(v.Conf), "cpu": 0, "maxmem": memoryMiB(v.Conf) << 20, "mem": 0,
		"maxdisk": s.bootDiskSizeLocked(v), "disk": 0,
		"netin": 0, "netout": 0, "diskread": 0, "diskwrite": 0, "uptime": 0,
	}
	if name, ok := v.Conf["name"]; ok {
		m["name"] = name
	}
	if v.isTemplate() {
		m["template"] = 1
	}
	if v.Running {
		up := int64(now.Sub(v.StartedAt).Seconds())
		if up < 0 {
			up = 0
		}
		m["status"] = "running"
		m["uptime"] = up
		m["cpu"] = 0.01
		m["mem"] = memoryMiB(v.Conf) << 20 / 2
	}
	if l := v.lock(); l != "" {
		m["lock"] = l
	}
	if t := v.Conf["tags"]; t != "" {
		m["tags"] = t
	}
	if v.Pool != "" {
		m["pool"] = v.Pool
	}
	return m
}

// bootDiskSizeLocked returns the size of the VM's first disk in bytes.
func (s *Server) bootDiskSizeLocked(v *vmState) int64 {
	for _, k := range []string{"scsi0", "virtio0", "sata0", "ide0"} {
		if val, ok := v.Conf[k]; ok {
			d := parseDrive(val)
			if d.isCDROM() {
				continue
			}
			if n, ok := parseSize(d.size); ok {
				return n
			}
		}
	}
	return 0
}

// handleHAResource is GET /cluster/ha/resources/{sid}; the simulator has no HA.
func handleHAResource(c *call) (any, error) {
	sid := c.str("sid")
	if _, err := strconv.Atoi(sid); err == nil {
		sid = "vm:" + sid
	}
	return nil, fail("no such resource '%s'", sid)
}

func handleNodes(c *call) (any, error) {
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []map[string]any{}
	for _, n := range s.nodes {
		m := s.nodeStatusLocked(n)
		delete(m, "cgroup-mode")
		m["ssl_fingerprint"] = "AB:CD:EF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC"
		out = append(out, m)
	}
	return out, nil
}
