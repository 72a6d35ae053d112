package pvesim

import (
	"time"
)

// powerTask runs a power change the way qemu-server does: in a worker that
// holds the VM's config lock for the modelled duration, loading the config
// (and failing if it is gone) at the start.
func (c *call) powerTask(typ string, d time.Duration, check func(v *vmState) error, apply func(v *vmState)) (any, error) {
	s := c.s
	node, vmid := c.node(), c.vmid()
	return s.startTask(taskSpec{
		node: node, typ: typ, id: vmidString(vmid), user: c.user, duration: d,
		work: func(tr *taskRun) error {
			unlock, err := s.lockConfig(tr.ctx, vmid)
			if err != nil {
				return err
			}
			defer unlock()
			s.mu.Lock()
			v, err := s.vmLocked(node, vmid)
			if err == nil {
				err = check(v)
			}
			s.mu.Unlock()
			if err != nil {
				return err
			}
			if err := tr.sleep(d); err != nil {
				return err
			}
			s.mu.Lock()
			defer s.mu.Unlock()
			v, err = s.vmLocked(node, vmid)
			if err != nil {
				return err
			}
			apply(v)
			s.markDirtyLocked()
			return nil
		},
	})
}

func (s *Server) startVMLocked(v *vmState) {
	s.applyPendingLocked(v)
	v.Running = true
	v.StartedAt = s.clock.Now()
	v.PID = s.st.NextPID
	s.st.NextPID++
	s.scheduleGuestBootLocked(v)
}

func stopVM(v *vmState) {
	v.Running = false
	v.StartedAt = time.Time{}
	v.PID = 0
}

// handleStart is POST .../status/start (task qmstart).
func handleStart(c *call) (any, error) {
	if err := c.checkNode(); err != nil {
		return nil, err
	}
	for _, p := range []string{"skiplock", "stateuri", "migratedfrom", "migration_type", "migration_network",
		"targetstorage", "force-cpu", "with-conntrack-state", "nets-host-mtu"} {
		if err := c.rootParam(p); err != nil {
			return nil, err
		}
	}
	skiplock := c.flag("skiplock")
	vmid := c.vmid()
	return c.powerTask("qmstart", c.s.opts.Latency.Start, func(v *vmState) error {
		if v.isTemplate() {
			return fail("you can't start a vm if it's a template")
		}
		if !skiplock {
			if err := checkConfigLock(v); err != nil {
				return err
			}
		}
		if v.Running {
			return fail("VM %d already running", vmid)
		}
		return c.s.checkGuestLocked(v)
	}, c.s.startVMLocked)
}

// handleStop is POST .../status/stop (task qmstop; a stopped VM is fine).
func handleStop(c *call) (any, error) {
	if err := c.checkNode(); err != nil {
		return nil, err
	}
	for _, p := range []string{"skiplock", "keepActive", "migratedfrom"} {
		if err := c.rootParam(p); err != nil {
			return nil, err
		}
	}
	skiplock := c.flag("skiplock")
	d := c.s.opts.Latency.Stop
	return c.powerTask("qmstop", d, func(v *vmState) error {
		if !skiplock {
			return checkConfigLock(v)
		}
		return nil
	}, c.s.stopVMLocked)
}

// handleShutdown is POST .../status/shutdown (task qmshutdown).
func handleShutdown(c *call) (any, error) {
	if err := c.checkNode(); err != nil {
		return nil, err
	}
	for _, p := range []string{"skiplock", "keepActive"} {
		if err := c.rootParam(p); err != nil {
			return nil, err
		}
	}
	skiplock := c.flag("skiplock")
	return c.powerTask("qmshutdown", c.s.opts.Latency.Shutdown, func(v *vmState) error {
		if !skiplock {
			return checkConfigLock(v)
		}
		return nil
	}, c.s.stopVMLocked)
}

// handleReboot is POST .../status/reboot: 500 when stopped, else task qmreboot.
func handleReboot(c *call) (any, error) {
	if err := c.checkNode(); err != nil {
		return nil, err
	}
	s := c.s
	vmid := c.vmid()
	s.mu.Lock()
	v := s.st.VMs[vmid]
	running := v != nil && v.Node == c.node() && v.Running
	s.mu.Unlock()
	if !running {
		return nil, fail("VM %d not running", vmid)
	}
	return c.powerTask("qmreboot", s.opts.Latency.Reboot, func(v *vmState) error {
		if err := checkConfigLock(v); err != nil {
			return err
		}
		if !v.Running {
			return fail("VM %d not running", vmid)
		}
		return nil
	}, func(v *vmState) {
		s.stopVMLocked(v)
		s.startVMLocked(v)
	})
}
