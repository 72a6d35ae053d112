package pve

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Volume is one entry of a storage's content list.
type Volume struct {
	VolID   string // e.g. "local:iso/cidata-101.iso"
	Content string // "iso", "images", "rootdir", "vztmpl", "backup", ...
	Format  string // "raw", "qcow2", "iso", ...
	Size    int64  // bytes
	Used    int64  // bytes, when known
	VMID    int    // owner, 0 if none
	Parent  string
	Notes   string
	Created time.Time
}

// StorageContent lists a storage's volumes on node, optionally filtered by
// content type ("" for all) and owner VMID (0 for all).
func (c *Client) StorageContent(ctx context.Context, node, storage, content string, vmid int) ([]Volume, error) {
	q := url.Values{}
	if content != "" {
		q.Set("content", content)
	}
	if vmid != 0 {
		q.Set("vmid", strconv.Itoa(vmid))
	}
	var raw []struct {
		VolID   string  `json:"volid"`
		Content string  `json:"content"`
		Format  string  `json:"format"`
		Size    flexInt `json:"size"`
		Used    flexInt `json:"used"`
		VMID    flexInt `json:"vmid"`
		Parent  string  `json:"parent"`
		Notes   string  `json:"notes"`
		CTime   flexInt `json:"ctime"`
	}
	if err := c.get(ctx, pathf("/nodes/%s/storage/%s/content", node, storage), q, &raw); err != nil {
		return nil, fmt.Errorf("list content of storage %s on %s: %w", storage, node, err)
	}
	out := make([]Volume, 0, len(raw))
	for _, r := range raw {
		v := Volume{VolID: r.VolID, Content: r.Content, Format: r.Format, Size: int64(r.Size),
			Used: int64(r.Used), VMID: int(r.VMID), Parent: r.Parent, Notes: r.Notes}
		if r.CTime != 0 {
			v.Created = time.Unix(int64(r.CTime), 0)
		}
		out = append(out, v)
	}
	return out, nil
}

// AllocVolume allocates a new volume named filename (which must be
// "vm-<vmid>-..." on most storages) owned by vmid, of size ("10G", "512M", or
// KiB without a suffix), and returns its volid. A failure after which the
// volume may have been created (lost answer) is not retried.
func (c *Client) AllocVolume(ctx context.Context, node, storage string, vmid int, filename, size string) (string, error) {
	if err := validVMID(vmid); err != nil {
		return "", err
	}
	r := request{method: http.MethodPost, path: pathf("/nodes/%s/storage/%s/content", node, storage),
		form: url.Values{"vmid": {strconv.Itoa(vmid)}, "filename": {filename}, "size": {size}}}
	var volid string
	err := c.withRetry(ctx, "allocate volume "+filename, func(ctx context.Context) error {
		err := c.send(ctx, r, &volid)
		if err != nil && maybeProcessed(err) {
			return &noRetryError{fmt.Errorf("outcome unknown, the volume may exist: %w", err)}
		}
		return err
	})
	if err != nil {
		return "", fmt.Errorf("allocate volume %s on %s/%s: %w", filename, node, storage, err)
	}
	return volid, nil
}

// DeleteVolume deletes a volume by volid ("storage:name") on node and waits
// for the task. A volume that does not exist (before or after a failed
// attempt, as the storage's content list shows) is success.
func (c *Client) DeleteVolume(ctx context.Context, node, volid string) error {
	storage, _, ok := strings.Cut(volid, ":")
	if !ok || storage == "" {
		return fmt.Errorf("delete volume %q: want a volid storage:name", volid)
	}
	r := request{method: http.MethodDelete, path: pathf("/nodes/%s/storage/%s/content/%s", node, storage, volid)}
	err := c.withRetry(ctx, "delete volume "+volid, func(ctx context.Context) error {
		_, err := c.runTask(ctx, r)
		return err
	})
	if err == nil || IsNotFound(err) {
		return nil
	}
	// PVE's texts for a missing volume differ by storage type ("disk image
	// ... does not exist" is only a warning on directories, LVM fails with
	// "Failed to find logical volume"): ask the storage instead.
	if ctx.Err() == nil {
		if exists, lerr := c.volumeExists(ctx, node, storage, volid); lerr == nil && !exists {
			return nil
		}
	}
	return fmt.Errorf("delete volume %s on %s: %w", volid, node, err)
}

func (c *Client) volumeExists(ctx context.Context, node, storage, volid string) (bool, error) {
	vols, err := c.StorageContent(ctx, node, storage, "", 0)
	if err != nil {
		return false, err
	}
	for _, v := range vols {
		if v.VolID == volid {
			return true, nil
		}
	}
	return false, nil
}

var reISOName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*\.(iso|img)$`)

// UploadISO streams size bytes of content to storage on node as an ISO image
// named filename (letters, digits, ".", "_", "-", ending in .iso or .img),
// waits for PVE's import task and returns the volid ("storage:iso/filename").
// An existing file of that name is replaced. The body is sent with a
// Content-Length (PVE refuses chunked uploads); when content is an
// io.Seeker, transient failures are retried from its starting offset.
func (c *Client) UploadISO(ctx context.Context, node, storage, filename string, content io.Reader, size int64) (string, error) {
	if !reISOName.MatchString(filename) {
		return "", fmt.Errorf("upload iso: invalid file name %q: use letters, digits, '.', '_' and '-', ending in .iso or .img", filename)
	}
	if size < 0 {
		return "", fmt.Errorf("upload iso %s: negative size %d", filename, size)
	}
	var head bytes.Buffer
	mw := multipart.NewWriter(&head)
	if err := mw.WriteField("content", "iso"); err != nil {
		return "", err
	}
	if _, err := mw.CreateFormFile("filename", filename); err != nil {
		return "", err
	}
	prefix := append([]byte(nil), head.Bytes()...)
	head.Reset()
	if err := mw.Close(); err != nil {
		return "", err
	}
	suffix := append([]byte(nil), head.Bytes()...)

	seeker, canSeek := content.(io.Seeker)
	var start int64
	if canSeek {
		var err error
		if start, err = seeker.Seek(0, io.SeekCurrent); err != nil {
			canSeek = false
		}
	}
	path := pathf("/nodes/%s/storage/%s/upload", node, storage)
	attempts := 0
	err := c.withRetry(ctx, "upload "+filename, func(ctx context.Context) error {
		attempts++
		if attempts > 1 {
			if _, err := seeker.Seek(start, io.SeekStart); err != nil {
				return fmt.Errorf("rewinding content: %w", err)
			}
		}
		body := io.MultiReader(bytes.NewReader(prefix), io.LimitReader(content, size), bytes.NewReader(suffix))
		_, err := c.runTask(ctx, request{
			method:        http.MethodPost,
			path:          path,
			body:          body,
			contentType:   mw.FormDataContentType(),
			contentLength: int64(len(prefix)) + size + int64(len(suffix)),
			noTimeout:     true,
		})
		if err != nil && !canSeek {
			return &noRetryError{err} // the content is consumed
		}
		return err
	})
	if err != nil {
		return "", fmt.Errorf("upload iso %s to %s/%s: %w", filename, node, storage, err)
	}
	return storage + ":iso/" + filename, nil
}

// StorageType returns the type of storage on node ("dir", "lvmthin", "zfspool",
// ...), which decides how its volumes are named. A storage node does not have
// is an error wrapping ErrNotFound.
func (c *Client) StorageType(ctx context.Context, node, storage string) (string, error) {
	var raw []struct {
		Storage string `json:"storage"`
		Type    string `json:"type"`
	}
	if err := c.get(ctx, pathf("/nodes/%s/storage", node), url.Values{"storage": {storage}}, &raw); err != nil {
		return "", fmt.Errorf("read storage %s on %s: %w", storage, node, err)
	}
	for _, r := range raw {
		if r.Storage == storage {
			return r.Type, nil
		}
	}
	return "", fmt.Errorf("storage %s on %s: %w", storage, node, ErrNotFound)
}
