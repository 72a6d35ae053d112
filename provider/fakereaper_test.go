package provider

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentlab/terraform-provider-agentlab/internal/job"
)

// fakeReaper is an httptest stand-in for the reaper's control API: it keeps
// jobs in memory and ends a job as its outcome says once the provider
// reports the sandbox booting. It checks the bearer token.
type fakeReaper struct {
	srv   *httptest.Server
	token string

	mu   sync.Mutex
	jobs map[string]*job.Job
	// sandboxes records each job's SandboxRequest.
	sandboxes map[string]job.SandboxRequest
	// files are the artifacts' bytes by job and name.
	files map[string]map[string][]byte
	// outcome decides how a job with a repo ends once booting; a repo
	// without one stays booting until finish is called.
	outcome map[string]fakeOutcome
	// corrupt makes downloads send other bytes than announced.
	corrupt bool
	// cancelled lists the jobs DELETE was called for, cancelWhy the
	// reason each was given.
	cancelled []string
	cancelWhy map[string]string
	// downloads counts artifact downloads.
	downloads int
	seq       int
}

// fakeOutcome is how a fake job ends.
type fakeOutcome struct {
	status job.Status
	exit   int
	files  map[string]string
}

func newFakeReaper(t *testing.T) *fakeReaper {
	f := &fakeReaper{token: "reaper-secret", jobs: map[string]*job.Job{}, sandboxes: map[string]job.SandboxRequest{},
		files: map[string]map[string][]byte{}, outcome: map[string]fakeOutcome{}, cancelWhy: map[string]string{}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeReaper) fail(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

func (f *fakeReaper) reply(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func (f *fakeReaper) serve(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer "+f.token {
		f.fail(w, http.StatusUnauthorized, "bad token")
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	rest, ok := strings.CutPrefix(r.URL.Path, "/v1/jobs")
	if !ok {
		f.fail(w, http.StatusNotFound, "no route")
		return
	}
	if rest == "" && r.Method == http.MethodPost {
		var req job.RegisterRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			f.fail(w, http.StatusBadRequest, err.Error())
			return
		}
		req, _, err := req.Normalize()
		if err != nil {
			f.fail(w, http.StatusBadRequest, err.Error())
			return
		}
		j := f.newJobLocked(req)
		f.reply(w, http.StatusCreated, job.Registered{Job: *j, BootstrapToken: "bootstrap-" + j.ID})
		return
	}
	id, sub, _ := strings.Cut(strings.TrimPrefix(rest, "/"), "/")
	j := f.jobs[id]
	if j == nil {
		f.fail(w, http.StatusNotFound, "job "+id+" not found")
		return
	}
	switch {
	case r.Method == http.MethodGet && sub == "":
		f.reply(w, http.StatusOK, j)
	case r.Method == http.MethodPut && sub == "sandbox":
		var sb job.SandboxRequest
		_ = json.NewDecoder(r.Body).Decode(&sb)
		f.sandboxes[id] = sb
		j.Node, j.VMID = sb.Node, sb.VMID
		f.reply(w, http.StatusOK, j)
	case r.Method == http.MethodPost && sub == "status":
		var sr job.StatusRequest
		_ = json.NewDecoder(r.Body).Decode(&sr)
		if err := job.Transition(j.Status, sr.Status); err != nil {
			f.fail(w, http.StatusConflict, err.Error())
			return
		}
		j.Status = sr.Status
		if sr.Status == job.StatusBooting {
			if o, ok := f.outcome[j.Repo]; ok {
				f.finishLocked(j, o)
			}
		}
		f.reply(w, http.StatusOK, j)
	case r.Method == http.MethodDelete && sub == "":
		f.cancelled = append(f.cancelled, id)
		why := r.URL.Query().Get("reason")
		f.cancelWhy[id] = why
		if !j.Status.Ended() {
			j.Status, j.Reason = job.StatusFailed, "cancelled"
			if why != "" {
				j.Reason += ": " + why
			}
		}
		f.reply(w, http.StatusOK, j)
	case r.Method == http.MethodGet && sub == "artifacts":
		f.reply(w, http.StatusOK, job.ArtifactsResponse{Artifacts: j.Artifacts})
	case r.Method == http.MethodGet && strings.HasPrefix(sub, "artifacts/"):
		name := strings.TrimPrefix(sub, "artifacts/")
		b, ok := f.files[id][name]
		if !ok {
			f.fail(w, http.StatusNotFound, "no artifact "+name)
			return
		}
		f.downloads++
		sum := sha256.Sum256(b)
		w.Header().Set(job.HeaderChecksum, hex.EncodeToString(sum[:]))
		if f.corrupt {
			b = append([]byte("X"), b[1:]...)
		}
		_, _ = w.Write(b)
	default:
		f.fail(w, http.StatusNotFound, "no route")
	}
}

// finishLocked ends j with outcome o.
func (f *fakeReaper) finishLocked(j *job.Job, o fakeOutcome) {
	j.Status = job.StatusRunning
	j.StartedAt = j.CreatedAt.Add(time.Minute)
	code := o.exit
	j.ExitCode = &code
	j.Status = o.status
	j.FinishedAt = j.CreatedAt.Add(2 * time.Minute)
	j.LogTail = fmt.Sprintf("running %s\nexit %d\n", j.Task, code)
	f.files[j.ID] = map[string][]byte{}
	j.Artifacts = []job.Artifact{}
	names := make([]string, 0, len(o.files))
	for name := range o.files {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		content := o.files[name]
		sum := sha256.Sum256([]byte(content))
		j.Artifacts = append(j.Artifacts, job.Artifact{Name: name, Size: int64(len(content)), SHA256: hex.EncodeToString(sum[:])})
		f.files[j.ID][name] = []byte(content)
	}
}

// finish ends the job of repo with o (for wait = false).
func (f *fakeReaper) finish(repo string, o fakeOutcome) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, j := range f.jobs {
		if j.Repo == repo && !j.Status.Ended() {
			f.finishLocked(j, o)
		}
	}
}

// providerBlock is the reaper part of a provider block.
func (f *fakeReaper) providerBlock() string {
	return fmt.Sprintf("  reaper_url   = %q\n  reaper_token = %q\n", f.srv.URL, f.token)
}

// addJob registers a job as the provider would and ends it with o, as if a
// Terraform run elsewhere had made it; it returns the job's ID.
func (f *fakeReaper) addJob(t *testing.T, req job.RegisterRequest, o fakeOutcome) string {
	t.Helper()
	req, _, err := req.Normalize()
	if err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	j := f.newJobLocked(req)
	f.finishLocked(j, o)
	return j.ID
}

// newJobLocked records a job registered with req (normalized), status
// requested.
func (f *fakeReaper) newJobLocked(req job.RegisterRequest) *job.Job {
	f.seq++
	j := &job.Job{ID: fmt.Sprintf("job-%016x", f.seq), Repo: req.Repo, Ref: req.Ref, Task: req.Task,
		Timeout: req.Timeout, ArtifactsGlobs: req.Artifacts, EnvKeys: job.EnvKeys(req.Env),
		KeepSandbox: req.KeepSandbox, Owner: req.Owner, Status: job.StatusRequested,
		CreatedAt: time.Date(2030, 1, 2, 3, 0, 0, 0, time.UTC), Artifacts: []job.Artifact{}}
	f.jobs[j.ID] = j
	return j
}
