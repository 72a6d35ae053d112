package pvesim

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// storageDef is a storage every node has (both are local, not shared).
type storageDef struct {
	ID      string
	Type    string // dir, lvmthin
	Content []string
	Total   int64
}

func storageDefs() []storageDef {
	return []storageDef{
		{ID: "local", Type: "dir", Content: []string{"backup", "iso", "snippets", "vztmpl"}, Total: 100 << 30},
		{ID: "local-lvm", Type: "lvmthin", Content: []string{"images", "rootdir"}, Total: 500 << 30},
	}
}

func findStorage(id string) (storageDef, bool) {
	for _, sd := range storageDefs() {
		if sd.ID == id {
			return sd, true
		}
	}
	return storageDef{}, false
}

func (sd storageDef) allows(content string) bool {
	for _, c := range sd.Content {
		if c == content {
			return true
		}
	}
	return false
}

func (s *Server) storageResourceLocked(node string, sd storageDef) map[string]any {
	used := s.storageUsedLocked(node, sd.ID)
	return map[string]any{
		"id": "storage/" + node + "/" + sd.ID, "storage": sd.ID, "node": node, "type": "storage",
		"status": "available", "content": strings.Join(sd.Content, ","), "plugintype": sd.Type,
		"disk": used, "maxdisk": sd.Total, "shared": 0,
	}
}

func (s *Server) storageUsedLocked(node, storage string) int64 {
	var used int64
	prefix := volKey(node, storage+":")
	for k, v := range s.st.Volumes {
		if strings.HasPrefix(k, prefix) {
			used += v.Size
		}
	}
	return used
}

// volumeLocked returns the volume volid on node, or nil.
func (s *Server) volumeLocked(node, volid string) *volume {
	return s.st.Volumes[volKey(node, volid)]
}

// volumesLocked returns the volumes of a storage on node sorted by volid.
func (s *Server) volumesLocked(node, storage string) []*volume {
	var out []*volume
	prefix := volKey(node, storage+":")
	for k, v := range s.st.Volumes {
		if strings.HasPrefix(k, prefix) {
			out = append(out, v)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Volid < out[j].Volid })
	return out
}

// freeDiskNameLocked returns the first free "vm-ID-disk-N" on a storage
// (names of base volumes count as taken, as LVM would refuse them).
func (s *Server) freeDiskNameLocked(node, storage string, vmid int, prefix string) string {
	taken := func(name string) bool {
		for _, p := range []string{storage + ":", storage + ":" + strconv.Itoa(vmid) + "/"} {
			for _, ext := range []string{"", ".raw", ".qcow2", ".vmdk"} {
				if _, ok := s.st.Volumes[volKey(node, p+name+ext)]; ok {
					return true
				}
			}
		}
		return false
	}
	for n := 0; ; n++ {
		suffix := fmt.Sprintf("%d-disk-%d", vmid, n)
		if !taken(prefix+"-"+suffix) && !taken("vm-"+suffix) && !taken("base-"+suffix) {
			return prefix + "-" + suffix
		}
	}
}

// addVolumeLocked stores a new volume.
func (s *Server) addVolumeLocked(v *volume) {
	if v.CTime == 0 {
		v.CTime = s.clock.Now().Unix()
	}
	s.st.Volumes[volKey(v.Node, v.Volid)] = v
	s.markDirtyLocked()
}

// volumeOwner returns the VMID a volume name belongs to ("vm-101-disk-0",
// "base-9000-disk-0", "101/vm-101-disk-0.qcow2"), or 0.
func volumeOwner(volid string) int {
	_, name, _ := strings.Cut(volid, ":")
	if i := strings.LastIndex(name, "/"); i >= 0 {
		name = name[i+1:]
	}
	for _, p := range []string{"vm-", "base-"} {
		if rest, ok := strings.CutPrefix(name, p); ok {
			id, _, _ := strings.Cut(rest, "-")
			if n, err := strconv.Atoi(id); err == nil {
				return n
			}
		}
	}
	return 0
}

// isBaseVolume reports whether a volid names a template's base volume.
func isBaseVolume(volid string) bool {
	_, name, _ := strings.Cut(volid, ":")
	if i := strings.LastIndex(name, "/"); i >= 0 {
		name = name[i+1:]
	}
	return strings.HasPrefix(name, "base-")
}

// addTemplate creates a template VM and its base volume.
func (s *Server) addTemplate(t Template) error {
	node := t.Node
	if node == "" {
		node = s.nodes[0]
	}
	if !s.hasNode(node) {
		return fmt.Errorf("template %d: node %q is not in the cluster", t.VMID, node)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.st.VMs[t.VMID]; ok {
		return fmt.Errorf("template %d: VMID used twice", t.VMID)
	}
	base := fmt.Sprintf("base-%d-disk-0", t.VMID)
	s.addVolumeLocked(&volume{
		Node: node, Storage: "local-lvm", Volid: "local-lvm:" + base, Content: "images",
		Format: "raw", Size: 8 << 30, VMID: t.VMID,
	})
	s.st.VMs[t.VMID] = &vmState{VMID: t.VMID, Node: node, Conf: map[string]string{
		"name":     t.Name,
		"template": "1",
		"scsi0":    "local-lvm:" + base + ",size=8G",
		"net0":     netConfig{model: "virtio", mac: s.newMACLocked(), opts: map[string]string{"bridge": "vmbr0"}}.String(),
		"agent":    "1",
		"ostype":   "l26",
		"scsihw":   "virtio-scsi-single",
		"boot":     "order=scsi0",
		"cores":    "1",
		"memory":   "1024",
		"serial0":  "socket",
		"vga":      "serial0",
		"smbios1":  "uuid=" + s.uuidLocked(),
		"meta":     fmt.Sprintf("creation-qemu=9.2.0,ctime=%d", s.clock.Now().Unix()),
	}}
	s.markDirtyLocked()
	return nil
}

// uuidLocked returns a deterministic version-4 style UUID (s.mu held).
func (s *Server) uuidLocked() string {
	s.st.MACSeq++
	x := s.st.MACSeq*0x9E3779B97F4A7C15 + uint64(s.opts.Seed)
	y := x*0xBF58476D1CE4E5B9 + 0x94D049BB133111EB
	return fmt.Sprintf("%08x-%04x-4%03x-a%03x-%012x", uint32(x>>32), uint16(x>>16), uint16(x)&0xfff,
		uint16(y>>48)&0xfff, y&0xffffffffffff)
}
