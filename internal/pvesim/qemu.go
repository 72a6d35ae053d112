package pvesim

import (
	"strconv"
)

// notFound is PVE's error for a VM whose config is not on the node asked.
func notFound(node string, vmid int) *apiError {
	return fail("Configuration file 'nodes/%s/qemu-server/%d.conf' does not exist", node, vmid)
}

// vmLocked returns the VM vmid on node (s.mu held) or PVE's error.
func (s *Server) vmLocked(node string, vmid int) (*vmState, error) {
	v := s.st.VMs[vmid]
	if v == nil || v.Node != node {
		return nil, notFound(node, vmid)
	}
	return v, nil
}

// checkConfigLock is PVE's check_lock: "VM is locked (clone)".
func checkConfigLock(v *vmState) error {
	if l := v.lock(); l != "" {
		return fail("VM is locked (%s)", l)
	}
	return nil
}

// rootParam refuses a root-only parameter for other users (tokens included).
func (c *call) rootParam(name string) error {
	if c.has(name) && c.str(name) != "0" && c.str(name) != "" && !c.isRoot() {
		return paramErr1(name, "Only root may use this option.")
	}
	return nil
}

func (c *call) vmid() int { return c.integer("vmid", 0) }

// handleQemuList is GET /nodes/{node}/qemu.
func handleQemuList(c *call) (any, error) {
	if err := c.checkNode(); err != nil {
		return nil, err
	}
	node := c.node()
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []map[string]any{}
	for _, id := range s.st.sortedVMIDs() {
		v := s.st.VMs[id]
		if v.Node != node {
			continue
		}
		r := s.vmResourceLocked(v)
		m := map[string]any{
			"vmid": v.VMID, "status": r["status"], "cpus": r["maxcpu"], "maxmem": r["maxmem"],
			"mem": r["mem"], "maxdisk": r["maxdisk"], "disk": 0, "netin": 0, "netout": 0,
			"diskread": 0, "diskwrite": 0, "uptime": r["uptime"], "cpu": r["cpu"],
		}
		for _, k := range []string{"name", "lock", "tags"} {
			if x, ok := r[k]; ok {
				m[k] = x
			}
		}
		if v.isTemplate() {
			m["template"] = 1
		}
		if v.Running {
			m["pid"] = v.PID
		}
		out = append(out, m)
	}
	return out, nil
}

// handleStatusCurrent is GET /nodes/{node}/qemu/{vmid}/status/current.
func handleStatusCurrent(c *call) (any, error) {
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
	r := s.vmResourceLocked(v)
	m := map[string]any{
		"vmid": v.VMID, "status": r["status"], "qmpstatus": r["status"], "uptime": r["uptime"],
		"cpus": r["maxcpu"], "maxmem": r["maxmem"], "mem": r["mem"], "maxdisk": r["maxdisk"],
		"disk": 0, "netin": 0, "netout": 0, "diskread": 0, "diskwrite": 0, "cpu": r["cpu"],
		"ha": map[string]any{"managed": 0},
	}
	for _, k := range []string{"name", "lock", "tags"} {
		if x, ok := r[k]; ok {
			m[k] = x
		}
	}
	if v.isTemplate() {
		m["template"] = 1
	}
	if agentEnabled(v.Conf) {
		m["agent"] = 1
	}
	if v.Running {
		m["pid"] = v.PID
		m["running-machine"] = "pc-i440fx-9.2+pve1"
		m["running-qemu"] = "9.2.0"
		m["balloon"] = memoryMiB(v.Conf) << 20
		m["freemem"] = memoryMiB(v.Conf) << 19
	}
	return m, nil
}

// agentEnabled reports whether the config enables the guest agent
// ("1" or "enabled=1,...").
func agentEnabled(conf map[string]string) bool {
	a, ok := conf["agent"]
	if !ok {
		return false
	}
	d := parseDrive(a) // same key=value,... shape
	if d.file == "1" {
		return true
	}
	for _, o := range d.opts {
		if o == "enabled=1" {
			return true
		}
	}
	return false
}

func vmidString(id int) string { return strconv.Itoa(id) }
