package guest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentlab/terraform-provider-agentlab/internal/job"
	"github.com/agentlab/terraform-provider-agentlab/reaper"
	"github.com/agentlab/terraform-provider-agentlab/reaper/jobs"
	"github.com/agentlab/terraform-provider-agentlab/reaper/sqlite"
)

// blockingSeeds records the contacts it is told of and holds each call
// until release is closed, like a slow Proxmox.
type blockingSeeds struct {
	release chan struct{}
	called  chan string
	mu      sync.Mutex
	calls   []string
}

func newBlockingSeeds() *blockingSeeds {
	return &blockingSeeds{release: make(chan struct{}), called: make(chan string, 10)}
}

func (b *blockingSeeds) record(c string) {
	b.mu.Lock()
	b.calls = append(b.calls, c)
	b.mu.Unlock()
	b.called <- c
	<-b.release
}

func (b *blockingSeeds) FinishSeeds(ctx context.Context, vmid int) {
	b.record(fmt.Sprintf("finish %d", vmid))
}

func (b *blockingSeeds) Booted(ctx context.Context, token string) (int, string, error) {
	switch token {
	case "good":
		return 101, "fresh-token-0123456789", nil
	case "gone":
		return 0, "", fmt.Errorf("vm 101: %w", reaper.ErrNotFound)
	case "broken":
		return 0, "", errors.New("pve: 596 Broken pipe")
	}
	return 0, "", reaper.ErrUnauthorized
}

func (b *blockingSeeds) JobContact(ctx context.Context, node string, vmid int, jobID string) error {
	b.record(fmt.Sprintf("job %s %s/%d", jobID, node, vmid))
	return nil
}

func (b *blockingSeeds) all() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.calls)
}

// call sends a request and reads the whole answer, which must arrive while
// the seed retirement it starts is still blocked.
func call(t *testing.T, method, url, token string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, method, url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	// One connection per call, as curl in the guest makes: a kept-alive
	// connection would carry the next request only once the handler ends.
	req.Close = true
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the answer: %v (did the listener wait for the seed retirement?)", method, url, err)
	}
	return resp.StatusCode, string(body)
}

// TestContactRetiresSeedAfterAnswering: an accepted heartbeat (also one
// capped by max_ttl), a boot report and a job runner's spec fetch tell
// Seeds of the guest's contact once the guest has its whole answer; refused
// heartbeats and boot reports do not.
func TestContactRetiresSeedAfterAnswering(t *testing.T) {
	db := sqlite.New(filepath.Join(t.TempDir(), "reaper.db"))
	if err := db.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	svc, err := jobs.New(db, nil, jobs.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	seeds := newBlockingSeeds()
	g := New(&fakeHB{}, Limits{PerToken: 100, TokenBurst: 100, PerAddress: 100, AddressBurst: 100}, nil, nil)
	g.SetJobs(svc)
	g.SetSeeds(seeds)
	srv := httptest.NewServer(g)

	for _, tc := range []struct {
		token  string
		status int
	}{{"good", 200}, {"capped", 409}} {
		if code, body := call(t, http.MethodPost, srv.URL+"/v1/heartbeat", tc.token); code != tc.status || !strings.Contains(body, `"vmid":101`) {
			t.Errorf("heartbeat %s = %d %s; want %d with the lease", tc.token, code, body, tc.status)
		}
		if got := <-seeds.called; got != "finish 101" {
			t.Errorf("after heartbeat %s, Seeds was told %q; want heartbeat 101", tc.token, got)
		}
	}
	for _, token := range []string{"expired", "gone", "broken", "nobody"} {
		call(t, http.MethodPost, srv.URL+"/v1/heartbeat", token)
	}
	wantBody := `{"vmid":101,"heartbeat_token":"fresh-token-0123456789"}`
	if code, body := call(t, http.MethodPost, srv.URL+"/v1/booted", "good"); code != 200 || strings.TrimSpace(body) != wantBody {
		t.Errorf("boot report = %d %s; want 200 %s", code, body, wantBody)
	}
	if got := <-seeds.called; got != "finish 101" {
		t.Errorf("after the boot report, Seeds was told %q; want finish 101", got)
	}
	for _, tc := range []struct {
		method, token string
		status        int
	}{
		{http.MethodPost, "nobody", http.StatusUnauthorized},
		{http.MethodPost, "gone", http.StatusNotFound},
		{http.MethodPost, "broken", http.StatusServiceUnavailable},
		{http.MethodGet, "good", http.StatusMethodNotAllowed},
	} {
		if code, body := call(t, tc.method, srv.URL+"/v1/booted", tc.token); code != tc.status {
			t.Errorf("%s /v1/booted with %q = %d %s; want %d", tc.method, tc.token, code, body, tc.status)
		}
	}

	reg, err := svc.Register(context.Background(), job.RegisterRequest{Repo: "file:///r", Ref: "main", Task: "true"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.SetSandbox(context.Background(), reg.Job.ID, job.SandboxRequest{Node: "pve", VMID: 120}); err != nil {
		t.Fatal(err)
	}
	if code, body := call(t, http.MethodGet, srv.URL+"/v1/job/spec?format=sh", reg.BootstrapToken); code != 200 || !strings.Contains(body, reg.Job.ID) {
		t.Errorf("spec = %d %s; want the job's script", code, body)
	}
	if got, want := <-seeds.called, "job "+reg.Job.ID+" pve/120"; got != want {
		t.Errorf("after the spec, Seeds was told %q; want %q", got, want)
	}
	// A replayed bootstrap token is no contact.
	if code, _ := call(t, http.MethodGet, srv.URL+"/v1/job/spec", reg.BootstrapToken); code != http.StatusUnauthorized {
		t.Errorf("replayed spec = %d; want 401", code)
	}
	close(seeds.release)
	srv.Close() // waits for every handler
	want := []string{"finish 101", "finish 101", "finish 101", "job " + reg.Job.ID + " pve/120"}
	if got := seeds.all(); !slices.Equal(got, want) {
		t.Errorf("contacts = %q; want %q", got, want)
	}

	// Without Seeds there are no boot reports.
	plain := httptest.NewServer(New(&fakeHB{}, Limits{}, nil, nil))
	defer plain.Close()
	if code, _ := call(t, http.MethodPost, plain.URL+"/v1/booted", "good"); code != http.StatusNotImplemented {
		t.Errorf("boot report without Seeds = %d; want 501", code)
	}
}
