package guest_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentlab/terraform-provider-agentlab/internal/job"
	"github.com/agentlab/terraform-provider-agentlab/reaper/guest"
	"github.com/agentlab/terraform-provider-agentlab/reaper/jobs"
	"github.com/agentlab/terraform-provider-agentlab/reaper/sqlite"
)

type jobEnv struct {
	svc *jobs.Service
	srv *httptest.Server
	dir string
}

func newJobEnv(t *testing.T, maxBytes int64) *jobEnv {
	t.Helper()
	dir := t.TempDir()
	db := sqlite.New(filepath.Join(dir, "reaper.db"))
	if err := db.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	arts := filepath.Join(dir, "artifacts")
	svc, err := jobs.New(db, nil, jobs.Options{Dir: arts, MaxBytes: maxBytes})
	if err != nil {
		t.Fatal(err)
	}
	g := guest.New(nil, guest.Limits{PerAddress: 1000, AddressBurst: 1000}, nil, nil)
	g.SetJobs(svc)
	srv := httptest.NewServer(g)
	t.Cleanup(srv.Close)
	return &jobEnv{svc: svc, srv: srv, dir: arts}
}

// newJob registers a job and fetches its spec; it returns the job ID, the
// bootstrap token and the job token.
func (e *jobEnv) newJob(t *testing.T) (string, string, string) {
	t.Helper()
	reg, err := e.svc.Register(context.Background(), job.RegisterRequest{Repo: "file:///r", Ref: "main", Task: "true"})
	if err != nil {
		t.Fatal(err)
	}
	code, body := e.do(t, http.MethodGet, "/v1/job/spec", reg.BootstrapToken, "")
	var spec job.Spec
	if code != 200 || json.Unmarshal([]byte(body), &spec) != nil || spec.Token == "" {
		t.Fatalf("spec = %d %s", code, body)
	}
	return reg.Job.ID, reg.BootstrapToken, spec.Token
}

// do sends a request with the path exactly as given (no cleaning).
func (e *jobEnv) do(t *testing.T, method, rawPath, token, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+"/", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.URL.Opaque = "//" + req.URL.Host + rawPath // sent as is
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// files lists every file under the artifacts directory.
func (e *jobEnv) files(t *testing.T) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(e.dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(e.dir, p)
			out = append(out, rel)
		}
		return nil
	})
	return out
}

func TestJobBadInput(t *testing.T) {
	e := newJobEnv(t, 1024)
	idA, bootA, tokA := e.newJob(t)
	idB, _, tokB := e.newJob(t)
	if code, body := e.do(t, http.MethodPut, "/v1/job/artifacts/out/ok.txt", tokA, "fine"); code != 201 {
		t.Fatalf("good upload = %d %s", code, body)
	}
	tests := []struct {
		name         string
		method, path string
		token, body  string
		status       int
		contains     string
	}{
		{"traversal", "PUT", "/v1/job/artifacts/../../etc/x", tokA, "x", 400, ".."},
		{"encoded traversal", "PUT", "/v1/job/artifacts/%2e%2e/%2e%2e/x", tokA, "x", 400, ".."},
		{"encoded slash traversal", "PUT", "/v1/job/artifacts/out%2f..%2f..%2fx", tokA, "x", 400, ".."},
		{"absolute", "PUT", "/v1/job/artifacts//etc/passwd", tokA, "x", 400, "absolute"},
		{"encoded absolute", "PUT", "/v1/job/artifacts/%2Fetc%2Fpasswd", tokA, "x", 400, "absolute"},
		{"NUL byte", "PUT", "/v1/job/artifacts/a%00b", tokA, "x", 400, "not allowed"},
		{"newline", "PUT", "/v1/job/artifacts/a%0Ab", tokA, "x", 400, "not allowed"},
		{"non-ASCII", "PUT", "/v1/job/artifacts/caf%C3%A9", tokA, "x", 400, "not allowed"},
		{"bad escape", "PUT", "/v1/job/artifacts/a%zz", tokA, "x", 400, "Bad Request"}, // refused by net/http itself
		{"empty name", "PUT", "/v1/job/artifacts/", tokA, "x", 400, "empty"},
		{"oversize", "PUT", "/v1/job/artifacts/big", tokA, strings.Repeat("x", 1025), 413, "max_bytes"},
		{"no token", "PUT", "/v1/job/artifacts/x", "", "x", 401, "job token"},
		{"wrong token", "PUT", "/v1/job/artifacts/x", "0123456789abcdef0123456789abcdef", "x", 401, "unknown"},
		{"bootstrap as job token", "POST", "/v1/job/heartbeat", bootA, "", 401, "unknown"},
		{"replayed bootstrap", "GET", "/v1/job/spec", bootA, "", 401, "already used"},
		{"unknown bootstrap", "GET", "/v1/job/spec", "feedfacefeedfacefeedface", "", 401, "unknown"},
		{"bad spec format", "GET", "/v1/job/spec?format=xml", bootA, "", 400, "format"},
		{"wrong method", "GET", "/v1/job/started", tokA, "", 405, "POST"},
		{"unknown endpoint", "POST", "/v1/job/explode", tokA, "", 404, "no such"},
		{"bad finished body", "POST", "/v1/job/finished", tokA, `{"exit_code":"zero"}`, 400, "JSON"},
		{"log chunk too big", "POST", "/v1/job/log", tokA, strings.Repeat("x", guest.MaxLogChunkBytes+1), 413, "1 MiB"},
	}
	for _, tt := range tests {
		code, body := e.do(t, tt.method, tt.path, tt.token, tt.body)
		if code != tt.status || !strings.Contains(body, tt.contains) {
			t.Errorf("%s: %s %s = %d %s; want %d containing %q", tt.name, tt.method, tt.path, code, strings.TrimSpace(body), tt.status, tt.contains)
		}
	}

	// Announced oversize: refused before a byte is read.
	req, _ := http.NewRequest(http.MethodPut, e.srv.URL+"/v1/job/artifacts/huge", io.LimitReader(zeros{}, 1<<30))
	req.ContentLength = 1 << 30
	req.Header.Set("Authorization", "Bearer "+tokA)
	if resp, err := e.srv.Client().Do(req); err == nil {
		resp.Body.Close()
		if resp.StatusCode != 413 {
			t.Errorf("announced 1 GiB upload = %d; want 413", resp.StatusCode)
		}
	} // an error is fine too: the server closed the connection mid-body

	// Truncated upload: Content-Length promises more than the body holds.
	conn, err := net.Dial("tcp", e.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "PUT /v1/job/artifacts/cut HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Length: 1000\r\n\r\n%s", tokA, strings.Repeat("y", 100))
	conn.(*net.TCPConn).CloseWrite()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	conn.Close()
	if resp.StatusCode != 400 {
		t.Errorf("truncated upload = %d; want 400", resp.StatusCode)
	}

	// A token works for its own job only: B's upload lands in B.
	if code, _ := e.do(t, http.MethodPut, "/v1/job/artifacts/b.txt", tokB, "bee"); code != 201 {
		t.Errorf("upload with B's token = %d", code)
	}
	// After A ends, A's token stops working, while B's still works.
	if code, body := e.do(t, http.MethodPost, "/v1/job/finished", tokA, `{"exit_code":0,"timed_out":false}`); code != 200 || !strings.Contains(body, "succeeded") {
		t.Errorf("finished = %d %s", code, body)
	}
	for _, p := range []string{"/v1/job/heartbeat", "/v1/job/finished", "/v1/job/log"} {
		if code, _ := e.do(t, http.MethodPost, p, tokA, `{"exit_code":1}`); code != 401 {
			t.Errorf("%s with an ended job's token = %d; want 401", p, code)
		}
	}
	if code, _ := e.do(t, http.MethodPost, "/v1/job/heartbeat", tokB, ""); code != 200 {
		t.Errorf("heartbeat with B's token = %d; want 200", code)
	}
	// A cancelled job's token is refused too; its spec cannot be fetched.
	reg, _ := e.svc.Register(context.Background(), job.RegisterRequest{Repo: "file:///r", Ref: "main", Task: "true"})
	e.svc.Cancel(context.Background(), reg.Job.ID, "")
	if code, body := e.do(t, http.MethodGet, "/v1/job/spec", reg.BootstrapToken, ""); code != 409 {
		t.Errorf("spec of a cancelled job = %d %s; want 409", code, body)
	}

	as, _ := e.svc.Artifacts(context.Background(), idA)
	bs, _ := e.svc.Artifacts(context.Background(), idB)
	if len(as) != 1 || as[0].Name != "out/ok.txt" || len(bs) != 1 || bs[0].Name != "b.txt" {
		t.Errorf("artifacts A %+v, B %+v; want out/ok.txt in A and b.txt in B only", as, bs)
	}
	if files := e.files(t); len(files) != 2 {
		t.Errorf("files on disk = %v; want exactly the two good artifacts (nothing partial, nothing outside)", files)
	}
	for _, f := range e.files(t) {
		if !strings.HasPrefix(f, idA+"/") && !strings.HasPrefix(f, idB+"/") {
			t.Errorf("file %s outside the jobs' directories", f)
		}
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
