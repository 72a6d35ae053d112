package guest

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/agentlab/terraform-provider-agentlab/internal/job"
	"github.com/agentlab/terraform-provider-agentlab/reaper"
	"github.com/agentlab/terraform-provider-agentlab/reaper/jobs"
)

// Jobs is what the listener needs from the job registry; *jobs.Service is
// one.
type Jobs interface {
	Spec(ctx context.Context, bootstrap string) (job.Spec, error)
	Authenticate(ctx context.Context, token string) (reaper.Job, error)
	Started(ctx context.Context, id string) error
	Heartbeat(ctx context.Context, id string) error
	AppendLog(ctx context.Context, id string, data []byte) (int64, error)
	Upload(ctx context.Context, id, name string, body io.Reader, size int64) (job.Artifact, error)
	Finished(ctx context.Context, id string, f job.Finished) (job.Job, error)
}

// MaxLogChunkBytes bounds one POST /v1/job/log.
const MaxLogChunkBytes = 1 << 20

// SetJobs turns on the job endpoints, served by j. Call it before serving.
//
//	GET  /v1/job/spec[?format=sh]  bootstrap token → the spec, once (replay: 401);
//	                               format=sh renders it for sh to source (job.Spec.ShellScript)
//	POST /v1/job/started           job token → running
//	POST /v1/job/log               the body is appended to the job's log
//	POST /v1/job/heartbeat         the runner is alive
//	PUT  /v1/job/artifacts/{name}  the body is the artifact: 201 {"name","size","sha256"};
//	                               400 bad name or truncated, 413 over artifacts.max_bytes
//	POST /v1/job/finished          {"exit_code":N,"timed_out":bool,"error":"...","not_run":bool}; the token then stops working
func (s *Server) SetJobs(j Jobs) { s.jobs = j }

// jobPrefix starts every job endpoint.
const jobPrefix = "/v1/job/"

// serveJob routes the job endpoints. The path is taken as sent (the
// standard mux would clean "..", answering a traversal with a redirect).
func (s *Server) serveJob(w http.ResponseWriter, r *http.Request) {
	if s.jobs == nil {
		writeError(w, http.StatusNotImplemented, "jobs are not enabled on this agentlab-reaper")
		return
	}
	rest := strings.TrimPrefix(r.URL.EscapedPath(), jobPrefix)
	if r.URL.EscapedPath() == jobPrefix+"spec" {
		if r.Method != http.MethodGet {
			methodNotAllowed(w, http.MethodGet)
			return
		}
		s.jobSpec(w, r)
		return
	}
	if escaped, ok := strings.CutPrefix(rest, "artifacts/"); ok {
		if r.Method != http.MethodPut {
			methodNotAllowed(w, http.MethodPut)
			return
		}
		name, err := url.PathUnescape(escaped)
		if err != nil {
			drain(r)
			writeError(w, http.StatusBadRequest, "artifact name is not a valid URL path: "+err.Error())
			return
		}
		s.withJob(w, r, func(j reaper.Job) { s.jobUpload(w, r, j, name) })
		return
	}
	var handle func(reaper.Job)
	switch rest {
	case "started":
		handle = func(j reaper.Job) { s.jobResult(w, r, s.jobs.Started(r.Context(), j.ID)) }
	case "heartbeat":
		handle = func(j reaper.Job) {
			drain(r)
			s.jobResult(w, r, s.jobs.Heartbeat(r.Context(), j.ID))
		}
	case "log":
		handle = func(j reaper.Job) { s.jobLog(w, r, j) }
	case "finished":
		handle = func(j reaper.Job) { s.jobFinished(w, r, j) }
	default:
		writeError(w, http.StatusNotFound, "no such endpoint")
		return
	}
	if r.Method != http.MethodPost {
		methodNotAllowed(w, http.MethodPost)
		return
	}
	s.withJob(w, r, handle)
}

func (s *Server) jobSpec(w http.ResponseWriter, r *http.Request) {
	if wait, ok := s.address.allow(remoteIP(r)); !ok {
		tooFast(w, wait, "too many requests from this address")
		return
	}
	token, ok := bearer(r)
	if !ok {
		unauthorized(w, "send the job's bootstrap token: Authorization: Bearer <token>")
		return
	}
	format := r.URL.Query().Get("format")
	if format != "" && format != "json" && format != "sh" {
		writeError(w, http.StatusBadRequest, "format must be json (the default) or sh")
		return
	}
	spec, err := s.jobs.Spec(r.Context(), token)
	if err != nil {
		s.jobError(w, r, err)
		return
	}
	if format == "sh" {
		script := spec.ShellScript()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Content-Length", strconv.Itoa(len(script)))
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, script)
	} else {
		writeJSON(w, http.StatusOK, spec)
	}
	if s.seeds != nil {
		// The runner's first call: its guest has booted.
		s.afterContact(w, r, func(ctx context.Context) { s.jobContact(ctx, spec) })
	}
}

// jobContact retires the seed ISO of the sandbox of the job that spec
// belongs to. A job whose sandbox is not known yet is left to the provider, which
// retires the seed once the guest agent reports an address.
func (s *Server) jobContact(ctx context.Context, spec job.Spec) {
	j, err := s.jobs.Authenticate(ctx, spec.Token)
	if err != nil || j.VMID == 0 {
		return
	}
	if err := s.seeds.JobContact(ctx, j.Node, j.VMID, j.ID); err != nil {
		s.log.Warn("not retiring the seed ISO of a job's sandbox", "job", j.ID, "vmid", j.VMID, "err", err)
	}
}

// withJob authenticates the job token and calls fn with its job.
func (s *Server) withJob(w http.ResponseWriter, r *http.Request, fn func(reaper.Job)) {
	token, ok := bearer(r)
	if !ok {
		drain(r)
		unauthorized(w, "send the job token from the spec: Authorization: Bearer <token>")
		return
	}
	j, err := s.jobs.Authenticate(r.Context(), token)
	if err != nil {
		drain(r)
		s.jobError(w, r, err)
		return
	}
	fn(j)
}

func (s *Server) jobLog(w http.ResponseWriter, r *http.Request, j reaper.Job) {
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxLogChunkBytes))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		writeError(w, http.StatusRequestEntityTooLarge, "a log chunk may hold at most 1 MiB; send smaller chunks")
		return
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, "read log chunk: "+err.Error())
		return
	}
	size, err := s.jobs.AppendLog(r.Context(), j.ID, data)
	if err != nil {
		s.jobError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Size int64 `json:"size"`
	}{size})
}

func (s *Server) jobUpload(w http.ResponseWriter, r *http.Request, j reaper.Job, name string) {
	a, err := s.jobs.Upload(r.Context(), j.ID, name, r.Body, r.ContentLength)
	if err != nil {
		if errors.Is(err, jobs.ErrTooLarge) {
			// Do not read a huge body to its end: close the connection.
			w.Header().Set("Connection", "close")
		}
		s.jobError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, a)
}

func (s *Server) jobFinished(w http.ResponseWriter, r *http.Request, j reaper.Job) {
	var f job.Finished
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		writeError(w, http.StatusBadRequest, `body must be JSON like {"exit_code":0,"timed_out":false}: `+err.Error())
		return
	}
	done, err := s.jobs.Finished(r.Context(), j.ID, f)
	if err != nil {
		s.jobError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Status job.Status `json:"status"`
	}{done.Status})
}

func (s *Server) jobResult(w http.ResponseWriter, r *http.Request, err error) {
	if err != nil {
		s.jobError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		OK bool `json:"ok"`
	}{true})
}

// jobError answers err with the status it calls for.
func (s *Server) jobError(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, reaper.ErrUnauthorized):
		msg := "unknown or expired job token"
		if errors.Is(err, jobs.ErrTokenUsed) {
			msg = "this bootstrap token was already used; it works once"
		}
		unauthorized(w, msg)
	case errors.Is(err, jobs.ErrTooLarge):
		writeError(w, http.StatusRequestEntityTooLarge, err.Error())
	case errors.Is(err, job.ErrInvalid), errors.Is(err, jobs.ErrTruncated):
		writeError(w, http.StatusBadRequest, err.Error())
	case errors.Is(err, job.ErrTransition), errors.Is(err, reaper.ErrConflict):
		writeError(w, http.StatusConflict, err.Error())
	case errors.Is(err, job.ErrNotFound):
		writeError(w, http.StatusNotFound, err.Error())
	default:
		s.log.Error("job request failed", "path", r.URL.Path, "remote", r.RemoteAddr, "err", err)
		writeError(w, http.StatusServiceUnavailable, "the reaper cannot take this now; try again later")
	}
}

func unauthorized(w http.ResponseWriter, msg string) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="agentlab-reaper", error="invalid_token"`)
	writeError(w, http.StatusUnauthorized, msg)
}

func methodNotAllowed(w http.ResponseWriter, allow string) {
	w.Header().Set("Allow", allow)
	writeError(w, http.StatusMethodNotAllowed, "use "+allow)
}

// drain reads a little of an unread body so the connection can be reused.
func drain(r *http.Request) { _, _ = io.Copy(io.Discard, io.LimitReader(r.Body, MaxBodyBytes)) }
