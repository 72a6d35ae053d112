package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/agentlab/terraform-provider-agentlab/internal/clock"
	"github.com/agentlab/terraform-provider-agentlab/internal/pve"
	"github.com/agentlab/terraform-provider-agentlab/reaper/api"
	"github.com/agentlab/terraform-provider-agentlab/reaper/config"
	"github.com/agentlab/terraform-provider-agentlab/reaper/egress"
	"github.com/agentlab/terraform-provider-agentlab/reaper/guest"
	"github.com/agentlab/terraform-provider-agentlab/reaper/jobs"
	"github.com/agentlab/terraform-provider-agentlab/reaper/metrics"
	"github.com/agentlab/terraform-provider-agentlab/reaper/reconcile"
	"github.com/agentlab/terraform-provider-agentlab/reaper/sqlite"
)

// serve runs the daemon until SIGINT or SIGTERM; a second signal forces the
// exit at once.
func serve(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	m := NewMain(stderr)
	if err := m.ParseFlags(ctx, args); err != nil {
		return err
	}
	if m.CheckOnly {
		fmt.Fprintf(stdout, "%s: configuration is valid\n", m.ConfigPath)
		return nil
	}
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(signals)

	if err := m.Run(ctx); err != nil {
		m.Close()
		return err
	}
	sig := <-signals
	m.Logger.Info("shutting down; send the signal again to exit at once", "signal", sig.String())
	go func() {
		sig := <-signals
		m.Logger.Warn("second signal: exiting without waiting", "signal", sig.String())
		os.Exit(1)
	}()
	if err := m.Close(); err != nil {
		return err
	}
	m.Logger.Info("stopped")
	return nil
}

// Main is the daemon: ParseFlags reads the configuration, Run starts every
// component and returns, Close stops them in order.
type Main struct {
	// ConfigPath is the configuration file.
	ConfigPath string
	// Config is the configuration, once parsed.
	Config config.Config
	// CheckOnly makes serve validate the configuration and exit.
	CheckOnly bool
	// Logger receives the daemon's logs.
	Logger *slog.Logger
	// Clock tells the time; tests replace it before Run.
	Clock clock.Clock

	logOut io.Writer

	// Set by Run.
	db        *sqlite.DB
	dbLock    *sqlite.Lock
	loop      *reconcile.Loop
	jobs      *jobs.Service
	egress    *egress.Filter
	metrics   *metrics.Metrics
	servers   []*http.Server
	listeners map[string]net.Listener
	cancel    context.CancelFunc
	loopDone  chan struct{}
	jobsDone  chan struct{}
	closeOnce sync.Once
	closeErr  error
}

// NewMain returns a Main that logs to logOut.
func NewMain(logOut io.Writer) *Main {
	return &Main{
		ConfigPath: config.DefaultPath,
		Logger:     slog.New(slog.NewTextHandler(logOut, nil)),
		Clock:      clock.Real{},
		logOut:     logOut,
		listeners:  map[string]net.Listener{},
	}
}

// ParseFlags parses serve's flags and loads and checks the configuration,
// secret files included.
func (m *Main) ParseFlags(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("agentlab-reaper serve", flag.ContinueOnError)
	fs.SetOutput(m.logOut)
	fs.StringVar(&m.ConfigPath, "config", config.DefaultPath, "configuration `file`")
	fs.BoolVar(&m.CheckOnly, "check", false, "validate the configuration and exit")
	level := fs.String("log-level", "info", "log `level`: debug, info, warn or error")
	format := fs.String("log-format", "text", "log `format`: text or json")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: agentlab-reaper serve --config FILE [--check] [--log-level L] [--log-format F]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(m.logOut, "serve takes no arguments, got %q\n", fs.Args())
		return errUsage
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*level)); err != nil {
		return fmt.Errorf("--log-level %q: want debug, info, warn or error", *level)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch *format {
	case "text":
		m.Logger = slog.New(slog.NewTextHandler(m.logOut, opts))
	case "json":
		m.Logger = slog.New(slog.NewJSONHandler(m.logOut, opts))
	default:
		return fmt.Errorf("--log-format %q: want text or json", *format)
	}

	cfg, err := config.Load(m.ConfigPath)
	if err != nil {
		return err
	}
	if err := cfg.CheckFiles(); err != nil {
		return fmt.Errorf("%s: %w", m.ConfigPath, err)
	}
	m.Config = cfg
	return nil
}

// Run opens the store, connects to Proxmox VE, starts the listeners and the
// reconcile loop, and returns. Call Close to stop.
func (m *Main) Run(ctx context.Context) error {
	cfg := m.Config
	log := m.Logger

	m.metrics = metrics.New(version)

	// One reaper per database: a second would destroy the same VMs and
	// interleave its decisions in the audit log.
	lock, err := sqlite.AcquireLock(cfg.Database)
	if err != nil {
		return err
	}
	m.dbLock = lock

	m.db = sqlite.New(cfg.Database)
	m.db.Now = m.Clock.Now
	if err := m.db.Open(ctx); err != nil {
		return err
	}

	client, err := m.proxmoxClient(ctx)
	if err != nil {
		return err
	}
	pingCtx, cancelPing := context.WithTimeout(ctx, 10*time.Second)
	if v, err := client.Ping(pingCtx); err != nil {
		log.Error("cannot reach Proxmox VE yet; the loop retries at every interval and touches nothing meanwhile",
			"endpoint", client.Endpoint(), "err", err)
	} else {
		log.Info("connected to Proxmox VE", "endpoint", client.Endpoint(), "version", v.Version, "token", client.TokenID())
	}
	cancelPing()

	opts := reconcile.Options{
		Interval:   time.Duration(cfg.Interval),
		Grace:      time.Duration(cfg.Grace),
		WarnBefore: time.Duration(cfg.WarnBefore),
		DryRun:     cfg.DryRun,
		Clock:      m.Clock,
		Logger:     log.With("component", "reconcile"),
		Metrics:    m.metrics,

		EventRetention:   time.Duration(cfg.Events.Retention),
		MaxLease:         time.Duration(cfg.Policy.MaxLease),
		UserKeep:         cfg.Policy.UserKeep,
		Prune:            cfg.Prune,
		OrphanGrace:      time.Duration(cfg.Policy.OrphanGrace),
		PlaceholderFirst: cfg.Policy.VMIDRange.First,
		PlaceholderLast:  cfg.Policy.VMIDRange.Last,
	}
	if cfg.Egress.Enabled {
		if m.egress, err = newEgressFilter(ctx, cfg, log.With("component", "egress"), m.metrics); err != nil {
			return err
		}
		// Until the first tick knows the sandboxes, every VM on the bridge
		// gets the baseline: no private ranges, no host.
		if _, err := m.egress.Sync(ctx, nil); err != nil {
			return err
		}
		opts.Egress, opts.EgressBridge = m.egress, cfg.Egress.Bridge
	}
	m.loop = reconcile.New(client, m.db, opts)

	retention := time.Duration(cfg.Jobs.Retention)
	if retention == 0 {
		retention = -1 // keep forever
	}
	jobMetrics := metrics.NewJobs(m.metrics)
	m.jobs, err = jobs.New(m.db, client, jobs.Options{
		Dir:            cfg.Artifacts.Dir,
		MaxBytes:       int64(cfg.Artifacts.MaxBytes),
		MaxLogBytes:    int64(cfg.Jobs.MaxLogBytes),
		HeartbeatGrace: time.Duration(cfg.Jobs.HeartbeatGrace),
		BootTimeout:    time.Duration(cfg.Jobs.BootTimeout),
		Retention:      retention,
		Interval:       min(time.Duration(cfg.Interval), 10*time.Second),
		DryRun:         cfg.DryRun,
		Clock:          m.Clock,
		Logger:         log.With("component", "jobs"),
		Metrics:        jobMetrics,
	})
	if err != nil {
		return err
	}
	jobMetrics.WatchWorkspaces(m.metrics, func() int {
		ls, err := m.db.Leases(context.Background(), false)
		if err != nil {
			return 0
		}
		n := 0
		for _, l := range ls {
			if l.Workspace != "" {
				n++
			}
		}
		return n
	})

	control := &api.Server{Store: m.db, Renewer: m.loop, Keeper: m.loop, Orphans: m.loop, Jobs: m.jobs,
		Addresses: vmAddresses{pve: client, db: m.db},
		Logger:    log.With("component", "control"),
		Status: func() api.Status {
			return api.Status{Version: version, DryRun: cfg.DryRun, Interval: cfg.Interval.String(), LastTick: m.loop.LastTick()}
		}}
	if m.egress != nil {
		control.Egress = m.egress
	}
	ln, err := api.ListenUnix(cfg.Control.Socket)
	if err != nil {
		return err
	}
	m.serve("control socket", ln, control.Handler())
	if cfg.Control.Listen != "" {
		token, err := cfg.ControlToken()
		if err != nil {
			return err
		}
		ln, err := m.controlListener(cfg)
		if err != nil {
			return err
		}
		m.serve("control", ln, control.TokenHandler(token))
	}
	if cfg.Guest.Listen != "" {
		g := guest.New(m.loop, guest.Limits{}, m.Clock, log.With("component", "guest"))
		g.SetJobs(m.jobs)
		g.SetSeeds(m.loop)
		if err := m.listen("guest", cfg.Guest.Listen, g); err != nil {
			return err
		}
	}
	if cfg.Metrics.Listen != "" {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", m.metrics.Handler())
		mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintln(w, "agentlab-reaper: metrics at /metrics")
		})
		if err := m.listen("metrics", cfg.Metrics.Listen, mux); err != nil {
			return err
		}
	}

	loopCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	m.cancel = cancel
	m.loopDone = make(chan struct{})
	go func() {
		defer close(m.loopDone)
		_ = m.loop.Run(loopCtx)
	}()
	m.jobsDone = make(chan struct{})
	go func() {
		defer close(m.jobsDone)
		_ = m.jobs.Run(loopCtx)
	}()
	log.Info("agentlab-reaper started", "version", version, "config", m.ConfigPath, "interval", cfg.Interval.String(),
		"grace", cfg.Grace.String(), "warn_before", cfg.WarnBefore.String(), "dry_run", cfg.DryRun,
		"max_lease", cfg.Policy.MaxLease.String(), "user_keep", cfg.Policy.UserKeep, "prune", cfg.Prune,
		"database", cfg.Database, "control_socket", cfg.Control.Socket, "egress", cfg.Egress.Enabled)
	return nil
}

// proxmoxClient builds the Proxmox VE client with an HTTP transport whose
// requests are counted in the metrics.
func (m *Main) proxmoxClient(ctx context.Context) (*pve.Client, error) {
	cfg := m.Config
	token, err := cfg.APIToken()
	if err != nil {
		return nil, err
	}
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: cfg.Proxmox.Insecure}, //nolint:gosec // the operator asked for it
		TLSHandshakeTimeout:   10 * time.Second,
		MaxIdleConns:          32,
		MaxIdleConnsPerHost:   16,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	client, err := pve.New(ctx, pve.Config{
		Endpoint:   cfg.Proxmox.Endpoint,
		APIToken:   token,
		HTTPClient: &http.Client{Transport: m.metrics.RoundTripper(tr)},
		Logger:     m.Logger.With("component", "pve"),
		// A tick retries little: the next tick comes soon, and a slow tick
		// delays every lease.
		Retry:          pve.RetryPolicy{MaxAttempts: 3, BaseDelay: 200 * time.Millisecond, MaxDelay: 2 * time.Second},
		RequestTimeout: 30 * time.Second,
		UserAgent:      build().UserAgent(),
	})
	if err != nil {
		return nil, fmt.Errorf("proxmox client: %w", err)
	}
	return client, nil
}

// listen starts an HTTP server on a TCP address.
func (m *Main) listen(name, addr string, h http.Handler) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("%s listener on %s: %w (check %s.listen)", name, addr, err, strings.SplitN(name, " ", 2)[0])
	}
	m.serve(name, ln, h)
	return nil
}

// controlListener listens on control.listen: plain TCP on a loopback
// address, TLS otherwise (or whenever certificate files are configured),
// with the configured pair or one generated once next to the database,
// whose fingerprint it prints and logs.
func (m *Main) controlListener(cfg config.Config) (net.Listener, error) {
	ln, err := net.Listen("tcp", cfg.Control.Listen)
	if err != nil {
		return nil, fmt.Errorf("control listener on %s: %w (check control.listen)", cfg.Control.Listen, err)
	}
	if api.IsLoopback(cfg.Control.Listen) && cfg.Control.TLSCertFile == "" {
		return ln, nil
	}
	tlsCfg, fp, err := api.ServerTLS(cfg.Control.TLSCertFile, cfg.Control.TLSKeyFile, filepath.Dir(cfg.Database), cfg.Control.Listen)
	if err != nil {
		ln.Close()
		return nil, err
	}
	fmt.Fprintf(m.logOut, "control API TLS certificate SHA-256 fingerprint: %s\n", fp)
	m.Logger.Info("control API serves TLS", "address", ln.Addr().String(), "fingerprint", fp)
	return tls.NewListener(ln, tlsCfg), nil
}

func (m *Main) serve(name string, ln net.Listener, h http.Handler) {
	readTimeout := time.Minute
	if name == "guest" {
		readTimeout = 0 // artifact uploads take as long as their size needs
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       readTimeout,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(m.Logger.Handler(), slog.LevelWarn),
	}
	m.servers = append(m.servers, srv)
	m.listeners[name] = ln
	m.Logger.Info("listening", "listener", name, "address", ln.Addr().String())
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			m.Logger.Error("listener stopped", "listener", name, "err", err)
		}
	}()
}

// Addr returns the address a listener ("control socket", "control",
// "guest", "metrics") is bound to, or nil.
func (m *Main) Addr(name string) net.Addr {
	if ln, ok := m.listeners[name]; ok {
		return ln.Addr()
	}
	return nil
}

// Close stops the listeners, lets an action under way finish, stops the
// loop and closes the store. It is safe to call more than once.
func (m *Main) Close() error {
	m.closeOnce.Do(func() {
		var errs []error
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if m.jobs != nil {
			m.jobs.StopWatches() // long polls answer now, not after the shutdown's timeout
		}
		for _, srv := range m.servers {
			if err := srv.Shutdown(ctx); err != nil {
				errs = append(errs, err)
			}
		}
		if m.cancel != nil {
			m.cancel()
			<-m.loopDone
			<-m.jobsDone
		}
		if m.egress != nil {
			// Only the reaper's own table goes; sandboxes are unfiltered
			// until the daemon runs again.
			if err := m.egress.Close(ctx); err != nil {
				errs = append(errs, err)
			} else {
				m.Logger.Info("egress table removed", "table", "inet "+egress.Table)
			}
		}
		if m.db != nil {
			if err := m.db.Close(); err != nil {
				errs = append(errs, err)
			}
		}
		if err := m.dbLock.Release(); err != nil {
			errs = append(errs, err)
		}
		m.closeErr = errors.Join(errs...)
	})
	return m.closeErr
}
