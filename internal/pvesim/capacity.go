package pvesim

import (
	"context"
	"net/http"
	"strings"
	"time"
)

// The capacity model (Latency.Workers and Latency.Service).
//
// A PVE node serves its API with pveproxy, a pool of max_workers = 3
// processes (PVE::Service::pveproxy); calls whose schema entry is
// "protected" are forwarded by pveproxy to pvedaemon, 3 more processes
// (PVE::Service::pvedaemon), because they need root. A worker runs one API
// handler at a time (the handler is synchronous Perl code inside an
// AnyEvent loop), so concurrent calls queue. pveproxy forwards asynchronously
// (PVE::APIServer::AnyEvent::proxy_request), so a forwarded call occupies a
// pvedaemon worker only; the forwarding gives up after 30 s (its
// http_request timeout) with AnyEvent::HTTP's "596 Connection timed out".
// When a server holds max_conn (500) open connections it stops accepting;
// further clients wait in the kernel's listen queue and time out or are
// refused. MAX_WORKERS in /etc/default/pveproxy changes the worker counts.
//
// The simulator reproduces this with one pool of Workers.Proxy and one of
// Workers.Daemon slots. A call waits for a slot of its pool, holds it for its
// service time (Service, by kind of call) and while its handler runs (a
// config change waiting for a VM's config lock keeps its worker, as on PVE),
// then answers. Waiting shows as latency. A call that waited QueueTimeout
// for a worker gets 596 "Connection timed out" (pveproxy's answer for a
// pvedaemon call; for a pveproxy call it stands in for the timeout a client
// would hit); a call arriving
// while QueueLimit calls already wait for its pool gets its connection
// closed without an answer (the client sees a reset, as when the listen
// queue overflows).

// Workers sizes the API worker pools. Zero means unbounded (no queueing).
type Workers struct {
	// Proxy is the number of pveproxy workers (PVE: 3).
	Proxy int
	// Daemon is the number of pvedaemon workers (PVE: 3).
	Daemon int
}

// Service holds per-request service times by kind of call.
type Service struct {
	// Read is a plain read: /version, /nodes, task lists, storage lists.
	Read time.Duration
	// ConfigRead reads a VM's config or status (parses /etc/pve/qemu-server/N.conf).
	ConfigRead time.Duration
	// ConfigWrite is a synchronous change written through pmxcfs (PUT config, ticket).
	ConfigWrite time.Duration
	// TaskStart is a call that forks a worker task and returns its UPID.
	TaskStart time.Duration
	// Resources is the fixed part of GET /cluster/resources; ResourcesPerGuest
	// is added for every guest in the cluster.
	Resources         time.Duration
	ResourcesPerGuest time.Duration
	// AgentPing is how long a guest agent call waits for an agent that does
	// not answer yet (qemu-server's guest-ping timeout: 3 s) before failing
	// "QEMU guest agent is not running".
	AgentPing time.Duration
	// TaskArchiveEntry is added to a task list that reads the archive
	// (source archive or all) for every archived task it reads: PVE parses
	// the whole archive on each such call.
	TaskArchiveEntry time.Duration
}

// Kinds of calls, the keys of Stats.ByKind.
const (
	KindRead        = "read"
	KindConfigRead  = "config-read"
	KindConfigWrite = "config-write"
	KindTaskStart   = "task-start"
	KindResources   = "resources"
)

// Names of the worker pools, the keys of Stats.Pools.
const (
	PoolProxy  = "pveproxy"
	PoolDaemon = "pvedaemon"
)

// defaultQueueTimeout is pveproxy's timeout for a call forwarded to pvedaemon.
const defaultQueueTimeout = 30 * time.Second

// defaultQueueLimit mirrors max_conn (500 in PVE::Service::pveproxy and
// pvedaemon), past which PVE stops accepting connections.
const defaultQueueLimit = 500

// callKind classifies a call for its service time.
func callKind(r *Route) string {
	if r == nil {
		return KindRead
	}
	switch {
	case r.Method == http.MethodGet && r.Path == "/cluster/resources":
		return KindResources
	case r.Method != http.MethodGet && r.Returns == "string" && r.Path != "/access/ticket":
		return KindTaskStart
	case r.Method != http.MethodGet:
		return KindConfigWrite
	case strings.HasPrefix(r.Path, "/nodes/{node}/qemu/{vmid}/"), r.Path == "/nodes/{node}/qemu",
		strings.HasPrefix(r.Path, "/pools"):
		return KindConfigRead
	}
	return KindRead
}

// pool is one bounded set of API workers.
type pool struct {
	name  string
	slots chan struct{}
	// waiting and peak are guarded by Server.mu.
	waiting, peak int
}

func newPool(name string, n int) *pool {
	if n <= 0 {
		return nil
	}
	return &pool{name: name, slots: make(chan struct{}, n)}
}

// errNoAnswer makes the call close its connection without an answer.
var errNoAnswer = &apiError{status: 503, message: "listen queue full"}

// acquireWorker waits for a worker of the call's pool. It returns the
// function that releases it, or an error the call answers with (errNoAnswer:
// no answer at all).
func (s *Server) acquireWorker(ctx context.Context, r *Route) (func(), *apiError) {
	p := s.proxyPool
	if r != nil && r.Protected {
		p = s.daemonPool
	}
	if p == nil {
		return func() {}, nil
	}
	select {
	case p.slots <- struct{}{}:
		return func() { <-p.slots }, nil
	default:
	}
	s.mu.Lock()
	if p.waiting >= s.queueLimit() {
		s.stats.faults[FaultQueueFull]++
		s.mu.Unlock()
		return nil, errNoAnswer
	}
	p.waiting++
	if p.waiting > p.peak {
		p.peak = p.waiting
	}
	if total := s.waitingLocked(); total > s.stats.peakQueue {
		s.stats.peakQueue = total
	}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		p.waiting--
		s.mu.Unlock()
	}()
	timeout := s.opts.Latency.QueueTimeout
	if timeout <= 0 {
		timeout = defaultQueueTimeout
	}
	t := s.timers.NewTimer(timeout)
	defer t.Stop()
	select {
	case p.slots <- struct{}{}:
		return func() { <-p.slots }, nil
	case <-t.C:
		s.mu.Lock()
		s.stats.faults[FaultQueueTimeout]++
		s.mu.Unlock()
		return nil, &apiError{status: 596, message: "Connection timed out", nonJSON: true}
	case <-ctx.Done():
		return nil, errNoAnswer
	case <-s.ctx.Done():
		return nil, errorf(503, "server shutting down")
	}
}

func (s *Server) queueLimit() int {
	if s.opts.Latency.QueueLimit > 0 {
		return s.opts.Latency.QueueLimit
	}
	return defaultQueueLimit
}

// waitingLocked is the number of calls waiting for a worker (s.mu held).
func (s *Server) waitingLocked() int {
	n := 0
	for _, p := range []*pool{s.proxyPool, s.daemonPool} {
		if p != nil {
			n += p.waiting
		}
	}
	return n
}

// serviceTime is how long the call holds its worker before its handler runs.
func (s *Server) serviceTime(kind string) time.Duration {
	sv := s.opts.Latency.Service
	switch kind {
	case KindConfigRead:
		return sv.ConfigRead
	case KindConfigWrite:
		return sv.ConfigWrite
	case KindTaskStart:
		return sv.TaskStart
	case KindResources:
		if sv.Resources == 0 && sv.ResourcesPerGuest == 0 {
			return 0
		}
		s.mu.Lock()
		n := len(s.st.VMs)
		s.mu.Unlock()
		return sv.Resources + time.Duration(n)*sv.ResourcesPerGuest
	}
	return sv.Read
}

// PeakQueueDepth is the largest number of API calls that waited for a
// pveproxy or pvedaemon worker at the same time since the server started
// (or since ResetPeakQueueDepth). It is zero without a capacity model.
func (s *Server) PeakQueueDepth() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats.peakQueue
}

// ResetPeakQueueDepth starts a new measurement of PeakQueueDepth, e.g. after
// a benchmark's setup.
func (s *Server) ResetPeakQueueDepth() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.peakQueue = s.waitingLocked()
	for _, p := range []*pool{s.proxyPool, s.daemonPool} {
		if p != nil {
			p.peak = p.waiting
		}
	}
}
