package pvesim

import (
	"sort"
	"time"
)

// state is everything the simulator persists. It is guarded by Server.mu.
type state struct {
	VMs     map[int]*vmState   `json:"vms"`
	Volumes map[string]*volume `json:"volumes"` // key: volKey(node, volid)
	Tasks   []*task            `json:"tasks"`   // oldest first
	NextPID int                `json:"next_pid"`
	// MACSeq makes generated MAC addresses unique and deterministic.
	MACSeq uint64 `json:"mac_seq"`
}

// vmState is one QEMU guest.
type vmState struct {
	VMID int    `json:"vmid"`
	Node string `json:"node"`
	// Conf is the active configuration; values are kept as PVE writes them to
	// the config file. "lock" lives here too.
	Conf map[string]string `json:"conf"`
	// Pending holds changes not yet applied to a running VM; PendingDelete the
	// keys to delete on the next start.
	Pending       map[string]string `json:"pending,omitempty"`
	PendingDelete []string          `json:"pending_delete,omitempty"`
	Running       bool              `json:"running"`
	StartedAt     time.Time         `json:"started_at,omitzero"`
	PID           int               `json:"pid,omitempty"`
	Pool          string            `json:"pool,omitempty"`
}

func (v *vmState) isTemplate() bool { return v.Conf["template"] == "1" }

func (v *vmState) lock() string { return v.Conf["lock"] }

// volume is one storage volume.
type volume struct {
	Node    string `json:"node"`
	Storage string `json:"storage"`
	// Volid is "storage:volname", e.g. local-lvm:vm-100-disk-0 or local:iso/x.iso.
	Volid   string `json:"volid"`
	Content string `json:"content"` // images, rootdir, iso, vztmpl, backup, snippets
	Format  string `json:"format"`  // raw, qcow2, iso, tzst, ...
	Size    int64  `json:"size"`    // bytes
	VMID    int    `json:"vmid,omitempty"`
	// Parent is the base volume a linked clone was made from (volname only).
	Parent string `json:"parent,omitempty"`
	CTime  int64  `json:"ctime"`
	Notes  string `json:"notes,omitempty"`
	Data   []byte `json:"-"` // uploaded bytes
	// DataFile names the file under the state dir's volumes/ holding Data
	// (its SHA-256), set when the state is written.
	DataFile string `json:"data_file,omitempty"`
	// InlineData is how state files written before volumes/ existed held
	// Data; it is read on restore and never written.
	InlineData []byte `json:"data,omitempty"`
}

func volKey(node, volid string) string { return node + "\x00" + volid }

// task is one worker task, as PVE's task list knows them.
type task struct {
	UPID       string   `json:"upid"`
	Node       string   `json:"node"`
	PID        int      `json:"pid"`
	PStart     int64    `json:"pstart"`
	StartTime  int64    `json:"starttime"`
	Type       string   `json:"type"`
	ID         string   `json:"id"`
	User       string   `json:"user"` // as in the UPID: root@pam or root@pam!tok
	Running    bool     `json:"running"`
	ExitStatus string   `json:"exitstatus,omitempty"`
	EndTime    int64    `json:"endtime,omitempty"`
	Log        []string `json:"log,omitempty"`
	// LockedVMs are VMs whose config lock this task set (kept for the record:
	// a restart leaves the locks in place, as PVE does).
	LockedVMs []int `json:"locked_vms,omitempty"`
	// done is closed when the task stops (nil for restored tasks).
	done chan struct{}
	// enc caches the JSON of a stopped task, which never changes again, so
	// that writing the state does not encode the whole history each time.
	enc []byte
}

func newState() *state {
	return &state{VMs: map[int]*vmState{}, Volumes: map[string]*volume{}, NextPID: 0x1000}
}

// sortedVMIDs returns the VMIDs in ascending order.
func (st *state) sortedVMIDs() []int {
	ids := make([]int, 0, len(st.VMs))
	for id := range st.VMs {
		ids = append(ids, id)
	}
	sort.Ints(ids)
	return ids
}
