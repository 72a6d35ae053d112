package api_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentlab/terraform-provider-agentlab/internal/clock"
	"github.com/agentlab/terraform-provider-agentlab/internal/job"
	"github.com/agentlab/terraform-provider-agentlab/reaper/api"
	"github.com/agentlab/terraform-provider-agentlab/reaper/jobs"
	"github.com/agentlab/terraform-provider-agentlab/reaper/sqlite"
)

func newJobAPI(t *testing.T) (*api.Client, *jobs.Service, string) {
	t.Helper()
	dir := t.TempDir()
	db := sqlite.New(filepath.Join(dir, "reaper.db"))
	if err := db.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	svc, err := jobs.New(db, nil, jobs.Options{Dir: filepath.Join(dir, "artifacts")})
	if err != nil {
		t.Fatal(err)
	}
	s := &api.Server{Store: db, Jobs: svc}
	srv := httptest.NewServer(s.TokenHandler("secret"))
	t.Cleanup(srv.Close)
	return &api.Client{BaseURL: srv.URL, Token: "secret", HTTP: srv.Client()}, svc, filepath.Join(dir, "artifacts")
}

func TestJobAPI(t *testing.T) {
	c, svc, dir := newJobAPI(t)
	ctx := context.Background()

	_, err := c.RegisterJob(ctx, job.RegisterRequest{Repo: "https://x/r.git", Ref: "main", Task: "true", Timeout: "forever"})
	if !errors.Is(err, job.ErrInvalid) || !strings.Contains(err.Error(), "timeout") {
		t.Errorf("bad timeout: %v; want a 400 naming timeout", err)
	}
	reg, err := c.RegisterJob(ctx, job.RegisterRequest{Repo: "https://x/r.git", Ref: "main", Task: "make", Artifacts: []string{"out/*"},
		Env: map[string]string{"SECRET_LOOKING": "v"}})
	if err != nil {
		t.Fatal(err)
	}
	id := reg.Job.ID
	if reg.BootstrapToken == "" || reg.Job.Status != job.StatusRequested || reg.Job.Timeout != "30m0s" ||
		len(reg.Job.EnvKeys) != 1 || reg.Job.ExitCode != nil {
		t.Errorf("registered = %+v", reg)
	}
	if _, err := c.Job(ctx, "job-0000000000000000"); !errors.Is(err, job.ErrNotFound) {
		t.Errorf("unknown job: %v; want ErrNotFound", err)
	}
	if _, err := c.Job(ctx, "../../etc"); !errors.Is(err, job.ErrNotFound) {
		t.Errorf("malformed id: %v; want ErrNotFound", err)
	}
	j, err := c.SetJobSandbox(ctx, id, job.SandboxRequest{Node: "pve", VMID: 123})
	if err != nil || j.VMID != 123 || j.Node != "pve" {
		t.Fatalf("SetJobSandbox = %+v, %v", j, err)
	}
	if j, err = c.SetJobStatus(ctx, id, job.StatusBooting); err != nil || j.Status != job.StatusBooting {
		t.Fatalf("SetJobStatus = %s, %v", j.Status, err)
	}
	if _, err := c.SetJobStatus(ctx, id, job.StatusSucceeded); !errors.Is(err, job.ErrInvalid) {
		t.Errorf("provider setting succeeded: %v; want ErrInvalid", err)
	}

	// The runner's side, through the registry.
	spec, err := svc.Spec(ctx, reg.BootstrapToken)
	if err != nil {
		t.Fatal(err)
	}
	svc.Started(ctx, spec.ID)
	svc.AppendLog(ctx, id, []byte("line one\n"))
	chunk, err := c.JobLog(ctx, id, 0)
	if err != nil || string(chunk.Data) != "line one\n" || chunk.Next != 9 || chunk.Complete {
		t.Errorf("JobLog(0) = %q %d %v, %v", chunk.Data, chunk.Next, chunk.Complete, err)
	}
	svc.AppendLog(ctx, id, []byte("line two\n"))
	content := bytes.Repeat([]byte("artifact "), 1000)
	if _, err := svc.Upload(ctx, id, "out/r.bin", bytes.NewReader(content), int64(len(content))); err != nil {
		t.Fatal(err)
	}
	svc.Finished(ctx, id, job.Finished{ExitCode: 0})
	chunk, err = c.JobLog(ctx, id, chunk.Next)
	if err != nil || string(chunk.Data) != "line two\n" || chunk.Next != 18 || !chunk.Complete {
		t.Errorf("JobLog(9) = %q %d %v, %v; want line two, complete", chunk.Data, chunk.Next, chunk.Complete, err)
	}

	js, err := c.Jobs(ctx)
	if err != nil || len(js) != 1 || js[0].Status != job.StatusSucceeded || len(js[0].Artifacts) != 1 {
		t.Errorf("Jobs = %+v, %v", js, err)
	}
	as, err := c.JobArtifacts(ctx, id)
	if err != nil || len(as) != 1 || as[0].Name != "out/r.bin" || as[0].Size != int64(len(content)) {
		t.Fatalf("JobArtifacts = %+v, %v", as, err)
	}
	var buf bytes.Buffer
	a, err := c.DownloadArtifact(ctx, id, "out/r.bin", &buf)
	if err != nil || !bytes.Equal(buf.Bytes(), content) || a.SHA256 != as[0].SHA256 {
		t.Errorf("DownloadArtifact = %+v, %v", a, err)
	}
	if _, err := c.DownloadArtifact(ctx, id, "out/none", &buf); !errors.Is(err, job.ErrNotFound) {
		t.Errorf("unknown artifact: %v; want ErrNotFound", err)
	}
	// Bytes changed on disk behind the reaper's back: the client notices.
	files, _ := filepath.Glob(filepath.Join(dir, id, "a-*"))
	if len(files) != 1 {
		t.Fatalf("artifact files = %v", files)
	}
	tampered := bytes.Clone(content)
	tampered[0] = 'A'
	os.WriteFile(files[0], tampered, 0o600)
	if _, err := c.DownloadArtifact(ctx, id, "out/r.bin", &buf); !errors.Is(err, api.ErrChecksum) {
		t.Errorf("tampered artifact: %v; want ErrChecksum", err)
	}

	// Cancelling an ended job changes nothing; a running one fails, with
	// the reason the canceller gave, if any; a reason that is not one
	// line of text is refused and cancels nothing.
	if j, err := c.CancelJob(ctx, id, ""); err != nil || j.Status != job.StatusSucceeded {
		t.Errorf("cancel ended = %s, %v", j.Status, err)
	}
	for _, tt := range []struct {
		why, reason string
		wantErr     error
	}{
		{"", "cancelled", nil},
		{"its sandbox could not be made: Template not found", "cancelled: its sandbox could not be made: Template not found", nil},
		{"two\nlines", "", job.ErrInvalid},
		{strings.Repeat("x", job.MaxCancelWhyBytes+1), "", job.ErrInvalid},
	} {
		reg2, _ := c.RegisterJob(ctx, job.RegisterRequest{Repo: "https://x/r.git", Ref: "main", Task: "make"})
		j, err := c.CancelJob(ctx, reg2.Job.ID, tt.why)
		if tt.wantErr != nil {
			if after, _ := c.Job(ctx, reg2.Job.ID); !errors.Is(err, tt.wantErr) || after.Status.Ended() {
				t.Errorf("cancel with reason %.20q = %v, job %s; want %v and the job running", tt.why, err, after.Status, tt.wantErr)
			}
			continue
		}
		if err != nil || j.Status != job.StatusFailed || j.Reason != tt.reason {
			t.Errorf("cancel with reason %q = %s %q, %v; want failed %q", tt.why, j.Status, j.Reason, err, tt.reason)
		}
	}
}

func TestNewClientTransport(t *testing.T) {
	for _, tt := range []struct {
		url, token string
		ok         bool
	}{
		{"http://127.0.0.1:8847", "t", true},
		{"http://localhost:8847", "t", true},
		{"http://[::1]:8847", "t", true},
		{"http://10.0.0.5:8847", "t", false},
		{"http://reaper.example:8847", "t", false},
		{"http://reaper.example:8847", "", true},
		{"https://reaper.example:8847", "t", true},
		{"ftp://reaper", "t", false},
	} {
		_, err := api.NewClient(api.ClientOptions{URL: tt.url, Token: tt.token})
		if (err == nil) != tt.ok {
			t.Errorf("NewClient(%s, token %q) = %v; want ok %v", tt.url, tt.token, err, tt.ok)
		}
		if !tt.ok && tt.token != "" && strings.HasPrefix(tt.url, "http:") && !errors.Is(err, api.ErrPlainHTTP) {
			t.Errorf("NewClient(%s) = %v; want ErrPlainHTTP", tt.url, err)
		}
	}
}

// TestTLS serves the API with a pair ServerTLS generates, and checks that a
// client trusts it by CA file or pinned fingerprint, and only then.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	cfg, fp, err := api.ServerTLS("", "", dir, "10.1.2.3:8847")
	if err != nil {
		t.Fatal(err)
	}
	// Generated once: a restart serves the same certificate.
	if _, fp2, err := api.ServerTLS("", "", dir, "10.1.2.3:8847"); err != nil || fp2 != fp {
		t.Errorf("second ServerTLS fingerprint %s, %v; want the same %s", fp2, err, fp)
	}
	if fi, err := os.Stat(filepath.Join(dir, "control-tls.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file: %v, mode %v; want 0600", err, fi.Mode().Perm())
	}
	srv := httptest.NewUnstartedServer((&api.Server{Status: func() api.Status { return api.Status{Version: "tls"} }}).TokenHandler("tok"))
	srv.TLS = cfg
	srv.StartTLS()
	defer srv.Close()
	url := strings.Replace(srv.URL, "127.0.0.1", "localhost", 1)

	certPEM, _ := os.ReadFile(filepath.Join(dir, "control-tls.crt"))
	block, _ := pem.Decode(certPEM)
	cert, _ := x509.ParseCertificate(block.Bytes)
	if api.Fingerprint(cert.Raw) != fp {
		t.Fatal("fingerprint is not the certificate's")
	}
	colons := strings.ToUpper(fp[:2]) + ":" + fp[2:]
	for _, tt := range []struct {
		name string
		opts api.ClientOptions
		ok   bool
	}{
		{"pinned", api.ClientOptions{URL: url, Token: "tok", Fingerprint: fp}, true},
		{"pinned with colons and case", api.ClientOptions{URL: url, Token: "tok", Fingerprint: "SHA256:" + colons}, true},
		{"wrong pin", api.ClientOptions{URL: url, Token: "tok", Fingerprint: strings.Repeat("ab", 32)}, false},
		{"CA file", api.ClientOptions{URL: url, Token: "tok", CACert: certPEM}, true},
		{"no trust", api.ClientOptions{URL: url, Token: "tok"}, false},
	} {
		c, err := api.NewClient(tt.opts)
		if err != nil {
			t.Errorf("%s: NewClient: %v", tt.name, err)
			continue
		}
		st, err := c.Status(context.Background())
		if (err == nil) != tt.ok || (tt.ok && st.Version != "tls") {
			t.Errorf("%s: Status = %+v, %v; want ok %v", tt.name, st, err, tt.ok)
		}
	}
	// Plain HTTP to the TLS port fails rather than leaking the token.
	resp, err := http.Get(strings.Replace(url, "https:", "http:", 1) + "/v1/status")
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Error("plain HTTP to the TLS listener answered 200")
		}
	}
}

// TestJobLongPoll: GET /v1/jobs/{id}?wait=D&status=S holds the answer
// until the status changes or D passes on the reaper's clock, says so in
// X-Job-Wait, and refuses a bad wait or status.
func TestJobLongPoll(t *testing.T) {
	dir := t.TempDir()
	db := sqlite.New(filepath.Join(dir, "reaper.db"))
	if err := db.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	clk := clock.NewFake(time.Date(2030, 1, 2, 3, 0, 0, 0, time.UTC))
	svc, err := jobs.New(db, nil, jobs.Options{Dir: filepath.Join(dir, "artifacts"), Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer((&api.Server{Store: db, Jobs: svc}).TokenHandler("secret"))
	t.Cleanup(srv.Close)
	c := &api.Client{BaseURL: srv.URL, Token: "secret", HTTP: srv.Client()}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	reg, err := c.RegisterJob(ctx, job.RegisterRequest{Repo: "https://x/r.git", Ref: "main", Task: "true"})
	if err != nil {
		t.Fatal(err)
	}
	id := reg.Job.ID

	type result struct {
		j    job.Job
		held bool
		err  error
	}
	watch := func(since job.Status, hold time.Duration) chan result {
		ch := make(chan result, 1)
		go func() {
			j, held, err := c.WatchJob(ctx, id, since, hold)
			ch <- result{j, held, err}
		}()
		return ch
	}
	get := func(ch chan result) result {
		t.Helper()
		select {
		case r := <-ch:
			return r
		case <-ctx.Done():
			t.Fatal("the long poll never answered")
			return result{}
		}
	}

	// Without a status to leave, the answer comes at once.
	if r := get(watch("", 30*time.Second)); r.err != nil || r.j.Status != job.StatusRequested || !r.held {
		t.Errorf("watch since \"\" = %v %v %v; want requested, held", r.j.Status, r.held, r.err)
	}
	// A change ends the hold.
	ch := watch(job.StatusRequested, 30*time.Second)
	if err := clk.BlockUntil(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := c.SetJobStatus(ctx, id, job.StatusProvisioning); err != nil {
		t.Fatal(err)
	}
	if r := get(ch); r.err != nil || r.j.Status != job.StatusProvisioning || !r.held {
		t.Errorf("watch across a change = %v %v %v; want provisioning, held", r.j.Status, r.held, r.err)
	}
	if n := clk.Pending(); n != 0 {
		t.Errorf("%d timers left after the change; want the hold's timer stopped", n)
	}
	// Without a change the hold runs out on the reaper's clock (capped at
	// job.MaxLongPoll).
	ch = watch(job.StatusProvisioning, time.Hour)
	if err := clk.BlockUntilDue(ctx, 1, job.MaxLongPoll); err != nil {
		t.Fatal(err)
	}
	clk.Advance(job.MaxLongPoll - time.Second)
	select {
	case r := <-ch:
		t.Fatalf("the long poll answered %v before its hold ran out", r)
	default:
	}
	clk.Advance(time.Second)
	if r := get(ch); r.err != nil || r.j.Status != job.StatusProvisioning || !r.held {
		t.Errorf("watch after the hold = %v %v %v; want provisioning, held", r.j.Status, r.held, r.err)
	}
	// An unknown job is not found at once.
	if _, _, err := c.WatchJob(ctx, "job-0000000000000000", job.StatusRunning, time.Minute); !errors.Is(err, job.ErrNotFound) {
		t.Errorf("watch of an unknown job: %v; want ErrNotFound", err)
	}
	for _, q := range []string{"wait=soon", "wait=-1s", "wait=1s&status=sleeping"} {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/v1/jobs/"+id+"?"+q, nil)
		req.Header.Set("Authorization", "Bearer secret")
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("GET ?%s = %d; want 400", q, resp.StatusCode)
		}
	}
}

// TestJobLongPollStops: StopWatches (the daemon shutting down) answers a
// hold under way at once, and later long polls do not hold.
func TestJobLongPollStops(t *testing.T) {
	c, svc, _ := newJobAPI(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	reg, err := c.RegisterJob(ctx, job.RegisterRequest{Repo: "https://x/r.git", Ref: "main", Task: "true"})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, _, err := c.WatchJob(ctx, reg.Job.ID, job.StatusRequested, job.MaxLongPoll)
		done <- err
	}()
	// The hold under way, or one that starts after the stop, ends at once;
	// the test's deadline (20 s) is well under the hold (1 m).
	svc.StopWatches()
	if err := <-done; err != nil {
		t.Fatalf("watch across StopWatches: %v", err)
	}
	j, _, err := c.WatchJob(ctx, reg.Job.ID, job.StatusRequested, job.MaxLongPoll)
	if err != nil || j.Status != job.StatusRequested {
		t.Fatalf("watch after StopWatches = %v, %v; want requested at once", j.Status, err)
	}
}
