package reconcile

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/agentlab/terraform-provider-agentlab/internal/lease"
	"github.com/agentlab/terraform-provider-agentlab/internal/pve"
	"github.com/agentlab/terraform-provider-agentlab/internal/volume"
)

// fakePVE is an in-memory Proxmox for the loop's unit tests: it keeps VM
// configs, checks digests like PVE, counts calls and lets tests inject
// failures.
type fakePVE struct {
	mu     sync.Mutex
	vms    map[int]*fakeVM
	calls  map[string]int
	log    []string // mutating calls in order: "stop 101", "update 101 delete=scsi1", "destroy 101"
	digest int

	listErr     error
	staleTags   map[int]string // tags ListVMs shows instead of the config's
	configErr   map[int]error
	beforeWrite func(vmid int)               // runs before UpdateConfig checks the digest
	mismatch    string                       // UpdateConfig's message for a stale digest (default qemu-server's)
	onDestroy   func(vmid int) (bool, error) // runs instead of the destroy when set; true: destroy anyway

	isos      map[string]bool // volids on the ISO storage "local" of node "pve"
	cloning   int             // active qmclone tasks on "pve"
	tasksErr  error           // ActiveTasks' error when set
	deleteErr error           // DeleteVolume's error when set
}

type fakeVM struct {
	node, status, kind, lock string
	template                 bool
	cfg                      map[string]any
	digest                   string
}

func newFakePVE() *fakePVE {
	return &fakePVE{vms: map[int]*fakeVM{}, calls: map[string]int{}, configErr: map[int]error{}, isos: map[string]bool{}}
}

func (f *fakePVE) nextDigest() string {
	f.digest++
	return fmt.Sprintf("%040x", f.digest)
}

func (f *fakePVE) add(vmid int, name, description, tags string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.vms[vmid] = &fakeVM{node: "pve", status: "running", kind: "qemu",
		cfg:    map[string]any{"name": name, "description": description, "tags": pve.JoinTags([]string{tags}), "scsi0": fmt.Sprintf("local-lvm:vm-%d-disk-0,size=8G", vmid)},
		digest: f.nextDigest()}
}

func (f *fakePVE) set(vmid int, key string, value any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.vms[vmid].cfg[key] = value
	f.vms[vmid].digest = f.nextDigest()
}

func (f *fakePVE) exists(vmid int) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.vms[vmid]
	return ok
}

func (f *fakePVE) vm(vmid int) fakeVM {
	f.mu.Lock()
	defer f.mu.Unlock()
	v := *f.vms[vmid]
	v.cfg = maps.Clone(v.cfg)
	return v
}

func (f *fakePVE) count(op string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[op]
}

func (f *fakePVE) mutations() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.log)
}

func notFound(vmid int) error {
	return &pve.APIError{Method: "GET", Path: fmt.Sprintf("/nodes/pve/qemu/%d/config", vmid), Status: 500,
		Message: fmt.Sprintf("Configuration file 'nodes/pve/qemu-server/%d.conf' does not exist", vmid)}
}

func (f *fakePVE) ListVMs(ctx context.Context) ([]pve.VMEntry, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["list"]++
	if f.listErr != nil {
		return nil, f.listErr
	}
	out := make([]pve.VMEntry, 0, len(f.vms))
	for id, v := range f.vms {
		tags, _ := v.cfg["tags"].(string)
		if st, ok := f.staleTags[id]; ok {
			tags = st
		}
		name, _ := v.cfg["name"].(string)
		out = append(out, pve.VMEntry{VMID: id, Node: v.node, Type: v.kind, Name: name, Status: v.status,
			Tags: pve.SplitTags(tags), Template: v.template, Lock: v.lock})
	}
	slices.SortFunc(out, func(a, b pve.VMEntry) int { return a.VMID - b.VMID })
	return out, nil
}

func (f *fakePVE) Config(ctx context.Context, ref pve.VMRef) (pve.VMConfig, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["config"]++
	if err := f.configErr[ref.VMID]; err != nil {
		return pve.VMConfig{}, err
	}
	v, ok := f.vms[ref.VMID]
	if !ok {
		return pve.VMConfig{}, notFound(ref.VMID)
	}
	raw := maps.Clone(v.cfg)
	raw["digest"] = v.digest
	if v.template {
		raw["template"] = "1"
	}
	return pve.VMConfig{Raw: raw}, nil
}

func (f *fakePVE) UpdateConfig(ctx context.Context, ref pve.VMRef, upd pve.ConfigUpdate) error {
	if f.beforeWrite != nil {
		f.beforeWrite(ref.VMID)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["update"]++
	v, ok := f.vms[ref.VMID]
	if !ok {
		return notFound(ref.VMID)
	}
	if upd.Digest != "" && upd.Digest != v.digest {
		msg := f.mismatch
		if msg == "" {
			msg = "checksum mismatch (file change by other user?)"
		}
		return &pve.APIError{Method: "PUT", Path: fmt.Sprintf("/nodes/%s/qemu/%d/config", v.node, ref.VMID), Status: 500, Message: msg}
	}
	keys := slices.Sorted(maps.Keys(upd.Set))
	for _, k := range keys {
		val := upd.Set[k]
		if k == "tags" {
			val = pve.JoinTags([]string{val})
		}
		v.cfg[k] = val
	}
	for _, k := range upd.Delete {
		delete(v.cfg, k)
	}
	v.digest = f.nextDigest()
	entry := "update " + strconv.Itoa(ref.VMID)
	if len(upd.Delete) > 0 {
		entry += " delete=" + fmt.Sprint(upd.Delete)
	}
	f.log = append(f.log, entry)
	return nil
}

func (f *fakePVE) Stop(ctx context.Context, ref pve.VMRef) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["stop"]++
	v, ok := f.vms[ref.VMID]
	if !ok {
		return notFound(ref.VMID)
	}
	v.status = "stopped"
	f.log = append(f.log, "stop "+strconv.Itoa(ref.VMID))
	return nil
}

func (f *fakePVE) Destroy(ctx context.Context, ref pve.VMRef) error {
	f.mu.Lock()
	f.calls["destroy"]++
	hook := f.onDestroy
	f.mu.Unlock()
	if hook != nil {
		destroy, err := hook(ref.VMID)
		if destroy {
			f.mu.Lock()
			delete(f.vms, ref.VMID)
			f.log = append(f.log, "destroy "+strconv.Itoa(ref.VMID))
			f.mu.Unlock()
		}
		if err != nil {
			return err
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.vms[ref.VMID]; ok {
		delete(f.vms, ref.VMID)
		f.log = append(f.log, "destroy "+strconv.Itoa(ref.VMID))
	}
	return nil
}

func (f *fakePVE) Storages(ctx context.Context, node, content string) ([]pve.StorageInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["storages"]++
	return []pve.StorageInfo{{Storage: "local", Type: "dir", Content: []string{"iso", "vztmpl"}, Active: true}}, nil
}

func (f *fakePVE) StorageContent(ctx context.Context, node, storage, content string, vmid int) ([]pve.Volume, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["content"]++
	var out []pve.Volume
	for _, v := range slices.Sorted(maps.Keys(f.isos)) {
		out = append(out, pve.Volume{VolID: v, Content: "iso", Format: "iso"})
	}
	return out, nil
}

func (f *fakePVE) DeleteVolume(ctx context.Context, node, volid string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["delvol"]++
	if f.deleteErr != nil {
		return f.deleteErr
	}
	if f.isos[volid] {
		delete(f.isos, volid)
		f.log = append(f.log, "delvol "+volid)
	}
	return nil
}

func (f *fakePVE) ActiveTasks(ctx context.Context, node, typ string) ([]pve.TaskStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["tasks"]++
	if f.tasksErr != nil {
		return nil, f.tasksErr
	}
	out := make([]pve.TaskStatus, f.cloning)
	for i := range out {
		out[i] = pve.TaskStatus{Node: node, Type: "qmclone", ID: "9000", Status: "running"}
	}
	return out, nil
}

// addISO puts a seed ISO for vmid on storage "local" and attaches it to the
// VM as ide2 when the VM exists.
func (f *fakePVE) addISO(vmid int) string {
	volid := volume.SeedISOVolid("local", vmid)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.isos[volid] = true
	if v := f.vms[vmid]; v != nil {
		v.cfg["ide2"] = volid + ",media=cdrom"
	}
	return volid
}

func (f *fakePVE) hasISO(volid string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.isos[volid]
}

// addPlaceholder adds what an interrupted clone leaves: a config holding
// only lock: clone.
func (f *fakePVE) addPlaceholder(vmid int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.vms[vmid] = &fakeVM{node: "pve", status: "stopped", kind: "qemu", lock: "clone",
		cfg: map[string]any{"lock": "clone"}, digest: f.nextDigest()}
}

// calls returns the total number of calls made.
func (f *fakePVE) total() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.calls {
		n += c
	}
	return n
}

var errConnReset = errors.New("read tcp: connection reset by peer")

// sandbox describes a test VM's lease.
type sandbox struct {
	vmid      int
	created   time.Time
	ttl       time.Duration
	maxTTL    time.Duration
	onExpiry  lease.Action
	token     string
	workspace string
	extraTags []string
}

func tokenHash(token string) string {
	if token == "" {
		return ""
	}
	s := sha256.Sum256([]byte(token))
	return hex.EncodeToString(s[:])
}

// addSandbox creates the VM in f the way the provider would: metadata block
// and tags written together.
func addSandbox(t testing.TB, f *fakePVE, s sandbox) lease.Metadata {
	t.Helper()
	l, err := lease.New(s.created, s.ttl, s.maxTTL, s.onExpiry)
	if err != nil {
		t.Fatal(err)
	}
	m := lease.Metadata{Owner: "tester", Nonce: "n" + strconv.Itoa(s.vmid), Lease: l, Workspace: s.workspace,
		HeartbeatTokenSHA256: tokenHash(s.token)}
	desc, err := lease.Encode("Sandbox for tests.", m)
	if err != nil {
		t.Fatal(err)
	}
	tags, err := lease.SandboxTags(s.extraTags, l.ExpiresAt)
	if err != nil {
		t.Fatal(err)
	}
	f.add(s.vmid, "sbx-"+strconv.Itoa(s.vmid), desc, tags)
	return m
}
