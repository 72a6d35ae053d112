// Package guest is the reaper's listener for sandboxes (guest.listen).
//
// A sandbox proves who it is with its heartbeat token, a secret the provider
// puts in the guest while the VM's metadata keeps only its sha256:
//
//	POST /v1/heartbeat
//	Authorization: Bearer TOKEN
//
// extends the sandbox's lease by its TTL from now, never past max_ttl. The
// answer is the lease: 200 {"vmid","expires_at","max_expires_at","ttl"},
// 409 when max_ttl capped it (the lease then ends at the cap; the body says
// so) or when the lease already expired, 401 for an unknown token, 429 when a
// token or an address sends too fast (Retry-After says when to come back).
//
//	POST /v1/booted
//	Authorization: Bearer TOKEN
//
// is the guest's report at first boot (agentlab-heartbeat --booted): 200
// {"vmid"}, and the lease is left as it is. This, an accepted heartbeat
// and a job runner's spec fetch are the guest's contacts: after the first,
// once the guest has its answer, the reaper ejects and deletes the
// sandbox's seed ISO (see SetSeeds).
// The job endpoints (spec, log, heartbeat, artifacts, the end) are listed
// at SetJobs.
package guest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/agentlab/terraform-provider-agentlab/internal/clock"
	"github.com/agentlab/terraform-provider-agentlab/internal/lease"
	"github.com/agentlab/terraform-provider-agentlab/reaper"
)

// Heartbeater extends leases; *reconcile.Loop is one.
type Heartbeater interface {
	Heartbeat(ctx context.Context, token string) (reaper.Renewal, error)
}

// Seeds retires a sandbox's cloud-init seed ISO once its guest has made
// contact; *reconcile.Loop is one. The listener calls it after it has
// answered, so the guest never waits for Proxmox.
type Seeds interface {
	// FinishSeeds retires the seed ISO of vmid that a heartbeat or boot
	// report found still attached, and does nothing when there is none.
	FinishSeeds(ctx context.Context, vmid int)
	// JobContact retires the seed ISO of a job's sandbox once its runner
	// has fetched the spec.
	JobContact(ctx context.Context, node string, vmid int, jobID string) error
	// Booted takes the boot report of the sandbox whose seed's (or current)
	// heartbeat token is token and returns its VMID and, for the seed's
	// token, the fresh heartbeat token the guest keeps from then on ("" for
	// none: keep the one it has). Errors wrap reaper.ErrUnauthorized,
	// ErrNotFound or ErrProtected.
	Booted(ctx context.Context, token string) (vmid int, heartbeatToken string, err error)
}

// Limits are the rate limits of the listener.
type Limits struct {
	// PerToken is the sustained heartbeats per second one token may send,
	// with bursts of TokenBurst. Default one every 10 s, bursts of 3.
	PerToken   float64
	TokenBurst int
	// PerAddress is the sustained requests per second one remote address
	// may send, with bursts of AddressBurst. Default 2/s, bursts of 20.
	PerAddress   float64
	AddressBurst int
}

func (l Limits) withDefaults() Limits {
	if l.PerToken <= 0 {
		l.PerToken = 0.1
	}
	if l.TokenBurst <= 0 {
		l.TokenBurst = 3
	}
	if l.PerAddress <= 0 {
		l.PerAddress = 2
	}
	if l.AddressBurst <= 0 {
		l.AddressBurst = 20
	}
	return l
}

// Server serves the guest listener. Create it with New.
type Server struct {
	hb      Heartbeater
	log     *slog.Logger
	tokens  *limiter
	address *limiter
	jobs    Jobs
	seeds   Seeds
}

// New returns a guest listener handler over hb. clk drives the rate limits
// (nil: the wall clock); logger may be nil.
func New(hb Heartbeater, limits Limits, clk clock.Clock, logger *slog.Logger) *Server {
	if clk == nil {
		clk = clock.Real{}
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	limits = limits.withDefaults()
	return &Server{
		hb: hb, log: logger,
		tokens:  newLimiter(clk, limits.PerToken, limits.TokenBurst),
		address: newLimiter(clk, limits.PerAddress, limits.AddressBurst),
	}
}

// SetSeeds makes the listener retire a sandbox's seed ISO at its guest's
// first contact (a boot report, an accepted heartbeat, a job runner's spec
// fetch), through seeds, and turns on /v1/booted. Call it before serving.
func (s *Server) SetSeeds(seeds Seeds) { s.seeds = seeds }

// afterContact runs retire once the answer has reached the guest: the
// answer carries its length and is flushed, so the guest's client is done
// while the listener goes on talking to Proxmox. The work outlives the
// request's context (the guest may hang up), bounded by contactTimeout.
func (s *Server) afterContact(w http.ResponseWriter, r *http.Request, retire func(ctx context.Context)) {
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), contactTimeout)
	defer cancel()
	retire(ctx)
}

// contactTimeout bounds the seed ISO retirement after a contact; the
// reaper's loop finishes what it leaves undone.
const contactTimeout = 2 * time.Minute

// MaxBodyBytes bounds a heartbeat's body (which is ignored).
const MaxBodyBytes = 4 << 10

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/v1/heartbeat" && r.Method == http.MethodPost:
		s.heartbeat(w, r)
	case r.URL.Path == "/v1/booted" && r.Method == http.MethodPost:
		s.booted(w, r)
	case r.URL.Path == "/v1/heartbeat" || r.URL.Path == "/v1/booted":
		w.Header().Set("Allow", http.MethodPost)
		writeError(w, http.StatusMethodNotAllowed, "use POST")
	case strings.HasPrefix(r.URL.EscapedPath(), jobPrefix):
		s.serveJob(w, r)
	default:
		writeError(w, http.StatusNotFound, "no such endpoint")
	}
}

// HeartbeatResponse is the answer to a heartbeat.
type HeartbeatResponse struct {
	VMID         int       `json:"vmid"`
	ExpiresAt    time.Time `json:"expires_at"`
	MaxExpiresAt time.Time `json:"max_expires_at,omitzero"`
	TTL          string    `json:"ttl"`
	Capped       bool      `json:"capped,omitempty"`
	DryRun       bool      `json:"dry_run,omitempty"`
	Error        string    `json:"error,omitempty"`
}

// heartbeatToken reads the heartbeat token of a request to /v1/heartbeat
// or /v1/booted, within the rate limits; when it answers itself (too fast,
// no token), ok is false.
func (s *Server) heartbeatToken(w http.ResponseWriter, r *http.Request) (token string, ok bool) {
	if wait, ok := s.address.allow(remoteIP(r)); !ok {
		tooFast(w, wait, "too many requests from this address")
		return "", false
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, MaxBodyBytes)) // the body carries nothing
	token, ok = bearer(r)
	if !ok {
		w.Header().Set("WWW-Authenticate", `Bearer realm="agentlab-reaper"`)
		writeError(w, http.StatusUnauthorized, "send the sandbox's heartbeat token: Authorization: Bearer <token>")
		return "", false
	}
	sum := sha256.Sum256([]byte(token))
	if wait, ok := s.tokens.allow(hex.EncodeToString(sum[:])); !ok {
		tooFast(w, wait, "heartbeats too frequent for this token")
		return "", false
	}
	return token, true
}

// BootedResponse is the answer to a boot report.
type BootedResponse struct {
	VMID int `json:"vmid"`
	// HeartbeatToken, when set, replaces the token the guest sent: the
	// seed's token, which sat on PVE storage in the seed ISO, is worth
	// nothing once the guest has heartbeated with this one.
	HeartbeatToken string `json:"heartbeat_token,omitempty"`
}

// booted is the guest's report, once at first boot, that it no longer
// needs its seed ISO; the lease is left as it is.
func (s *Server) booted(w http.ResponseWriter, r *http.Request) {
	if s.seeds == nil {
		drain(r)
		writeError(w, http.StatusNotImplemented, "boot reports are not enabled on this agentlab-reaper")
		return
	}
	token, ok := s.heartbeatToken(w, r)
	if !ok {
		return
	}
	vmid, fresh, err := s.seeds.Booted(r.Context(), token)
	switch {
	case err == nil:
		w.Header().Set("Cache-Control", "no-store")
		writeJSON(w, http.StatusOK, BootedResponse{VMID: vmid, HeartbeatToken: fresh})
	case errors.Is(err, reaper.ErrUnauthorized):
		w.Header().Set("WWW-Authenticate", `Bearer realm="agentlab-reaper", error="invalid_token"`)
		writeError(w, http.StatusUnauthorized, "unknown heartbeat token")
		return
	case errors.Is(err, reaper.ErrProtected):
		writeError(w, http.StatusConflict, err.Error())
		return
	case errors.Is(err, reaper.ErrNotFound):
		writeError(w, http.StatusNotFound, "this sandbox no longer exists")
		return
	default:
		s.log.Error("boot report failed", "remote", r.RemoteAddr, "err", err)
		writeError(w, http.StatusServiceUnavailable, "the reaper cannot take the boot report now; try again later")
		return
	}
	s.afterContact(w, r, func(ctx context.Context) { s.seeds.FinishSeeds(ctx, vmid) })
}

func (s *Server) heartbeat(w http.ResponseWriter, r *http.Request) {
	token, ok := s.heartbeatToken(w, r)
	if !ok {
		return
	}
	ren, err := s.hb.Heartbeat(r.Context(), token)
	resp := HeartbeatResponse{VMID: ren.Lease.VMID, ExpiresAt: ren.Lease.ExpiresAt, MaxExpiresAt: ren.Lease.MaxExpiresAt,
		TTL: ren.Lease.TTL.String(), Capped: ren.Capped, DryRun: ren.DryRun}
	switch {
	case err == nil:
		writeJSON(w, http.StatusOK, resp)
	case errors.Is(err, lease.ErrPastMaxTTL):
		resp.Error = err.Error()
		writeJSON(w, http.StatusConflict, resp)
	case errors.Is(err, reaper.ErrUnauthorized):
		w.Header().Set("WWW-Authenticate", `Bearer realm="agentlab-reaper", error="invalid_token"`)
		writeError(w, http.StatusUnauthorized, "unknown heartbeat token")
	case errors.Is(err, reaper.ErrConflict), errors.Is(err, reaper.ErrProtected):
		writeError(w, http.StatusConflict, err.Error())
	case errors.Is(err, reaper.ErrNotFound):
		writeError(w, http.StatusNotFound, "this sandbox no longer exists")
	default:
		s.log.Error("heartbeat failed", "remote", r.RemoteAddr, "err", err)
		writeError(w, http.StatusServiceUnavailable, "the reaper cannot renew the lease now; try again later")
	}
	if s.seeds != nil && ren.Lease.VMID != 0 && (err == nil || errors.Is(err, lease.ErrPastMaxTTL)) {
		s.afterContact(w, r, func(ctx context.Context) { s.seeds.FinishSeeds(ctx, ren.Lease.VMID) })
	}
}

func tooFast(w http.ResponseWriter, wait time.Duration, msg string) {
	secs := int(math.Ceil(wait.Seconds()))
	if secs < 1 {
		secs = 1
	}
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	writeError(w, http.StatusTooManyRequests, fmt.Sprintf("%s; retry in %ds", msg, secs))
}

func bearer(r *http.Request) (string, bool) {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, struct {
		Error string `json:"error"`
	}{msg})
}

// writeJSON writes v with its length, so that a client has the whole
// answer once it is flushed (see afterContact).
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"cannot encode the answer"}`)
	}
	b = append(b, '\n')
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
