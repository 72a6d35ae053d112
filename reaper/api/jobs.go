package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/agentlab/terraform-provider-agentlab/internal/job"
)

// Jobs is the job registry the API serves; *jobs.Service is one.
type Jobs interface {
	Register(ctx context.Context, req job.RegisterRequest) (job.Registered, error)
	SetSandbox(ctx context.Context, id string, sb job.SandboxRequest) (job.Job, error)
	SetStatus(ctx context.Context, id string, s job.Status) (job.Job, error)
	Get(ctx context.Context, id string) (job.Job, error)
	Watch(ctx context.Context, id string, since job.Status, hold time.Duration) (job.Job, error)
	List(ctx context.Context) ([]job.Job, error)
	Cancel(ctx context.Context, id, why string) (job.Job, error)
	Artifacts(ctx context.Context, id string) ([]job.Artifact, error)
	OpenArtifact(ctx context.Context, id, name string) (*os.File, job.Artifact, error)
	ReadLog(ctx context.Context, id string, offset int64, limit int) ([]byte, int64, bool, error)
}

// MaxLogRead bounds the bytes one GET /v1/jobs/{id}/log returns.
const MaxLogRead = 1 << 20

// jobRoutes adds the job endpoints:
//
//	POST   /v1/jobs                          register: 201 {"job","bootstrap_token"}
//	GET    /v1/jobs                          {"jobs":[...]}, newest first
//	GET    /v1/jobs/{id}                     one job
//	GET    /v1/jobs/{id}?wait=D&status=S     the job once its status is not S or it ended, or after D
//	                                         (a long poll, at most job.MaxLongPoll); X-Job-Wait
//	PUT    /v1/jobs/{id}/sandbox             {"node","vmid","workspace"}
//	POST   /v1/jobs/{id}/status              {"status":"provisioning"|"booting"}
//	DELETE /v1/jobs/{id}?reason=WHY         cancel (reason "cancelled: WHY", WHY optional); the sandbox is destroyed unless keep_sandbox
//	GET    /v1/jobs/{id}/log?offset=N        text/plain from N; X-Log-Offset, X-Log-Complete
//	GET    /v1/jobs/{id}/artifacts           {"artifacts":[{"name","size","sha256"}]}
//	GET    /v1/jobs/{id}/artifacts/{name...} the bytes; X-Checksum-Sha256
func (s *Server) jobRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/jobs", s.registerJob)
	mux.HandleFunc("GET /v1/jobs", func(w http.ResponseWriter, r *http.Request) {
		js, err := s.Jobs.List(r.Context())
		if err != nil {
			s.jobFail(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, job.ListResponse{Jobs: js})
	})
	mux.HandleFunc("GET /v1/jobs/{id}", s.getJob)
	mux.HandleFunc("DELETE /v1/jobs/{id}", func(w http.ResponseWriter, r *http.Request) {
		j, err := s.Jobs.Cancel(r.Context(), r.PathValue("id"), r.URL.Query().Get("reason"))
		s.jobAnswer(w, r, j, err)
	})
	mux.HandleFunc("PUT /v1/jobs/{id}/sandbox", func(w http.ResponseWriter, r *http.Request) {
		var req job.SandboxRequest
		if !decodeBody(w, r, &req, `{"node":"pve","vmid":123}`) {
			return
		}
		j, err := s.Jobs.SetSandbox(r.Context(), r.PathValue("id"), req)
		s.jobAnswer(w, r, j, err)
	})
	mux.HandleFunc("POST /v1/jobs/{id}/status", func(w http.ResponseWriter, r *http.Request) {
		var req job.StatusRequest
		if !decodeBody(w, r, &req, `{"status":"booting"}`) {
			return
		}
		j, err := s.Jobs.SetStatus(r.Context(), r.PathValue("id"), req.Status)
		s.jobAnswer(w, r, j, err)
	})
	mux.HandleFunc("GET /v1/jobs/{id}/log", s.jobLog)
	mux.HandleFunc("GET /v1/jobs/{id}/artifacts", func(w http.ResponseWriter, r *http.Request) {
		as, err := s.Jobs.Artifacts(r.Context(), r.PathValue("id"))
		if err != nil {
			s.jobFail(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, job.ArtifactsResponse{Artifacts: as})
	})
	mux.HandleFunc("GET /v1/jobs/{id}/artifacts/{name...}", s.downloadArtifact)
}

func (s *Server) registerJob(w http.ResponseWriter, r *http.Request) {
	var req job.RegisterRequest
	if !decodeBody(w, r, &req, `{"repo":"https://...","ref":"main","task":"make test"}`) {
		return
	}
	reg, err := s.Jobs.Register(r.Context(), req)
	if err != nil {
		s.jobFail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, reg)
}

// getJob answers one job, at once or, with ?wait, as a long poll.
func (s *Server) getJob(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if !q.Has("wait") {
		j, err := s.Jobs.Get(r.Context(), r.PathValue("id"))
		s.jobAnswer(w, r, j, err)
		return
	}
	hold, err := time.ParseDuration(q.Get("wait"))
	if err != nil || hold < 0 {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("wait %q must be a Go duration such as 30s", q.Get("wait")))
		return
	}
	since := job.Status(q.Get("status"))
	if since != "" && !since.Valid() {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("status %q is not a job status (%v)", since, job.Statuses()))
		return
	}
	hold = min(hold, job.MaxLongPoll)
	j, err := s.Jobs.Watch(r.Context(), r.PathValue("id"), since, hold)
	if err == nil {
		w.Header().Set(job.HeaderWait, hold.String())
	}
	s.jobAnswer(w, r, j, err)
}

func (s *Server) jobLog(w http.ResponseWriter, r *http.Request) {
	var offset int64
	if v := r.URL.Query().Get("offset"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("offset %q must be a byte offset, 0 or more", v))
			return
		}
		offset = n
	}
	data, next, complete, err := s.Jobs.ReadLog(r.Context(), r.PathValue("id"), offset, MaxLogRead)
	if err != nil {
		s.jobFail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set(job.HeaderLogOffset, strconv.FormatInt(next, 10))
	w.Header().Set(job.HeaderLogComplete, strconv.FormatBool(complete))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(data)
}

func (s *Server) downloadArtifact(w http.ResponseWriter, r *http.Request) {
	f, a, err := s.Jobs.OpenArtifact(r.Context(), r.PathValue("id"), r.PathValue("name"))
	if err != nil {
		s.jobFail(w, r, err)
		return
	}
	defer f.Close()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(a.Size, 10))
	w.Header().Set(job.HeaderChecksum, a.SHA256)
	w.WriteHeader(http.StatusOK)
	if _, err := io.Copy(w, f); err != nil {
		s.log().Warn("artifact download broke off", "path", r.URL.Path, "err", err)
	}
}

func (s *Server) jobAnswer(w http.ResponseWriter, r *http.Request, j job.Job, err error) {
	if err != nil {
		s.jobFail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, j)
}

// jobFail answers a job error: 400 bad input, 404 unknown job or artifact,
// 409 a status change not allowed, else as StatusOf says.
func (s *Server) jobFail(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, job.ErrInvalid):
		writeError(w, http.StatusBadRequest, err.Error())
	case errors.Is(err, job.ErrNotFound):
		writeError(w, http.StatusNotFound, err.Error())
	case errors.Is(err, job.ErrTransition):
		writeError(w, http.StatusConflict, err.Error())
	default:
		s.fail(w, r, err)
	}
}

// decodeBody decodes a JSON body into v, answering 400 with an example when
// it cannot.
func decodeBody(w http.ResponseWriter, r *http.Request, v any, example string) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxRequestBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, "body must be JSON like "+example+": "+err.Error())
		return false
	}
	return true
}
