// Package workspace keeps an agent's files between sandboxes: a Proxmox VE
// volume that outlives every sandbox it is attached to.
//
// PVE frees a volume when the VMID that owns it (the <vmid> in
// "vm-<vmid>-disk-N") is destroyed: qemu-server's destroy_vm frees every
// drive of the config whose owner is the destroyed VMID, and with
// destroy-unreferenced-disks=1 every other volume that VMID owns. A volume
// owned by a sandbox would die with it, and a volume owned by a VMID without a
// config would die with the next sandbox that /cluster/nextid hands that VMID
// (nextid only skips VMIDs that have a config). So each workspace gets a
// holder: an empty VM config (no disks, no network, never started) at its own
// VMID, tagged HolderTag and not "agentlab", so the reaper never touches it
// and no sandbox is ever created at its VMID. The workspace volume is
// allocated through the storage API, owned by the holder's VMID. Sandboxes
// attach it as Drive; destroying a sandbox skips it, since the sandbox does
// not own it (and PVE never registers another VMID's volume as unused).
// Deleting the workspace frees the volume and then destroys the holder.
//
// The holder's description also lists the VMs the workspace was attached
// to, so finding who holds it reads a few configs, not every VM's.
package workspace

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/agentlab/terraform-provider-agentlab/internal/lease"
	"github.com/agentlab/terraform-provider-agentlab/internal/pve"
	"github.com/agentlab/terraform-provider-agentlab/internal/volume"
)

// HolderTag marks a workspace's holder VM. It is deliberately not
// lease.TagOwned: the reaper must never reap or prune a holder.
const HolderTag = "agentlab-workspace"

// Drive is the drive key a workspace is attached as in a sandbox.
const Drive = "scsi1"

// markerPrefix and markerSuffix frame the holder's metadata line in its
// description.
const (
	markerPrefix = "<!-- agentlab-workspace "
	markerSuffix = " -->"
)

// Errors callers tell apart with errors.Is and errors.As.
var (
	// ErrNotWorkspace: the volume is not one of AgentLab's workspaces (its
	// owner VMID is not a holder).
	ErrNotWorkspace = errors.New("not an agentlab workspace")
)

// AttachedError reports that a workspace is attached to a VM.
type AttachedError struct {
	Volume string
	VM     pve.VMRef
	// Name is the VM's name, for messages.
	Name string
	// Pending: the VM has claimed the workspace on its holder's list but
	// its config does not show the volume yet: its attach is under way, or
	// was cut short (then detaching or destroying that VM releases it).
	Pending bool
}

func (e *AttachedError) Error() string {
	if e.Pending {
		return fmt.Sprintf("workspace %s is being attached to VM %s (%q)", e.Volume, e.VM, e.Name)
	}
	return fmt.Sprintf("workspace %s is attached to VM %s (%q)", e.Volume, e.VM, e.Name)
}

// Workspace is one workspace volume and its holder.
type Workspace struct {
	Name    string
	Node    string
	Storage string
	// Volume is the volid, e.g. "local-lvm:vm-104-disk-0".
	Volume string
	// Holder is the VMID of the holder VM, the volume's owner.
	Holder int
	// SizeBytes is the volume's size.
	SizeBytes int64
}

// holderMeta is the holder's description metadata.
type holderMeta struct {
	Name  string `json:"name"`
	Nonce string `json:"nonce"`
	// Attached lists the VMIDs the workspace may be attached to: Attach
	// records a VM here before it attaches the volume, and drops the VMs
	// that no longer refer to the volume. A VM's own config stays the proof
	// of an attachment; this list only says which configs to read. Nil on
	// holders made before the list existed: every VM's config is read.
	Attached *[]int `json:"attached,omitempty"`
	// Claims holds, by VMID, the Unix time at which an attach listed that
	// VM and had not yet attached the volume: while a claim is younger than
	// ClaimTTL, the VM holds the workspace even though its config does not
	// show the volume yet. Attach removes its claim once the volume is
	// attached, so a claim outlives its attach only when that attach was cut
	// short.
	Claims map[string]int64 `json:"claims,omitempty"`
}

// ClaimTTL bounds how long a claim whose attach never finished holds the
// workspace: after it, the claiming VM counts again only once its config
// shows the volume. It covers an attach cut short by a crash, and a VMID
// that PVE gave to a new VM after the claiming one was destroyed.
const ClaimTTL = 10 * time.Minute

// holderDescription is the holder's description holding m.
func holderDescription(m holderMeta) (string, error) {
	line, err := json.Marshal(m)
	if err != nil {
		return "", err
	}
	return "AgentLab workspace holder: never start, edit or destroy by hand; it owns the workspace volume.\n" +
		markerPrefix + string(line) + markerSuffix, nil
}

var reName = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,40}[a-z0-9])?$`)

// ValidName reports whether name is usable as a workspace name: lower-case
// letters, digits and hyphens, at most 42 characters (it becomes part of the
// holder's DNS name).
func ValidName(name string) bool { return reName.MatchString(name) }

// HolderName is the holder VM's name for workspace name.
func HolderName(name string) string { return "agentlab-ws-" + name }

// Create allocates a workspace of size bytes on storage: its holder first,
// then the volume owned by the holder. On failure nothing is left behind
// unless the returned error says so.
func Create(ctx context.Context, c *pve.Client, node, storage, name string, size int64) (Workspace, error) {
	if !ValidName(name) {
		return Workspace{}, fmt.Errorf("workspace name %q: use lower-case letters, digits and hyphens (at most 42)", name)
	}
	if size <= 0 || size%1024 != 0 {
		return Workspace{}, fmt.Errorf("workspace size %d bytes: want a positive multiple of 1 KiB", size)
	}
	stype, err := c.StorageType(ctx, node, storage)
	if err != nil {
		return Workspace{}, err
	}
	nonce := make([]byte, 8)
	if _, err := rand.Read(nonce); err != nil {
		return Workspace{}, fmt.Errorf("reading random bytes: %w", err)
	}
	meta := holderMeta{Name: name, Nonce: hex.EncodeToString(nonce), Attached: &[]int{}}
	desc, err := holderDescription(meta)
	if err != nil {
		return Workspace{}, err
	}
	ref, err := c.CreateVM(ctx, pve.CreateRequest{
		Node: node, Name: HolderName(name), Description: desc, Nonce: meta.Nonce, Tags: HolderTag,
		Set: map[string]string{"onboot": "0", "memory": "64", "cores": "1"},
	})
	if err != nil {
		if !ref.IsZero() {
			err = errors.Join(err, destroyHolder(context.WithoutCancel(ctx), c, ref))
		}
		return Workspace{}, fmt.Errorf("creating the workspace's holder vm: %w", err)
	}
	filename := fmt.Sprintf("vm-%d-disk-0", ref.VMID)
	if fileStorage(stype) {
		filename += ".raw"
	}
	volid, err := c.AllocVolume(ctx, node, storage, ref.VMID, filename, strconv.FormatInt(size/1024, 10))
	if err != nil {
		// Destroying the holder frees a volume it owns, allocated or not.
		if derr := destroyHolder(context.WithoutCancel(ctx), c, ref); derr != nil {
			return Workspace{}, fmt.Errorf("allocating the workspace volume: %w (and removing holder vm %s failed: %w)", err, ref, derr)
		}
		return Workspace{}, fmt.Errorf("allocating the workspace volume: %w", err)
	}
	return Workspace{Name: name, Node: node, Storage: storage, Volume: volid, Holder: ref.VMID, SizeBytes: size}, nil
}

// fileStorage reports whether a storage type keeps images as files, whose
// names carry the format's extension.
func fileStorage(stype string) bool {
	switch stype {
	case "dir", "nfs", "cifs", "glusterfs", "cephfs", "btrfs":
		return true
	}
	return false
}

// Read looks up the workspace whose volume is volid on node. A missing
// volume is an error wrapping pve.ErrNotFound; a volume whose owner is not a
// holder wraps ErrNotWorkspace.
func Read(ctx context.Context, c *pve.Client, node, volid string) (Workspace, error) {
	storage, _, ok := strings.Cut(volid, ":")
	owner, owned := volume.Owner(volid)
	if !ok || storage == "" || !owned {
		return Workspace{}, fmt.Errorf("volume %q: %w (want a volid such as local-lvm:vm-104-disk-0)", volid, ErrNotWorkspace)
	}
	vols, err := c.StorageContent(ctx, node, storage, "images", owner)
	if err != nil {
		return Workspace{}, err
	}
	ws := Workspace{Node: node, Storage: storage, Volume: volid, Holder: owner}
	found := false
	for _, v := range vols {
		if v.VolID == volid {
			ws.SizeBytes = v.Size
			found = true
		}
	}
	if !found {
		return Workspace{}, fmt.Errorf("workspace volume %s on %s: %w", volid, node, pve.ErrNotFound)
	}
	cfg, err := c.Config(ctx, pve.VMRef{Node: node, VMID: owner})
	if pve.IsNotFound(err) {
		return Workspace{}, fmt.Errorf("volume %s: its owner vm %d has no config: %w", volid, owner, ErrNotWorkspace)
	}
	if err != nil {
		return Workspace{}, err
	}
	m, ok := decodeMeta(cfg.Description())
	if !ok || !hasTag(cfg.Tags(), HolderTag) {
		return Workspace{}, fmt.Errorf("volume %s: its owner vm %d is not a workspace holder: %w", volid, owner, ErrNotWorkspace)
	}
	ws.Name = m.Name
	return ws, nil
}

func decodeMeta(desc string) (holderMeta, bool) {
	for _, line := range strings.Split(desc, "\n") {
		body, ok := strings.CutPrefix(strings.TrimSpace(line), markerPrefix)
		if !ok {
			continue
		}
		body, ok = strings.CutSuffix(body, markerSuffix)
		var m holderMeta
		if ok && json.Unmarshal([]byte(body), &m) == nil && m.Name != "" {
			return m, true
		}
	}
	return holderMeta{}, false
}

func hasTag(tags []string, tag string) bool {
	for _, t := range tags {
		if t == tag {
			return true
		}
	}
	return false
}

// Attachment is a VM drive that refers to a workspace volume.
type Attachment struct {
	VM   pve.VMRef
	Name string
	// Key is the drive key, e.g. "scsi1" (or "unused0").
	Key string
	// Config is the VM's config as read.
	Config pve.VMConfig
}

// Attachments lists the VMs on the workspace's node, other than its holder,
// whose config refers to the volume (as a drive or an unused entry). It
// reads the holder's config and the configs of the VMs its list names (one
// or two requests for a workspace in use, however many VMs the node has);
// for a holder without a list, made by an older AgentLab, it reads every
// VM's config.
func Attachments(ctx context.Context, c *pve.Client, ws Workspace) ([]Attachment, error) {
	v, err := attachments(ctx, c, ws)
	return v.atts, err
}

// holderView is what a lookup found: the attachments, the holder's config
// as read, and the listed VMIDs whose VM still exists.
type holderView struct {
	atts    []Attachment
	holder  pve.VMConfig
	present []int
	// names holds the names of the present VMs, for messages.
	names map[int]string
	// claims is the holder's claims as read.
	claims map[string]int64
}

// attachments is Attachments, also returning what Attach needs to update
// the holder's list.
func attachments(ctx context.Context, c *pve.Client, ws Workspace) (holderView, error) {
	hcfg, err := c.Config(ctx, pve.VMRef{Node: ws.Node, VMID: ws.Holder})
	if err != nil {
		return holderView{}, fmt.Errorf("reading workspace %s's holder: %w", ws.Volume, err)
	}
	v := holderView{holder: hcfg, names: map[int]string{}}
	m, ok := decodeMeta(hcfg.Description())
	v.claims = m.Claims
	if !ok || m.Attached == nil {
		v.atts, err = scanAttachments(ctx, c, ws)
		for _, a := range v.atts {
			v.present = append(v.present, a.VM.VMID)
			v.names[a.VM.VMID] = a.Name
		}
		return v, err
	}
	for _, vmid := range *m.Attached {
		if vmid == ws.Holder {
			continue
		}
		ref := pve.VMRef{Node: ws.Node, VMID: vmid}
		cfg, err := c.Config(ctx, ref)
		if pve.IsNotFound(err) {
			continue // destroyed: dropped from the list at the next attach
		}
		if err != nil {
			return holderView{}, err
		}
		v.present = append(v.present, vmid)
		v.names[vmid] = cfg.Name()
		if key := driveOf(cfg, ws.Volume); key != "" {
			v.atts = append(v.atts, Attachment{VM: ref, Name: cfg.Name(), Key: key, Config: cfg})
		}
	}
	return v, nil
}

// scanAttachments finds the attachments of ws by reading the config of
// every VM on its node.
func scanAttachments(ctx context.Context, c *pve.Client, ws Workspace) ([]Attachment, error) {
	vms, err := c.ListVMs(ctx)
	if err != nil {
		return nil, err
	}
	var out []Attachment
	for _, e := range vms {
		if e.Node != ws.Node || e.Type != "qemu" || e.VMID == ws.Holder || e.Template {
			continue
		}
		cfg, err := c.Config(ctx, e.Ref())
		if pve.IsNotFound(err) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if key := driveOf(cfg, ws.Volume); key != "" {
			out = append(out, Attachment{VM: e.Ref(), Name: cfg.Name(), Key: key, Config: cfg})
		}
	}
	return out, nil
}

// writeList sets the holder's list to vmids (sorted, without duplicates)
// and its claims to those of claims whose VM is in the list, with the
// digest of hcfg, the holder's config as read; a holder without a list gets
// one. Nothing is written when both are already that.
func writeList(ctx context.Context, c *pve.Client, ws Workspace, hcfg pve.VMConfig, vmids []int, claims map[string]int64) error {
	m, ok := decodeMeta(hcfg.Description())
	if !ok {
		return fmt.Errorf("vm %d is not a workspace holder: %w", ws.Holder, ErrNotWorkspace)
	}
	list := slices.Clone(vmids)
	slices.Sort(list)
	list = slices.Compact(list)
	kept := map[string]int64{}
	for _, vmid := range list {
		if t, ok := claims[strconv.Itoa(vmid)]; ok {
			kept[strconv.Itoa(vmid)] = t
		}
	}
	if len(kept) == 0 {
		kept = nil
	}
	if m.Attached != nil && slices.Equal(*m.Attached, list) && maps.Equal(m.Claims, kept) {
		return nil
	}
	m.Attached, m.Claims = &list, kept
	desc, err := holderDescription(m)
	if err != nil {
		return err
	}
	return c.UpdateConfig(ctx, pve.VMRef{Node: ws.Node, VMID: ws.Holder},
		pve.ConfigUpdate{Set: map[string]string{"description": desc}, Digest: hcfg.Digest()})
}

// forget drops vmid from the list of the holder of volid, after vmid let
// the volume go. It is a tidy-up: a name too many in the list costs one
// config read per lookup and never hides an attachment, so a failure is
// not an error, and the next attach drops VMs that no longer exist anyway.
func forget(ctx context.Context, c *pve.Client, node, volid string, vmid int) {
	updateHolder(ctx, c, node, volid, func(list []int, claims map[string]int64) ([]int, map[string]int64) {
		return slices.DeleteFunc(list, func(v int) bool { return v == vmid }), claims
	})
}

// settle removes vmid's claim from the holder of volid once vmid's config
// shows the volume: from then on the config is the proof. A failure leaves
// the claim to lapse after ClaimTTL.
func settle(ctx context.Context, c *pve.Client, node, volid string, vmid int) {
	updateHolder(ctx, c, node, volid, func(list []int, claims map[string]int64) ([]int, map[string]int64) {
		delete(claims, strconv.Itoa(vmid))
		return list, claims
	})
}

// updateHolder rewrites the list and claims of the holder of volid with
// edit, retrying a few times when another writer got in first; it gives up
// silently (see forget and settle).
func updateHolder(ctx context.Context, c *pve.Client, node, volid string, edit func([]int, map[string]int64) ([]int, map[string]int64)) {
	owner, ok := volume.Owner(volid)
	if !ok {
		return
	}
	ws := Workspace{Node: node, Volume: volid, Holder: owner}
	for try := 0; try < 3; try++ {
		hcfg, err := c.Config(ctx, pve.VMRef{Node: node, VMID: owner})
		if err != nil {
			return
		}
		m, ok := decodeMeta(hcfg.Description())
		if !ok || m.Attached == nil {
			return
		}
		list, claims := edit(slices.Clone(*m.Attached), maps.Clone(m.Claims))
		if err := writeList(ctx, c, ws, hcfg, list, claims); !pve.IsDigestMismatch(err) {
			return
		}
	}
}

// driveOf returns the key of cfg's drive or unused entry that refers to
// volid, "" for none.
func driveOf(cfg pve.VMConfig, volid string) string {
	for k := range cfg.Raw {
		if !pve.IsDriveKey(k) && !strings.HasPrefix(k, "unused") {
			continue
		}
		file, _, _ := strings.Cut(cfg.Value(k), ",")
		file = strings.TrimPrefix(file, "file=")
		if file == volid {
			return k
		}
	}
	return ""
}

// Attach attaches ws to the (stopped or not yet started) VM ref as Drive.
// When another VM holds it, it refuses with an *AttachedError naming that VM.
func Attach(ctx context.Context, c *pve.Client, ref pve.VMRef, ws Workspace) error {
	if ref.Node != ws.Node {
		return fmt.Errorf("workspace %s is on node %s, the sandbox on %s: create the workspace on the sandbox's node", ws.Volume, ws.Node, ref.Node)
	}
	// The holder's list is the claim: Attach lists ref there with the time
	// (a digest-checked write, so of two racing attaches exactly one gets in
	// first) before it attaches the volume, and removes the claim after, so
	// a VM holds the workspace from its claim on, even before its config
	// shows the volume. A crash in between leaves ref's claim, which its
	// next attach takes up, its detach releases, and which lapses after
	// ClaimTTL; never an attachment no one sees.
	for try := 0; ; try++ {
		v, err := attachments(ctx, c, ws)
		if err != nil {
			return fmt.Errorf("finding who holds workspace %s: %w", ws.Volume, err)
		}
		for _, a := range v.atts {
			if a.VM != ref {
				return &AttachedError{Volume: ws.Volume, VM: a.VM, Name: a.Name}
			}
		}
		now := c.Now()
		list := []int{ref.VMID}
		for _, vmid := range v.present {
			if vmid == ref.VMID {
				continue
			}
			t, ok := v.claims[strconv.Itoa(vmid)]
			if ok && now.Sub(time.Unix(t, 0)) < ClaimTTL {
				return &AttachedError{Volume: ws.Volume, VM: pve.VMRef{Node: ws.Node, VMID: vmid}, Name: v.names[vmid], Pending: true}
			}
			// Listed, existing, without the volume and without a live claim:
			// it let the volume go, or its VMID went to a new VM. Dropped.
		}
		claims := maps.Clone(v.claims)
		if claims == nil {
			claims = map[string]int64{}
		}
		claims[strconv.Itoa(ref.VMID)] = now.Unix()
		err = writeList(ctx, c, ws, v.holder, list, claims)
		if err == nil {
			break
		}
		if !pve.IsDigestMismatch(err) || try == 2 {
			return fmt.Errorf("recording the attachment of workspace %s on its holder: %w", ws.Volume, err)
		}
	}
	if err := attachDrive(ctx, c, ref, ws); err != nil {
		// Release the claim, so that the workspace is not held by a VM
		// that does not have it.
		forget(ctx, c, ref.Node, ws.Volume, ref.VMID)
		return err
	}
	settle(ctx, c, ref.Node, ws.Volume, ref.VMID)
	return nil
}

// attachDrive sets ref's workspace drive to ws's volume.
func attachDrive(ctx context.Context, c *pve.Client, ref pve.VMRef, ws Workspace) error {
	cfg, err := c.Config(ctx, ref)
	if err != nil {
		return err
	}
	if d, ok := cfg.Drive(Drive); ok && d.Volume == ws.Volume {
		return nil
	} else if ok {
		return fmt.Errorf("vm %s already has a %s drive (%s); a sandbox holds at most one workspace", ref, Drive, d.Volume)
	}
	return c.UpdateConfig(ctx, ref, pve.ConfigUpdate{Set: map[string]string{Drive: ws.Volume}, Digest: cfg.Digest()})
}

// Detach removes every reference VM ref's config has to volid. PVE applies
// a drive removal on a running VM only after a restart, so a running VM is
// stopped first and started again afterwards.
func Detach(ctx context.Context, c *pve.Client, ref pve.VMRef, volid string) error {
	cfg, err := c.Config(ctx, ref)
	if pve.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if driveOf(cfg, volid) == "" {
		// A claim whose attach never finished is released too.
		forget(ctx, c, ref.Node, volid, ref.VMID)
		return nil
	}
	st, err := c.Status(ctx, ref)
	if err != nil {
		return err
	}
	if st.Running() {
		if err := c.Stop(ctx, ref); err != nil {
			return fmt.Errorf("stopping %s to detach the workspace: %w", ref, err)
		}
	}
	// Removing a drive can leave it as an unusedN entry; remove those too.
	// The VM does not own the volume, so PVE never frees it for this.
	for i := 0; i < 3; i++ {
		cfg, err = c.Config(ctx, ref)
		if err != nil {
			return err
		}
		key := driveOf(cfg, volid)
		if key == "" {
			forget(ctx, c, ref.Node, volid, ref.VMID)
			break
		}
		if err := c.UpdateConfig(ctx, ref, pve.ConfigUpdate{Delete: []string{key}, Digest: cfg.Digest()}); err != nil {
			return fmt.Errorf("detaching workspace %s from %s: %w", volid, ref, err)
		}
	}
	if st.Running() {
		if err := c.Start(ctx, ref); err != nil {
			return fmt.Errorf("starting %s again after detaching the workspace: %w", ref, err)
		}
	}
	return nil
}

// Grow resizes ws to size bytes. Shrinking wraps pve.ErrShrink. The resize
// goes through the VM that has it attached, else through the holder, which
// then keeps the volume as an unused entry (harmless: it owns it anyway).
func Grow(ctx context.Context, c *pve.Client, ws Workspace, size int64) error {
	if size < ws.SizeBytes {
		return fmt.Errorf("workspace %s from %d to %d bytes: %w", ws.Volume, ws.SizeBytes, size, pve.ErrShrink)
	}
	if size == ws.SizeBytes {
		return nil
	}
	sz := strconv.FormatInt(size/1024, 10) + "K"
	atts, err := Attachments(ctx, c, ws)
	if err != nil {
		return err
	}
	for _, a := range atts {
		if pve.IsDriveKey(a.Key) {
			return c.Resize(ctx, a.VM, a.Key, sz)
		}
	}
	holder := pve.VMRef{Node: ws.Node, VMID: ws.Holder}
	cfg, err := c.Config(ctx, holder)
	if err != nil {
		return err
	}
	key := driveOf(cfg, ws.Volume)
	if !pve.IsDriveKey(key) {
		set := map[string]string{"scsi0": ws.Volume}
		upd := pve.ConfigUpdate{Set: set, Digest: cfg.Digest()}
		if key != "" {
			upd.Delete = []string{key} // the unused entry becomes scsi0 again
		}
		if err := c.UpdateConfig(ctx, holder, upd); err != nil {
			return fmt.Errorf("attaching workspace %s to its holder to resize it: %w", ws.Volume, err)
		}
		key = "scsi0"
	}
	if err := c.Resize(ctx, holder, key, sz); err != nil {
		return err
	}
	// Take the drive off the holder again so that starting the holder by
	// mistake never opens the workspace beside a sandbox.
	cfg, err = c.Config(ctx, holder)
	if err != nil {
		return err
	}
	return c.UpdateConfig(ctx, holder, pve.ConfigUpdate{Delete: []string{key}, Digest: cfg.Digest()})
}

// Delete frees the workspace's volume and destroys its holder. An attached
// workspace is refused with an *AttachedError naming the VM.
func Delete(ctx context.Context, c *pve.Client, ws Workspace) error {
	atts, err := Attachments(ctx, c, ws)
	if err != nil {
		return err
	}
	for _, a := range atts {
		if pve.IsDriveKey(a.Key) {
			return &AttachedError{Volume: ws.Volume, VM: a.VM, Name: a.Name}
		}
		// A stale unused entry in a sandbox: drop it so the volume's last
		// reference goes with it.
		if err := Detach(ctx, c, a.VM, ws.Volume); err != nil {
			return err
		}
	}
	if err := c.DeleteVolume(ctx, ws.Node, ws.Volume); err != nil {
		return err
	}
	return destroyHolder(ctx, c, pve.VMRef{Node: ws.Node, VMID: ws.Holder})
}

// destroyHolder destroys a holder VM, after checking it is one: a VMID
// reused by something else is left alone.
func destroyHolder(ctx context.Context, c *pve.Client, ref pve.VMRef) error {
	cfg, err := c.Config(ctx, ref)
	if pve.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if !hasTag(cfg.Tags(), HolderTag) || lease.Owned(cfg.Tags()) {
		return fmt.Errorf("vm %s is not a workspace holder; left alone", ref)
	}
	return c.Destroy(ctx, ref)
}
