// Package api is the reaper's control API, its listeners and its client.
//
// The API is JSON over HTTP, served on a Unix socket (mode 0600, for the
// operator subcommands) and optionally on TCP (for the provider), where every
// request needs the bearer token from control.token_file:
//
//	GET  /v1/status                    version, dry_run, last tick
//	GET  /v1/leases[?all=1]            leases as last seen (all: destroyed and gone too)
//	GET  /v1/leases/{vmid}             one lease
//	GET  /v1/leases/{vmid}/address     {"vmid","address"}: its IPv4 address from the guest agent
//	POST /v1/leases/{vmid}/renew       {"duration":"2h","force":false}: expire 2h from now,
//	                                   capped by max_ttl and policy.max_lease; under 1m needs force
//	POST   /v1/leases/{vmid}/keep      tag agentlab-keep for the operator (agentlab-reaper keep);
//	DELETE /v1/leases/{vmid}/keep      remove it (keep --remove); both on the socket only (403 on TCP)
//	GET  /v1/orphans                   orphans found, with what is done about each
//	GET  /v1/egress                    the egress filter's nft table (socket only; 403 on TCP)
//	GET  /v1/events[?vmid=&since=&limit=]  the audit log, oldest first
//	/v1/jobs...                        jobs, their logs and artifacts (see jobRoutes)
//
// Errors are {"error": "..."} with a status: 400 bad request, 401 missing or
// wrong token, 404 unknown sandbox, 409 refused (expired, being destroyed,
// untrusted metadata, or capped by max_ttl: then the body also holds the
// renewal, extended up to the cap), 501 a feature not available yet.
package api

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/agentlab/terraform-provider-agentlab/internal/lease"
	"github.com/agentlab/terraform-provider-agentlab/reaper"
)

// Keeper sets and removes the operator's agentlab-keep tag;
// *reconcile.Loop is one.
type Keeper interface {
	Keep(ctx context.Context, vmid int, keep bool, actor string) (reaper.Lease, error)
}

// OrphanLister lists the orphans found; *reconcile.Loop is one.
type OrphanLister interface {
	Orphans(ctx context.Context) ([]reaper.Orphan, error)
}

// OrphansResponse is the answer of GET /v1/orphans.
type OrphansResponse struct {
	Orphans []reaper.Orphan `json:"orphans"`
}

// Store answers the read-only queries.
type Store interface {
	Leases(ctx context.Context, all bool) ([]reaper.Lease, error)
	Lease(ctx context.Context, vmid int) (reaper.Lease, error)
	Events(ctx context.Context, f reaper.EventFilter) ([]reaper.Event, error)
}

// Renewer renews leases; *reconcile.Loop is one.
type Renewer interface {
	Renew(ctx context.Context, vmid int, d time.Duration, actor string) (reaper.Renewal, error)
}

// Status is the answer of GET /v1/status.
type Status struct {
	// Version is the reaper's version.
	Version string `json:"version"`
	// DryRun is set when the reaper changes nothing.
	DryRun bool `json:"dry_run"`
	// Interval is the reconcile interval, as a Go duration.
	Interval string `json:"interval"`
	// LastTick is when the last successful tick ended (zero before one).
	LastTick time.Time `json:"last_tick,omitzero"`
}

// Server serves the control API.
type Server struct {
	// Store answers queries.
	Store Store
	// Renewer renews leases.
	Renewer Renewer
	// Keeper keeps sandboxes for the operator.
	Keeper Keeper
	// Orphans lists the orphans found.
	Orphans OrphanLister
	// Addresses finds sandboxes' addresses (for ssh); nil answers 501.
	Addresses Addresser
	// Jobs is the job registry; nil answers 501 to the job endpoints.
	Jobs Jobs
	// Egress shows the egress table; nil when the filter is off.
	Egress EgressPrinter
	// Status returns the reaper's status.
	Status func() Status
	// Logger receives request errors. Nil discards them.
	Logger *slog.Logger
}

// MaxRequestBytes bounds request bodies.
const MaxRequestBytes = 64 << 10

// Handler returns the API for the Unix socket: no token (the socket's mode
// restricts who can connect); events name the actor "operator@unix".
func (s *Server) Handler() http.Handler { return s.mux(operatorActor) }

// operatorActor is the actor of requests on the Unix socket.
const operatorActor = "operator@unix"

// TokenHandler returns the API for TCP: every request must carry
// "Authorization: Bearer TOKEN"; events name the actor "client@tcp".
func (s *Server) TokenHandler(token string) http.Handler {
	next := s.mux("client@tcp")
	want := []byte(token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := bearer(r)
		if !ok || token == "" || subtle.ConstantTimeCompare([]byte(got), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="agentlab-reaper"`)
			writeError(w, http.StatusUnauthorized, "missing or wrong bearer token; send Authorization: Bearer <control.token_file contents>")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// bearer returns the token of an "Authorization: Bearer TOKEN" header.
func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

func (s *Server) mux(actor string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", s.status)
	mux.HandleFunc("GET /v1/leases", s.leases)
	mux.HandleFunc("GET /v1/leases/{vmid}", s.lease)
	mux.HandleFunc("GET /v1/leases/{vmid}/address", s.address)
	mux.HandleFunc("POST /v1/leases/{vmid}/renew", func(w http.ResponseWriter, r *http.Request) { s.renew(w, r, actor) })
	mux.HandleFunc("GET /v1/events", s.events)
	if actor == operatorActor {
		// Keeping is the operator's choice (policy.user_keep): only on the
		// socket, never for the TCP clients Terraform users configure.
		mux.HandleFunc("POST /v1/leases/{vmid}/keep", func(w http.ResponseWriter, r *http.Request) { s.keep(w, r, true, actor) })
		mux.HandleFunc("DELETE /v1/leases/{vmid}/keep", func(w http.ResponseWriter, r *http.Request) { s.keep(w, r, false, actor) })
		mux.HandleFunc("GET /v1/egress", s.egress)
	} else {
		mux.HandleFunc("/v1/egress", func(w http.ResponseWriter, r *http.Request) {
			writeError(w, http.StatusForbidden, "the egress table is the operator's: run agentlab-reaper egress --print on the reaper's host")
		})
		mux.HandleFunc("/v1/leases/{vmid}/keep", func(w http.ResponseWriter, r *http.Request) {
			writeError(w, http.StatusForbidden, "keeping a sandbox is the operator's: run agentlab-reaper keep VMID on the reaper's host")
		})
	}
	mux.HandleFunc("GET /v1/orphans", s.orphans)
	notYet := func(feature string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			writeError(w, http.StatusNotImplemented, feature+" are not available yet in this version of agentlab-reaper")
		}
	}
	if s.Jobs != nil {
		s.jobRoutes(mux)
	} else {
		mux.HandleFunc("/v1/jobs", notYet("jobs"))
		mux.HandleFunc("/v1/jobs/", notYet("jobs"))
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no such endpoint: %s %s", r.Method, r.URL.Path))
	})
	return mux
}

func (s *Server) log() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	var st Status
	if s.Status != nil {
		st = s.Status()
	}
	writeJSON(w, http.StatusOK, st)
}

// LeasesResponse is the answer of GET /v1/leases.
type LeasesResponse struct {
	Leases []reaper.Lease `json:"leases"`
}

func (s *Server) leases(w http.ResponseWriter, r *http.Request) {
	all, err := boolParam(r, "all")
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	ls, err := s.Store.Leases(r.Context(), all)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if ls == nil {
		ls = []reaper.Lease{}
	}
	writeJSON(w, http.StatusOK, LeasesResponse{Leases: ls})
}

func (s *Server) lease(w http.ResponseWriter, r *http.Request) {
	vmid, err := vmidParam(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	l, err := s.Store.Lease(r.Context(), vmid)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, l)
}

// RenewRequest is the body of POST /v1/leases/{vmid}/renew.
type RenewRequest struct {
	// Duration is a Go duration: the lease will expire that long from now.
	Duration string `json:"duration"`
	// Force allows a duration shorter than reaper.MinRenewal.
	Force bool `json:"force,omitempty"`
}

// RenewResponse is the answer of a renewal; Error is set (with status 409)
// when max_ttl capped it.
type RenewResponse struct {
	reaper.Renewal
	Error string `json:"error,omitempty"`
}

func (s *Server) renew(w http.ResponseWriter, r *http.Request, actor string) {
	vmid, err := vmidParam(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	var req RenewRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxRequestBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, `body must be JSON like {"duration":"2h"}: `+err.Error())
		return
	}
	d, err := time.ParseDuration(req.Duration)
	switch {
	case err != nil:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("duration %q is not a Go duration such as 30m or 2h", req.Duration))
		return
	case d <= 0:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("duration %s is not positive: a renewal sets the lease to end that long from now; give e.g. 30m or 2h", d))
		return
	case d < reaper.MinRenewal && !req.Force:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("duration %s is shorter than %s: the sandbox would be reaped at the next tick; set force to renew for so little anyway", d, reaper.MinRenewal))
		return
	}
	ren, err := s.Renewer.Renew(r.Context(), vmid, d, actor)
	if errors.Is(err, lease.ErrPastMaxTTL) {
		writeJSON(w, http.StatusConflict, RenewResponse{Renewal: ren, Error: err.Error()})
		return
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, RenewResponse{Renewal: ren})
}

func (s *Server) keep(w http.ResponseWriter, r *http.Request, keep bool, actor string) {
	vmid, err := vmidParam(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if s.Keeper == nil {
		writeError(w, http.StatusNotImplemented, "keep is not available")
		return
	}
	l, err := s.Keeper.Keep(r.Context(), vmid, keep, actor)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, l)
}

func (s *Server) orphans(w http.ResponseWriter, r *http.Request) {
	if s.Orphans == nil {
		writeJSON(w, http.StatusOK, OrphansResponse{Orphans: []reaper.Orphan{}})
		return
	}
	os, err := s.Orphans.Orphans(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if os == nil {
		os = []reaper.Orphan{}
	}
	writeJSON(w, http.StatusOK, OrphansResponse{Orphans: os})
}

// EventsResponse is the answer of GET /v1/events.
type EventsResponse struct {
	Events []reaper.Event `json:"events"`
}

// MaxEventLimit bounds the limit parameter of GET /v1/events.
const MaxEventLimit = 10000

func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	var f reaper.EventFilter
	q := r.URL.Query()
	if v := q.Get("vmid"); v != "" {
		id, err := strconv.Atoi(v)
		if err != nil || id <= 0 {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("vmid %q is not a VM ID", v))
			return
		}
		f.VMID = id
	}
	if v := q.Get("since"); v != "" {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("since %q is not an RFC 3339 time such as 2026-03-01T12:00:00Z", v))
			return
		}
		f.Since = t
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 || n > MaxEventLimit {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("limit %q must be a number from 1 to %d", v, MaxEventLimit))
			return
		}
		f.Limit = n
	}
	evs, err := s.Store.Events(r.Context(), f)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if evs == nil {
		evs = []reaper.Event{}
	}
	writeJSON(w, http.StatusOK, EventsResponse{Events: evs})
}

// fail answers err with the status it calls for.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	status := StatusOf(err)
	if status >= 500 {
		s.log().Error("control api request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	writeError(w, status, err.Error())
}

// StatusOf maps the reaper's errors to HTTP statuses.
func StatusOf(err error) int {
	switch {
	case errors.Is(err, reaper.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, reaper.ErrUnauthorized):
		return http.StatusUnauthorized
	case errors.Is(err, reaper.ErrConflict), errors.Is(err, reaper.ErrProtected), errors.Is(err, lease.ErrPastMaxTTL):
		return http.StatusConflict
	case errors.Is(err, lease.ErrInvalid):
		return http.StatusBadRequest
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout
	}
	return http.StatusInternalServerError
}

func vmidParam(r *http.Request) (int, error) {
	v := r.PathValue("vmid")
	id, err := strconv.Atoi(v)
	if err != nil || id <= 0 {
		return 0, fmt.Errorf("%q is not a VM ID", v)
	}
	return id, nil
}

func boolParam(r *http.Request, name string) (bool, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("%s=%q: want true or false", name, v)
	}
	return b, nil
}

// ErrorResponse is the body of every error answer.
type ErrorResponse struct {
	Error string `json:"error"`
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, ErrorResponse{Error: msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
