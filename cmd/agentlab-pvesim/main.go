// Command agentlab-pvesim serves a simulated Proxmox VE API over HTTPS for
// development and tests. Its first line on stdout is
//
//	agentlab-pvesim: endpoint=https://127.0.0.1:8006/api2/json token=root@pam!agentlab=SECRET
//
// so that scripts can read the endpoint and token. SIGINT or SIGTERM stop it
// gracefully (the state is written when --state-dir is set); a second signal
// exits at once. "agentlab-pvesim version" prints the build's version,
// commit and date.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/agentlab/terraform-provider-agentlab/internal/buildinfo"
	"github.com/agentlab/terraform-provider-agentlab/internal/pvesim"
)

// version, commit and date are set at build time with -ldflags
// "-X main.version=1.2.3 -X main.commit=... -X main.date=...".
var (
	version = "dev"
	commit  = ""
	date    = ""
)

// build describes this binary; "agentlab-pvesim version" prints it.
func build() buildinfo.Info { return buildinfo.New("agentlab-pvesim", version, commit, date) }

func main() {
	if len(os.Args) > 1 && os.Args[1] == pvesim.GuestInitArg {
		// This process is a guest's init, started by --guest-exec.
		os.Exit(pvesim.GuestInit(os.Args[2:]))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop() // a second signal now kills the process
	}()
	if len(os.Args) == 2 && os.Args[1] == "version" {
		fmt.Println(build())
		return
	}
	m := NewMain(os.Stdout, os.Stderr)
	if err := m.ParseFlags(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "agentlab-pvesim:", err)
		os.Exit(2)
	}
	if err := m.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "agentlab-pvesim:", err)
		os.Exit(1)
	}
}

// Main is the program: flags, then Run until the context ends.
type Main struct {
	stdout, stderr io.Writer

	listen       string
	plainHTTP    bool
	nodes        string
	token        string
	templates    []string
	users        []string
	pools        []string
	latency      string
	latencyScale float64
	workers      string
	boot         string
	version      string
	lostRate     float64
	lostMode     string
	lostCalls    string
	faults       float64
	seed         int64
	guestExec    bool
	ageIdentity  string
	stateDir     string
	legacyErrors bool
	authDelay    time.Duration
	debug        bool

	// ready, when set, receives the endpoint once the server listens (tests).
	ready chan<- string
}

// NewMain returns a Main writing to stdout and stderr.
func NewMain(stdout, stderr io.Writer) *Main { return &Main{stdout: stdout, stderr: stderr} }

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// ParseFlags reads the command line.
func (m *Main) ParseFlags(args []string) error {
	fs := flag.NewFlagSet("agentlab-pvesim", flag.ContinueOnError)
	fs.SetOutput(m.stderr)
	fs.StringVar(&m.listen, "listen", "127.0.0.1:8006", "address to listen on (host:port; :0 picks a free port)")
	fs.BoolVar(&m.plainHTTP, "plain-http", false, "serve plain HTTP instead of HTTPS with a self-signed certificate")
	fs.StringVar(&m.nodes, "nodes", "pve", "comma-separated node names; the first is the default node")
	fs.StringVar(&m.token, "token", "", "API token USER@REALM!TOKENID=SECRET (default: root@pam!agentlab with a random secret)")
	fs.Var((*multiFlag)(&m.templates), "template", "template VMID:NAME[@NODE] (repeatable; default 9000:debian-12-cloud)")
	fs.Var((*multiFlag)(&m.users), "user", "user USER@REALM:PASSWORD that may log in with a ticket (repeatable)")
	fs.Var((*multiFlag)(&m.pools), "pool", "resource pool that exists (repeatable)")
	fs.StringVar(&m.latency, "latency", "zero", "latency model: zero or realistic")
	fs.Float64Var(&m.latencyScale, "latency-scale", 1, "multiply every modelled duration by this factor")
	fs.StringVar(&m.workers, "workers", "", "API workers N (both pools) or PROXY,DAEMON (default: the latency model's, 3,3 for realistic; unbounded for zero)")
	fs.StringVar(&m.boot, "boot", "", "guest boot time: realistic (20-60s, median 25s), zero, or a duration like 8s (default: the latency model's)")
	fs.StringVar(&m.version, "version", pvesim.DefaultVersion, "PVE version GET /version reports")
	fs.Float64Var(&m.faults, "faults", 0, "probability (0..1) of an injected fault per request")
	fs.Float64Var(&m.lostRate, "lose-answers", 0, "probability (0..1) that a clone, config, start or delete call acts and then loses its answer")
	fs.StringVar(&m.lostMode, "lose-answers-mode", pvesim.LostDrop, "how an answer is lost: drop (close the connection) or 500")
	fs.StringVar(&m.lostCalls, "lose-answers-calls", "all", "calls whose answers may be lost: all, or a comma-separated list of clone, config, start, delete")
	fs.Int64Var(&m.seed, "seed", 1, "seed of the fault injection and MAC address generators")
	fs.BoolVar(&m.guestExec, "guest-exec", false, "run each started VM's cloud-init user-data as a guest process in its own namespaces (needs root)")
	fs.StringVar(&m.ageIdentity, "guest-age-identity", "", "with --guest-exec: an age identity file (age-keygen output, mode 0600) that every template's guest holds at /etc/agentlab/age.key, to open sealed secrets")
	fs.StringVar(&m.stateDir, "state-dir", "", "directory to persist state in across restarts")
	fs.BoolVar(&m.legacyErrors, "legacy-errors", false, `error bodies without "message", as before libpve-http-server-perl 5.2.0`)
	fs.DurationVar(&m.authDelay, "auth-delay", 3*time.Second, "delay of answers to bad credentials (PVE: 3s)")
	fs.BoolVar(&m.debug, "debug", false, "log every request on stderr")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	return nil
}

// options builds the simulator's options from the flags.
func (m *Main) options() (pvesim.Options, string, error) {
	o := pvesim.Options{
		FaultRate: m.faults, Seed: m.seed, StateDir: m.stateDir, LegacyErrors: m.legacyErrors,
		AuthFailureDelay: m.authDelay, Users: m.users, Pools: m.pools, Version: m.version,
		LostAnswers: pvesim.LostAnswers{Rate: m.lostRate, Mode: m.lostMode},
	}
	calls, err := pvesim.ParseLostCalls(m.lostCalls)
	if err != nil {
		return o, "", fmt.Errorf("--lose-answers-calls: %w", err)
	}
	o.LostAnswers.Calls = calls
	for _, n := range strings.Split(m.nodes, ",") {
		if n = strings.TrimSpace(n); n != "" {
			o.Nodes = append(o.Nodes, n)
		}
	}
	for _, t := range m.templates {
		tm, err := pvesim.ParseTemplate(t)
		if err != nil {
			return o, "", err
		}
		o.Templates = append(o.Templates, tm)
	}
	lat, err := pvesim.ParseLatency(m.latency)
	if err != nil {
		return o, "", err
	}
	if m.latencyScale <= 0 {
		return o, "", fmt.Errorf("--latency-scale %v: want a positive factor", m.latencyScale)
	}
	if m.workers != "" {
		w, err := pvesim.ParseWorkers(m.workers)
		if err != nil {
			return o, "", fmt.Errorf("--workers: %w", err)
		}
		lat.Workers = w
	}
	if m.boot != "" {
		if lat, err = pvesim.WithBoot(lat, m.boot); err != nil {
			return o, "", fmt.Errorf("--boot: %w", err)
		}
	}
	o.Latency = lat.Scaled(m.latencyScale)
	token := m.token
	if token == "" {
		b := make([]byte, 16)
		if _, err := rand.Read(b); err != nil {
			return o, "", fmt.Errorf("generate token: %w", err)
		}
		h := hex.EncodeToString(b)
		token = fmt.Sprintf("root@pam!agentlab=%s-%s-%s-%s-%s", h[:8], h[8:12], h[12:16], h[16:20], h[20:])
	}
	o.Tokens = []string{token}
	if m.guestExec {
		exe, err := os.Executable()
		if err != nil {
			return o, "", fmt.Errorf("--guest-exec: find this program to run as the guests' init: %w", err)
		}
		o.GuestExec = &pvesim.GuestExec{Init: []string{exe, pvesim.GuestInitArg}}
		if m.ageIdentity != "" {
			id, err := readIdentity(m.ageIdentity)
			if err != nil {
				return o, "", fmt.Errorf("--guest-age-identity: %w", err)
			}
			o.GuestExec.AgeIdentity = id
		}
	} else if m.ageIdentity != "" {
		return o, "", errors.New("--guest-age-identity needs --guest-exec: only guests that run hold the identity")
	}
	level := slog.LevelInfo
	if m.debug {
		level = slog.LevelDebug
	}
	o.Logger = slog.New(slog.NewTextHandler(m.stderr, &slog.HandlerOptions{Level: level}))
	return o, token, nil
}

// Run serves until ctx ends, then shuts down gracefully.
func (m *Main) Run(ctx context.Context) error {
	opts, token, err := m.options()
	if err != nil {
		return err
	}
	srv, err := pvesim.New(opts)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", m.listen)
	if err != nil {
		_ = srv.Close()
		return fmt.Errorf("listen: %w", err)
	}
	host, port, _ := net.SplitHostPort(ln.Addr().String())
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	scheme := "https"
	var tlsHosts []string
	if h, _, err := net.SplitHostPort(m.listen); err == nil && h != "" {
		tlsHosts = append(tlsHosts, h)
	}
	tlsConfig, _, err := pvesim.SelfSignedTLS(tlsHosts...)
	if err != nil {
		_ = ln.Close()
		_ = srv.Close()
		return err
	}
	if m.plainHTTP {
		scheme, tlsConfig = "http", nil
	}
	endpoint := fmt.Sprintf("%s://%s/api2/json", scheme, net.JoinHostPort(host, port))
	fmt.Fprintf(m.stdout, "agentlab-pvesim: endpoint=%s token=%s\n", endpoint, token)
	opts.Logger.Info("serving", "endpoint", endpoint, "nodes", strings.Join(srv.Nodes(), ","),
		"latency", m.latency, "workers", fmt.Sprintf("%d,%d", opts.Latency.Workers.Proxy, opts.Latency.Workers.Daemon),
		"boot", opts.Latency.GuestAgentIP, "faults", m.faults, "lose_answers", m.lostRate, "state_dir", m.stateDir)
	if m.ready != nil {
		m.ready <- endpoint
	}

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln, tlsConfig) }()
	select {
	case err := <-errc:
		_ = srv.Close()
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	opts.Logger.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return err
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}

// readIdentity reads the templates' age identity file, which must be
// readable by its owner only, like the identity in a template.
func readIdentity(path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("%s has mode %04o; an identity must be readable by its owner only: chmod 600 %s", path, fi.Mode().Perm(), path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	return string(b), nil
}
