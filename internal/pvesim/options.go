package pvesim

import (
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/agentlab/terraform-provider-agentlab/internal/clock"
)

// Options configure a simulated Proxmox VE cluster. The zero value is a usable
// one-node cluster ("pve") with the default template 9000:debian-12-cloud, the
// zero latency model, no faults and no persistence.
type Options struct {
	// Nodes are the cluster's node names; the first is the default node.
	// Empty means []string{"pve"}.
	Nodes []string
	// Tokens are the API tokens the simulator accepts, each
	// "USER@REALM!TOKENID=SECRET".
	Tokens []string
	// Users are the users that may log in through POST /access/ticket, each
	// "USER@REALM:PASSWORD".
	Users []string
	// Templates are created at start (when no state was restored). Empty means
	// one template 9000:debian-12-cloud on the first node.
	Templates []Template
	// Pools are the resource pools that exist (clone's pool parameter must name one).
	Pools []string
	// Latency is the timing model; the zero value is ZeroLatency().
	Latency Latency
	// FaultRate is the probability (0..1) that a request gets an injected
	// fault: every authenticated request to a served route except
	// POST /access/ticket draws once (task status polls included, as a real
	// proxy hop can fail them too). See faults.go for the kinds.
	FaultRate float64
	// Seed seeds the fault injection's pseudo-random generator.
	Seed int64
	// LostAnswers makes calls act and then lose their answer (lostanswer.go).
	LostAnswers LostAnswers
	// FaultDelay is how long a "slow" injected fault holds the answer back.
	// Zero means 2s.
	FaultDelay time.Duration
	// StateDir, when set, is where the simulator persists its state across restarts.
	StateDir string
	// Version is the PVE version GET /version reports ("9.1.1"); empty means
	// DefaultVersion.
	Version string
	// LegacyErrors makes error bodies the pre-2025 form {"data":null}, without "message".
	LegacyErrors bool
	// AuthFailureDelay delays answers to requests with missing or bad credentials
	// (PVE waits 3 s). Zero answers at once.
	AuthFailureDelay time.Duration
	// Clock tells the time for task start times, uptimes and the guest agent's boot
	// delay. Nil means the wall clock.
	Clock clock.Clock
	// Timers times every modelled wait: service times and the queue timeout
	// of the capacity model, task durations, lock and task-wait timeouts,
	// injected delays. Nil means real timers. Tests pass a *clock.Fake and
	// move it forward instead of sleeping.
	Timers clock.Timers
	// Logger receives request logs at debug level. Nil discards them.
	Logger *slog.Logger
	// GuestExec, when set, runs each started VM's NoCloud user-data as a
	// guest process in its own namespaces (guest.go). It needs root; New
	// fails when guests cannot run here.
	GuestExec *GuestExec
}

// Template is a VM template created when the simulator starts.
type Template struct {
	VMID int
	Name string
	// Node is the node the template lives on; empty means the first node.
	Node string
}

// ParseTemplate parses "VMID:NAME" or "VMID:NAME@NODE", the form of the
// --template flag.
func ParseTemplate(s string) (Template, error) {
	id, rest, ok := strings.Cut(s, ":")
	if !ok {
		return Template{}, fmt.Errorf("template %q: want VMID:NAME[@NODE]", s)
	}
	vmid, err := strconv.Atoi(id)
	if err != nil || vmid < 100 || vmid > 999999999 {
		return Template{}, fmt.Errorf("template %q: VMID must be an integer from 100 to 999999999", s)
	}
	name, node, _ := strings.Cut(rest, "@")
	if !dnsNameRE.MatchString(name) {
		return Template{}, fmt.Errorf("template %q: name %q is not a valid DNS name", s, name)
	}
	return Template{VMID: vmid, Name: name, Node: node}, nil
}

// DefaultTemplate is the template used when Options.Templates is empty.
func DefaultTemplate() Template { return Template{VMID: 9000, Name: "debian-12-cloud"} }

// Latency is the simulator's timing model: how long each kind of task runs
// and how long API calls take. Durations are exported so that benchmarks can
// compute critical paths from them.
type Latency struct {
	// API is added to every API call before it is answered, outside the
	// worker pools (a network round trip).
	API time.Duration
	// Workers bounds the API worker pools (pveproxy, pvedaemon); zero values
	// mean unbounded. See capacity.go.
	Workers Workers
	// Service is the per-request service time by kind of call, spent holding a
	// worker of the call's pool.
	Service Service
	// QueueTimeout is how long a call waits for a worker before it fails with
	// 596 "Connection timed out" (pveproxy's forwarding timeout). Zero means 30 s.
	QueueTimeout time.Duration
	// QueueLimit is how many calls may wait for one pool; one more has its
	// connection closed without an answer. Zero means 500 (PVE's max_conn).
	QueueLimit int
	// LinkedClone and FullClone are the durations of qmclone tasks.
	LinkedClone time.Duration
	FullClone   time.Duration
	// Create is the duration of a qmcreate task.
	Create time.Duration
	// Start, Stop, Shutdown and Reboot are the durations of the power tasks.
	Start    time.Duration
	Stop     time.Duration
	Shutdown time.Duration
	Reboot   time.Duration
	// Destroy is the duration of a qmdestroy task.
	Destroy time.Duration
	// Resize is the duration of a resize task.
	Resize time.Duration
	// ConfigTask is the duration of a qmconfig task (POST .../config).
	ConfigTask time.Duration
	// Upload is the duration of an imgcopy task (storage upload).
	Upload time.Duration
	// VolumeDelete is the duration of an imgdel task (storage content DELETE).
	VolumeDelete time.Duration
	// GuestAgentIP is how long after a start the guest agent reports an IP:
	// the guest's boot time (the median one when BootMax is set). The agent
	// answers from half that time on, without the IPv4 address.
	GuestAgentIP time.Duration
	// BootMin and BootMax, when BootMax > GuestAgentIP, spread boot times
	// between them around the median GuestAgentIP, drawn per start from
	// Options.Seed (a long tail, as cloud-init boots have). See boot.go.
	BootMin, BootMax time.Duration
	// ConfigLockTimeout is how long a config change waits for a VM's config lock
	// held by another operation (PVE: 10 s). Zero means 10 s.
	ConfigLockTimeout time.Duration
	// CloneLockTimeout is how long a clone waits for its source's lock
	// (PVE: 1 s). Zero means 1 s.
	CloneLockTimeout time.Duration
}

// ZeroLatency is the model for unit tests: every task finishes before the call
// that started it returns, the guest agent reports an IP as soon as the VM
// runs, and calls never queue.
func ZeroLatency() Latency { return Latency{} }

// RealisticLatency approximates a small PVE host with LVM-thin storage:
// 3 pveproxy and 3 pvedaemon workers, per-call service times, and guests
// that boot in 20 to 60 s (25 s median). docs/simulator.md gives the sources.
func RealisticLatency() Latency {
	return Latency{
		Workers: Workers{Proxy: 3, Daemon: 3},
		Service: Service{
			Read:              5 * time.Millisecond,
			ConfigRead:        10 * time.Millisecond,
			ConfigWrite:       30 * time.Millisecond,
			TaskStart:         50 * time.Millisecond,
			Resources:         10 * time.Millisecond,
			ResourcesPerGuest: 200 * time.Microsecond,
			AgentPing:         3 * time.Second,
			TaskArchiveEntry:  5 * time.Microsecond,
		},
		LinkedClone:  1500 * time.Millisecond,
		FullClone:    20 * time.Second,
		Create:       1 * time.Second,
		Start:        1 * time.Second,
		Stop:         500 * time.Millisecond,
		Shutdown:     2 * time.Second,
		Reboot:       3 * time.Second,
		Destroy:      1 * time.Second,
		Resize:       300 * time.Millisecond,
		ConfigTask:   100 * time.Millisecond,
		Upload:       200 * time.Millisecond,
		VolumeDelete: 200 * time.Millisecond,
		GuestAgentIP: 25 * time.Second,
		BootMin:      20 * time.Second,
		BootMax:      60 * time.Second,
	}
}

// ParseWorkers parses the --workers flag: "N" (both pools) or "PROXY,DAEMON".
func ParseWorkers(v string) (Workers, error) {
	p, d, both := strings.Cut(v, ",")
	np, err1 := strconv.Atoi(strings.TrimSpace(p))
	nd := np
	var err2 error
	if both {
		nd, err2 = strconv.Atoi(strings.TrimSpace(d))
	}
	if err1 != nil || err2 != nil || np < 1 || nd < 1 {
		return Workers{}, fmt.Errorf("workers %q: want N or PROXY,DAEMON, each at least 1", v)
	}
	return Workers{Proxy: np, Daemon: nd}, nil
}

// ParseLatency returns the model named "zero" or "realistic".
func ParseLatency(name string) (Latency, error) {
	switch name {
	case "zero", "":
		return ZeroLatency(), nil
	case "realistic":
		return RealisticLatency(), nil
	}
	return Latency{}, fmt.Errorf("latency model %q: want zero or realistic", name)
}

// Scaled returns l with every duration except the lock and queue timeouts
// multiplied by f. Worker counts and the queue limit stay.
func (l Latency) Scaled(f float64) Latency {
	s := func(d time.Duration) time.Duration { return time.Duration(float64(d) * f) }
	sv := l.Service
	return Latency{
		API: s(l.API), Workers: l.Workers, QueueTimeout: l.QueueTimeout, QueueLimit: l.QueueLimit,
		Service: Service{
			Read: s(sv.Read), ConfigRead: s(sv.ConfigRead), ConfigWrite: s(sv.ConfigWrite),
			TaskStart: s(sv.TaskStart), Resources: s(sv.Resources), ResourcesPerGuest: s(sv.ResourcesPerGuest),
			AgentPing: s(sv.AgentPing), TaskArchiveEntry: s(sv.TaskArchiveEntry),
		},
		BootMin: s(l.BootMin), BootMax: s(l.BootMax), LinkedClone: s(l.LinkedClone), FullClone: s(l.FullClone), Create: s(l.Create),
		Start: s(l.Start), Stop: s(l.Stop), Shutdown: s(l.Shutdown), Reboot: s(l.Reboot),
		Destroy: s(l.Destroy), Resize: s(l.Resize), ConfigTask: s(l.ConfigTask), Upload: s(l.Upload),
		VolumeDelete: s(l.VolumeDelete), GuestAgentIP: s(l.GuestAgentIP),
		ConfigLockTimeout: l.ConfigLockTimeout, CloneLockTimeout: l.CloneLockTimeout,
	}
}

func (l Latency) configLockTimeout() time.Duration {
	if l.ConfigLockTimeout > 0 {
		return l.ConfigLockTimeout
	}
	return 10 * time.Second
}

func (l Latency) cloneLockTimeout() time.Duration {
	if l.CloneLockTimeout > 0 {
		return l.CloneLockTimeout
	}
	return time.Second
}
