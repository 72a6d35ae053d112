package pvesim

// handleCloudinitUpdate is PUT /nodes/{node}/qemu/{vmid}/cloudinit:
// qemu-server's cloudinit_update regenerates the cloud-init drive from the
// current config, under the VM's config lock. The simulator's drive holds
// no bytes; regenerating it renews the volume's creation time. A VM without
// a cloud-init drive is left alone, as in qemu-server.
func handleCloudinitUpdate(c *call) (any, error) {
	if err := c.checkNode(); err != nil {
		return nil, err
	}
	s := c.s
	vmid := c.vmid()
	unlock, err := s.lockConfig(c.r.Context(), vmid)
	if err != nil {
		return nil, err
	}
	defer unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	v, err := s.vmLocked(c.node(), vmid)
	if err != nil {
		return nil, err
	}
	if err := checkConfigLock(v); err != nil {
		return nil, err
	}
	for k, val := range v.Conf {
		if !driveKeyRE.MatchString(k) {
			continue
		}
		d := parseDrive(val)
		if !d.isCloudInit() {
			continue
		}
		if vol := s.volumeLocked(v.Node, d.file); vol != nil {
			vol.CTime = s.clock.Now().Unix()
			s.markDirtyLocked()
		}
	}
	return nil, nil
}
