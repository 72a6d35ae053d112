package pvesim

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
)

var resizeRE = regexp.MustCompile(`^(\+)?(\d+(?:\.\d+)?)([KMGT])?$`)

// handleResize is PUT /nodes/{node}/qemu/{vmid}/resize (task resize). As in
// qemu-server, every check but the parameters' runs inside the task.
func handleResize(c *call) (any, error) {
	if err := c.checkNode(); err != nil {
		return nil, err
	}
	if err := c.rootParam("skiplock"); err != nil {
		return nil, err
	}
	s := c.s
	node, vmid := c.node(), c.vmid()
	disk, sizeStr, digest := c.str("disk"), c.str("size"), c.str("digest")
	skiplock := c.flag("skiplock")
	d := s.opts.Latency.Resize
	return s.startTask(taskSpec{
		node: node, typ: "resize", id: vmidString(vmid), user: c.user, duration: d,
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
			v, err := s.vmLocked(node, vmid)
			if err != nil {
				return err
			}
			if digest != "" && digest != v.digest() {
				return fail("checksum mismatch (file change by other user?)")
			}
			if !skiplock {
				if err := checkConfigLock(v); err != nil {
					return err
				}
			}
			val, ok := v.Conf[disk]
			if !ok {
				return fail("disk '%s' does not exist", disk)
			}
			dr := parseDrive(val)
			if dr.isCDROM() {
				return fail("you can't resize a cdrom")
			}
			vol := s.volumeLocked(node, dr.file)
			if vol == nil {
				return fail("Could not determine current size of volume '%s'", dr.file)
			}
			m := resizeRE.FindStringSubmatch(sizeStr)
			if m == nil {
				return fail("internal error")
			}
			f, _ := strconv.ParseFloat(m[2], 64)
			switch m[3] {
			case "K":
				f *= 1 << 10
			case "M":
				f *= 1 << 20
			case "G":
				f *= 1 << 30
			case "T":
				f *= 1 << 40
			}
			if m[1] == "+" {
				f += float64(vol.Size)
			}
			newSize := int64(math.Floor(f))
			if newSize < vol.Size {
				return fail("shrinking disks is not supported")
			}
			if newSize == vol.Size {
				return nil
			}
			tr.t.Log = append(tr.t.Log, fmt.Sprintf("  Size of logical volume pve/%s changed from %s to %s.",
				volName(dr.file), humanSize(vol.Size), humanSize(newSize)))
			vol.Size = newSize
			dr.size = formatSize(newSize)
			v.Conf[disk] = dr.String()
			s.markDirtyLocked()
			return nil
		},
	})
}

func volName(volid string) string {
	for i := 0; i < len(volid); i++ {
		if volid[i] == ':' {
			return volid[i+1:]
		}
	}
	return volid
}

func humanSize(n int64) string {
	return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
}
