package pvesim

import (
	"fmt"
	"strings"
)

// destroyChecksLocked are qemu-server's early checks for a destroy (s.mu held).
func destroyChecks(v *vmState) error {
	if v.Conf["protection"] == "1" {
		return fail("can't remove VM %d - protection mode enabled", v.VMID)
	}
	if v.Running {
		return fail("VM %d is running - destroy failed", v.VMID)
	}
	return nil
}

// handleDestroy is DELETE /nodes/{node}/qemu/{vmid} (task qmdestroy). Only
// volumes owned by the VM (vm-<vmid>-...) are freed: never base volumes of
// templates it was cloned from, never other VMs' volumes, never ISO images.
func handleDestroy(c *call) (any, error) {
	if err := c.checkNode(); err != nil {
		return nil, err
	}
	if err := c.rootParam("skiplock"); err != nil {
		return nil, err
	}
	s := c.s
	node, vmid := c.node(), c.vmid()
	skiplock := c.flag("skiplock")
	unreferenced := c.flag("destroy-unreferenced-disks")
	s.mu.Lock()
	v, err := s.vmLocked(node, vmid)
	if err == nil {
		err = destroyChecks(v)
	}
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	d := s.opts.Latency.Destroy
	return s.startTask(taskSpec{
		node: node, typ: "qmdestroy", id: vmidString(vmid), user: c.user, duration: d,
		work: func(tr *taskRun) error {
			unlock, err := s.lockConfig(tr.ctx, vmid)
			if err != nil {
				return err
			}
			defer unlock()
			s.mu.Lock()
			v, err := s.vmLocked(node, vmid)
			if err == nil {
				err = destroyChecks(v)
			}
			if err == nil && !skiplock {
				err = checkConfigLock(v)
			}
			if err == nil {
				if base := s.linkedClonesOfLocked(v); base != "" {
					err = fail("base volume '%s' is still in use by linked clones", base)
				}
			}
			if err != nil {
				s.mu.Unlock()
				return err
			}
			v.Conf["lock"] = "destroyed"
			s.mu.Unlock()
			if err := tr.sleep(d); err != nil {
				return err
			}
			s.mu.Lock()
			defer s.mu.Unlock()
			for _, volid := range s.destroyVolumesLocked(v, unreferenced) {
				tr.t.Log = append(tr.t.Log, fmt.Sprintf("  Logical volume \"%s\" successfully removed.", strings.SplitN(volid, ":", 2)[1]))
				s.freeVolumeDirLocked(node, volid)
			}
			delete(s.st.VMs, vmid)
			s.destroyGuestLocked(vmid)
			s.markDirtyLocked()
			return nil
		},
	})
}

// linkedClonesOfLocked returns a base volume of v that a linked clone still
// uses, or "".
func (s *Server) linkedClonesOfLocked(v *vmState) string {
	for _, val := range v.Conf {
		d := parseDrive(val)
		if !isBaseVolume(d.file) || volumeOwner(d.file) != v.VMID {
			continue
		}
		_, base, _ := strings.Cut(d.file, ":")
		for _, vol := range s.st.Volumes {
			if vol.Node == v.Node && vol.Parent == base {
				return d.file
			}
		}
	}
	return ""
}

// destroyVolumesLocked frees the VM's own volumes and returns their volids.
func (s *Server) destroyVolumesLocked(v *vmState, unreferenced bool) []string {
	var freed []string
	seen := map[string]bool{}
	for k, val := range v.Conf {
		if !driveKeyRE.MatchString(k) {
			continue
		}
		volid := parseDrive(val).file
		if seen[volid] || volumeOwner(volid) != v.VMID {
			continue
		}
		seen[volid] = true
		if vol := s.volumeLocked(v.Node, volid); vol != nil && vol.Content == "images" {
			delete(s.st.Volumes, volKey(v.Node, volid))
			freed = append(freed, volid)
		}
	}
	// The pending section's disks were allocated too.
	for k, val := range v.Pending {
		if !driveKeyRE.MatchString(k) {
			continue
		}
		volid := parseDrive(val).file
		if seen[volid] || volumeOwner(volid) != v.VMID {
			continue
		}
		seen[volid] = true
		if vol := s.volumeLocked(v.Node, volid); vol != nil && vol.Content == "images" {
			delete(s.st.Volumes, volKey(v.Node, volid))
			freed = append(freed, volid)
		}
	}
	if unreferenced {
		for key, vol := range s.st.Volumes {
			if vol.Node == v.Node && vol.VMID == v.VMID && vol.Content == "images" && !seen[vol.Volid] {
				delete(s.st.Volumes, key)
				freed = append(freed, vol.Volid)
			}
		}
	}
	return freed
}
