package pvesim

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
)

var (
	isoExtRE    = regexp.MustCompile(`(?i)[^/]+\.(?:iso|img)$`)
	vztmplExtRE = regexp.MustCompile(`(?i)[^/]+\.(?:tar|tar\.(gz|xz|zst|bz2))$`)
	badFileChar = regexp.MustCompile(`[^a-zA-Z0-9_.-]`)
)

// checkStorage fails like PVE for a storage that is not configured.
func (c *call) checkStorage() (storageDef, error) {
	sd, ok := findStorage(c.str("storage"))
	if !ok {
		return sd, fail("storage '%s' does not exist", c.str("storage"))
	}
	return sd, nil
}

// handleStorageList is GET /nodes/{node}/storage.
func handleStorageList(c *call) (any, error) {
	if err := c.checkNode(); err != nil {
		return nil, err
	}
	s := c.s
	node := c.node()
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []map[string]any{}
	for _, sd := range storageDefs() {
		if st := c.str("storage"); st != "" && st != sd.ID {
			continue
		}
		if ct := c.str("content"); ct != "" {
			ok := true
			for _, want := range splitList(ct) {
				ok = ok && sd.allows(want)
			}
			if !ok {
				continue
			}
		}
		used := s.storageUsedLocked(node, sd.ID)
		out = append(out, map[string]any{
			"storage": sd.ID, "type": sd.Type, "content": strings.Join(sd.Content, ","),
			"active": 1, "enabled": 1, "shared": 0, "total": sd.Total, "used": used,
			"avail": sd.Total - used, "used_fraction": float64(used) / float64(sd.Total),
		})
	}
	return out, nil
}

func volumeItem(v *volume) map[string]any {
	m := map[string]any{"volid": v.Volid, "format": v.Format, "size": v.Size, "content": v.Content, "ctime": v.CTime}
	if v.VMID != 0 {
		m["vmid"] = v.VMID
	}
	// LVM-thin lists neither "used" nor "parent"; directory storages do.
	if sd, _ := findStorage(v.Storage); sd.Type == "dir" && v.Content == "images" {
		m["used"] = v.Size
		if v.Parent != "" {
			m["parent"] = v.Parent
		}
	}
	if v.Notes != "" {
		m["notes"] = strings.SplitN(v.Notes, "\n", 2)[0]
	}
	return m
}

// handleContentList is GET /nodes/{node}/storage/{storage}/content.
func handleContentList(c *call) (any, error) {
	if err := c.checkNode(); err != nil {
		return nil, err
	}
	if _, err := c.checkStorage(); err != nil {
		return nil, err
	}
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []map[string]any{}
	vmid := c.integer("vmid", 0)
	for _, v := range s.volumesLocked(c.node(), c.str("storage")) {
		if ct := c.str("content"); ct != "" && v.Content != ct {
			continue
		}
		if vmid != 0 && v.VMID != vmid {
			continue
		}
		out = append(out, volumeItem(v))
	}
	return out, nil
}

// handleContentAlloc is POST /nodes/{node}/storage/{storage}/content: allocate
// a disk image owned by vmid; answers the volid.
func handleContentAlloc(c *call) (any, error) {
	if err := c.checkNode(); err != nil {
		return nil, err
	}
	sd, err := c.checkStorage()
	if err != nil {
		return nil, err
	}
	name, sizeStr, vmid := c.str("filename"), c.str("size"), c.integer("vmid", 0)
	var kib int64
	switch {
	case regexp.MustCompile(`^\d+$`).MatchString(sizeStr):
		kib, _ = strconv.ParseInt(sizeStr, 10, 64)
	case strings.HasSuffix(sizeStr, "M"):
		n, _ := strconv.ParseInt(strings.TrimSuffix(sizeStr, "M"), 10, 64)
		kib = n * 1024
	case strings.HasSuffix(sizeStr, "G"):
		n, _ := strconv.ParseInt(strings.TrimSuffix(sizeStr, "G"), 10, 64)
		kib = n * 1024 * 1024
	default:
		return nil, paramErr1("size", fmt.Sprintf("unable to parse size '%s'", sizeStr))
	}
	format := c.str("format")
	if m := regexp.MustCompile(`\.(raw|qcow2|vmdk)$`).FindStringSubmatch(name); m != nil {
		if format != "" && format != m[1] {
			return nil, paramErr1("format", fmt.Sprintf("different storage formats (%s != %s)", format, m[1]))
		}
		format = m[1]
	}
	if name != "" && !strings.HasPrefix(name, fmt.Sprintf("vm-%d-", vmid)) {
		return nil, fail("illegal name '%s' - should be 'vm-%d-*'", name, vmid)
	}
	s := c.s
	node := c.node()
	s.mu.Lock()
	defer s.mu.Unlock()
	var volname string
	switch sd.Type {
	case "lvmthin":
		if format == "" {
			format = "raw"
		}
		if format != "raw" {
			return nil, fail("unsupported format '%s'", format)
		}
		if name == "" {
			name = s.freeDiskNameLocked(node, sd.ID, vmid, "vm")
		}
		if s.volumeLocked(node, sd.ID+":"+name) != nil {
			return nil, fail("lvcreate 'pve/%s' error:   Logical Volume \"%s\" already exists in volume group \"pve\"", name, name)
		}
		volname = name
	default:
		if format == "" {
			format = "raw"
		}
		if name == "" {
			name = s.freeDiskNameLocked(node, sd.ID, vmid, "vm") + "." + format
		} else if !strings.HasSuffix(name, "."+format) {
			return nil, fail("illegal name '%s' - wrong extension for format ('%s != '%s')", name, strings.TrimPrefix(extOf(name), "."), format)
		}
		volname = fmt.Sprintf("%d/%s", vmid, name)
		if s.volumeLocked(node, sd.ID+":"+volname) != nil {
			return nil, fail("disk image '/var/lib/vz/images/%s' already exists", volname)
		}
	}
	volid := sd.ID + ":" + volname
	s.addVolumeLocked(&volume{Node: node, Storage: sd.ID, Volid: volid, Content: "images", Format: format, Size: kib * 1024, VMID: vmid})
	return volid, nil
}

func extOf(name string) string {
	if i := strings.LastIndex(name, "."); i >= 0 {
		return name[i:]
	}
	return ""
}

// realVolumeID resolves {volume} like PVE: a full volid, or a volname with {storage}.
func (c *call) realVolumeID() (string, error) {
	vol, storage := c.str("volume"), c.str("storage")
	if sid, _, ok := strings.Cut(vol, ":"); ok {
		if storage != "" && sid != storage {
			return "", paramErr1("volume", fmt.Sprintf("storage ID mismatch (%s != %s)\n", sid, storage))
		}
		return vol, nil
	}
	if storage == "" {
		return "", paramErr1("volume", "no storage specified - incomplete volume ID")
	}
	return storage + ":" + vol, nil
}

// handleContentInfo is GET /nodes/{node}/storage/{storage}/content/{volume}.
func handleContentInfo(c *call) (any, error) {
	if err := c.checkNode(); err != nil {
		return nil, err
	}
	volid, err := c.realVolumeID()
	if err != nil {
		return nil, err
	}
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.volumeLocked(c.node(), volid)
	if v == nil {
		return nil, fail("volume_size_info on '%s' failed - no format", volid)
	}
	m := map[string]any{"path": volumePath(v), "size": v.Size, "used": v.Size, "format": v.Format}
	if v.Notes != "" {
		m["notes"] = v.Notes
	}
	return m, nil
}

func volumePath(v *volume) string {
	_, name, _ := strings.Cut(v.Volid, ":")
	return storagePath(v.Storage, name)
}

// storagePath is where a volume name lives on the node, by storage and the
// name's content directory (iso/, vztmpl/, else images).
func storagePath(storage, name string) string {
	if storage == "local-lvm" {
		return "/dev/pve/" + name
	}
	switch {
	case strings.HasPrefix(name, "iso/"):
		return "/var/lib/vz/template/" + name
	case strings.HasPrefix(name, "vztmpl/"):
		return "/var/lib/vz/template/cache/" + strings.TrimPrefix(name, "vztmpl/")
	}
	return "/var/lib/vz/images/" + name
}

// handleContentDelete is DELETE .../content/{volume}: a task imgdel whose id
// is "<owner>@<storage>" (or the storage); with delay, waits and answers null.
func handleContentDelete(c *call) (any, error) {
	if err := c.checkNode(); err != nil {
		return nil, err
	}
	volid, err := c.realVolumeID()
	if err != nil {
		return nil, err
	}
	storage, _, _ := strings.Cut(volid, ":")
	if _, ok := findStorage(storage); !ok {
		return nil, fail("storage '%s' does not exist", storage)
	}
	s := c.s
	node := c.node()
	id := storage
	if owner := volumeOwner(volid); owner != 0 {
		id = fmt.Sprintf("%d@%s", owner, storage)
	}
	d := s.opts.Latency.VolumeDelete
	upid, err := s.startTask(taskSpec{
		node: node, typ: "imgdel", id: id, user: c.user, duration: d,
		work: func(tr *taskRun) error {
			if err := tr.sleep(d); err != nil {
				return err
			}
			s.mu.Lock()
			defer s.mu.Unlock()
			v := s.volumeLocked(node, volid)
			if v == nil {
				_, name, _ := strings.Cut(volid, ":")
				if storage == "local-lvm" {
					return fail("lvremove 'pve/%s' error:   Failed to find logical volume \"pve/%s\"", name, name)
				}
				// Directory storages only warn (Plugin::free_image); the
				// task still succeeds, with exitstatus "WARNINGS: 1".
				tr.warnLocked("disk image '%s' does not exist", storagePath(storage, name))
				return nil
			}
			_, name, _ := strings.Cut(volid, ":")
			if v.Content == "images" && isBaseVolume(volid) {
				for _, o := range s.st.Volumes {
					if o.Node == node && o.Parent == name {
						return fail("base volume '%s' is still in use by linked clones", name)
					}
				}
			}
			delete(s.st.Volumes, volKey(node, volid))
			s.freeVolumeDirLocked(node, volid)
			s.markDirtyLocked()
			tr.t.Log = append(tr.t.Log, fmt.Sprintf("Removed volume '%s'", volid))
			return nil
		},
	})
	if err != nil {
		return nil, err
	}
	if c.has("delay") {
		t, err := s.waitTask(c.r, upid, c.integer("delay", 0))
		if err != nil {
			return nil, err
		}
		if !t.Running {
			if t.ExitStatus == "OK" {
				return nil, nil
			}
			return nil, fail("%s", t.ExitStatus)
		}
	}
	return upid, nil
}

// handleUpload is POST /nodes/{node}/storage/{storage}/upload (multipart;
// iso and vztmpl only). It answers the UPID of an imgcopy task; the bytes are
// kept and readable through (*Server).Volume.
func handleUpload(c *call) (any, error) {
	if err := c.checkNode(); err != nil {
		return nil, err
	}
	sd, err := c.checkStorage()
	if err != nil {
		return nil, err
	}
	if c.upload == nil {
		return nil, fail("missing temporary file name")
	}
	content := c.str("content")
	filename := normalizeFilename(c.str("filename"))
	var volname string
	switch content {
	case "iso":
		if !isoExtRE.MatchString(filename) {
			return nil, paramErr1("filename", "wrong file extension")
		}
		volname = "iso/" + filename
	case "vztmpl":
		if !vztmplExtRE.MatchString(filename) {
			return nil, paramErr1("filename", "wrong file extension")
		}
		volname = "vztmpl/" + filename
	default:
		return nil, paramErr1("content", fmt.Sprintf("upload content type '%s' not allowed", content))
	}
	if !sd.allows(content) {
		return nil, fail("storage '%s' does not support '%s' content", sd.ID, content)
	}
	if sd.Type != "dir" {
		return nil, fail("can't upload to storage type '%s'", sd.Type)
	}
	s := c.s
	node := c.node()
	data := c.upload.data
	sum := c.str("checksum")
	algo := c.str("checksum-algorithm")
	d := s.opts.Latency.Upload
	return s.startTask(taskSpec{
		node: node, typ: "imgcopy", id: "", user: c.user, duration: d,
		work: func(tr *taskRun) error {
			tr.logf("starting file import from: /var/tmp/pveupload-%08x", len(data))
			if algo != "" {
				got, err := fileHash(algo, data)
				if err != nil {
					return err
				}
				if !strings.EqualFold(got, sum) {
					return fail("checksum mismatch: got '%s' != expect '%s'", got, sum)
				}
				tr.logf("calculating checksum...OK, checksum verified")
			}
			if err := tr.sleep(d); err != nil {
				return err
			}
			tr.logf("target node: %s", node)
			tr.logf("target file: %s", volumePath(&volume{Storage: sd.ID, Volid: sd.ID + ":" + volname, Content: content}))
			tr.logf("file size is: %d", len(data))
			s.mu.Lock()
			defer s.mu.Unlock()
			format := "iso"
			if content == "vztmpl" {
				format = strings.TrimPrefix(extOf(filename), ".")
				if format == "zst" {
					format = "tzst"
				}
			}
			s.addVolumeLocked(&volume{Node: node, Storage: sd.ID, Volid: sd.ID + ":" + volname, Content: content,
				Format: format, Size: int64(len(data)), Data: data})
			tr.t.Log = append(tr.t.Log, "finished file import successfully")
			return nil
		},
	})
}

func normalizeFilename(name string) string {
	name = strings.TrimRight(name, "\n")
	if i := strings.LastIndexAny(name, `/\`); i >= 0 {
		name = name[i+1:]
	}
	return badFileChar.ReplaceAllString(name, "_")
}

// readMultipart reads a multipart/form-data upload: the file part's bytes
// and the other parts as parameters.
func readMultipart(r *http.Request, params map[string][]string) (*uploadedFile, error) {
	mr, err := r.MultipartReader()
	if err != nil {
		return nil, fail("upload 'Content-Type '%s' not implemented", r.Header.Get("Content-Type"))
	}
	var up *uploadedFile
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fail("error reading upload - %v", err)
		}
		var buf bytes.Buffer
		if _, err := io.Copy(&buf, part); err != nil {
			return nil, fail("error reading upload - %v", err)
		}
		name := part.FormName()
		if part.FileName() != "" || name == "file" {
			up = &uploadedFile{name: part.FileName(), data: buf.Bytes()}
			continue
		}
		if name == "tmpfilename" {
			return nil, fail("'tmpfilename' query parameter is not allowed for file uploads")
		}
		params[name] = append(params[name], buf.String())
	}
	if up != nil {
		if _, ok := params["filename"]; !ok && up.name != "" {
			params["filename"] = []string{up.name}
		}
	}
	return up, nil
}
