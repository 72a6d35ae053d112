package pvesim

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/agentlab/terraform-provider-agentlab/internal/clock"
)

// Server is a simulated Proxmox VE cluster serving PVE's HTTP API under
// /api2/json. It is safe for concurrent use. Close stops its tasks.
type Server struct {
	opts   Options
	clock  clock.Clock
	timers clock.Timers
	log    *slog.Logger
	nodes  []string
	tokens map[string]string // "user@realm!id" -> secret
	users  map[string]string // "user@realm" -> password
	pools  map[string]bool
	routes *router
	// configRoute is PUT .../config, whose parameters are the VM options.
	configRoute *Route
	authKey     []byte // signs tickets and CSRF tokens

	// guestBootDue, when set (by tests), is called with s.mu held once a
	// delayed guest boot's time has come, whether it booted or not.
	guestBootDue func(vmid int)
	ctx          context.Context // cancelled by Close; task goroutines watch it
	cancel       context.CancelFunc
	wg           sync.WaitGroup // task and persistence goroutines

	mu          sync.Mutex // guards the fields below; never held while waiting
	closed      bool
	st          *state
	flocks      map[int]*flock
	stats       statsCounters
	faultRNG    *mrand.Rand
	httpServers []*http.Server
	persist     *persister
	lostRNG     *mrand.Rand // draws of Options.LostAnswers

	// Group commit of the state (persist.go): changes bump dirtyGen, the
	// writer writes and sets writtenGen (and durableGen when it succeeded).
	dirtyGen, writtenGen, durableGen uint64
	writeErr                         error
	durable                          *sync.Cond // on mu; broadcast after each write
	kick                             chan struct{}

	// proxyPool and daemonPool are the API worker pools of the capacity
	// model; nil when unbounded.
	proxyPool, daemonPool *pool

	guests *guests // nil without Options.GuestExec (guest.go)
}

var versionRE = regexp.MustCompile(`^[0-9]{1,2}\.[0-9]{1,2}\.[0-9]{1,3}$`)

// New returns a simulator configured by opts. When opts.StateDir holds saved
// state, that state is restored (templates are then not re-created).
func New(opts Options) (*Server, error) {
	if len(opts.Nodes) == 0 {
		opts.Nodes = []string{"pve"}
	}
	for _, n := range opts.Nodes {
		if !nodeNameRE.MatchString(n) {
			return nil, fmt.Errorf("node name %q is not valid", n)
		}
	}
	if opts.Clock == nil {
		opts.Clock = clock.Real{}
	}
	if opts.Timers == nil {
		opts.Timers = clock.Real{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.FaultRate < 0 || opts.FaultRate > 1 {
		return nil, fmt.Errorf("fault rate %v: want a value from 0 to 1", opts.FaultRate)
	}
	s := &Server{
		opts:   opts,
		clock:  opts.Clock,
		timers: opts.Timers,
		log:    opts.Logger,
		nodes:  opts.Nodes,
		tokens: map[string]string{},
		users:  map[string]string{},
		pools:  map[string]bool{},
		flocks: map[int]*flock{},
		st:     newState(),
		// The seed fixes the sequence of injected faults.
		faultRNG: mrand.New(mrand.NewPCG(uint64(opts.Seed), 0x9e3779b97f4a7c15)),
		// A stream of its own, so that turning lost answers on does not
		// change the other faults a seed gives.
		lostRNG:    mrand.New(mrand.NewPCG(uint64(opts.Seed), 0x6a09e667f3bcc909)),
		proxyPool:  newPool(PoolProxy, opts.Latency.Workers.Proxy),
		daemonPool: newPool(PoolDaemon, opts.Latency.Workers.Daemon),
	}
	if opts.Version != "" && !versionRE.MatchString(opts.Version) {
		return nil, fmt.Errorf("version %q: want MAJOR.MINOR.PATCH, e.g. %s", opts.Version, DefaultVersion)
	}
	if err := opts.LostAnswers.validate(); err != nil {
		return nil, err
	}
	s.stats.init()
	s.durable = sync.NewCond(&s.mu)
	s.kick = make(chan struct{}, 1)
	for _, t := range opts.Tokens {
		id, secret, ok := strings.Cut(t, "=")
		if !ok || !tokenIDRE.MatchString(id) || secret == "" {
			return nil, fmt.Errorf("token %q: want USER@REALM!TOKENID=SECRET", t)
		}
		s.tokens[id] = secret
	}
	for _, u := range opts.Users {
		name, pw, ok := strings.Cut(u, ":")
		if !ok || !userIDRE.MatchString(name) || pw == "" {
			return nil, fmt.Errorf("user %q: want USER@REALM:PASSWORD", u)
		}
		s.users[name] = pw
	}
	for _, p := range opts.Pools {
		s.pools[p] = true
	}
	s.authKey = make([]byte, 32)
	if _, err := rand.Read(s.authKey); err != nil {
		return nil, fmt.Errorf("generate ticket key: %w", err)
	}
	s.routes = newRouter(routeTable())
	s.configRoute, _, _ = s.routes.match("PUT", "/nodes/pve/qemu/100/config")
	s.ctx, s.cancel = context.WithCancel(context.Background())

	restored := false
	if opts.StateDir != "" {
		p, st, err := openPersister(opts.StateDir)
		if err != nil {
			return nil, err
		}
		s.persist = p
		if st != nil {
			s.restore(st)
			restored = true
		}
	}
	if !restored {
		tmpls := opts.Templates
		if len(tmpls) == 0 {
			tmpls = []Template{DefaultTemplate()}
		}
		for _, t := range tmpls {
			if err := s.addTemplate(t); err != nil {
				return nil, err
			}
		}
	}
	if s.persist != nil {
		s.wg.Add(1)
		go s.writer()
		s.mu.Lock()
		s.markDirtyLocked()
		s.mu.Unlock()
	}
	if opts.GuestExec != nil {
		g, err := newGuests(opts.GuestExec, opts.StateDir, opts.Logger)
		if err != nil {
			_ = s.Close()
			return nil, err
		}
		s.guests = g
		s.bootRestoredGuests()
	}
	return s, nil
}

// Close stops running tasks (they stay "running" in the saved state and end
// with an error on the next start), writes the state when StateDir is set,
// and closes servers started by Serve. It is safe to call more than once.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	servers := s.httpServers
	s.mu.Unlock()
	for _, hs := range servers {
		_ = hs.Close()
	}
	s.cancel()
	s.wg.Wait()
	if s.guests != nil {
		s.guests.close()
	}
	if s.persist != nil {
		s.mu.Lock()
		data, blobs, err := s.snapshotLocked()
		s.mu.Unlock()
		if err == nil {
			err = s.persist.write(data, blobs)
		}
		s.mu.Lock()
		s.durable.Broadcast() // waiters see closed and answer
		s.mu.Unlock()
		return err
	}
	return nil
}

// Handler returns the http.Handler serving the API under /api2/json. Served
// by a plain http.Server, error answers carry Go's standard reason phrase on
// the status line; (*Server).Serve puts PVE's message there.
func (s *Server) Handler() http.Handler { return http.HandlerFunc(s.serveHTTP) }

// Nodes returns the cluster's node names.
func (s *Server) Nodes() []string { return append([]string(nil), s.nodes...) }

func (s *Server) hasNode(n string) bool {
	for _, x := range s.nodes {
		if x == n {
			return true
		}
	}
	return false
}

// sleep waits for d or until the server closes; it reports whether d elapsed.
func (s *Server) sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := s.timers.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-s.ctx.Done():
		return false
	}
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	c := &call{s: s, w: w, r: r}
	c.serve()
	s.log.Debug("request", "method", r.Method, "path", r.URL.Path, "status", c.status,
		"route", c.routeKey(), "duration", time.Since(start))
}

// drainBody discards what is left of a request body.
func drainBody(r *http.Request) {
	if r.Body != nil {
		_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, 1<<20))
	}
}
