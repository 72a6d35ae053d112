package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentlab/terraform-provider-agentlab/internal/lease"
	"github.com/agentlab/terraform-provider-agentlab/reaper"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

type fakeStore struct {
	leases []reaper.Lease
	events []reaper.Event
	filter reaper.EventFilter
}

func (f *fakeStore) Leases(ctx context.Context, all bool) ([]reaper.Lease, error) {
	var out []reaper.Lease
	for _, l := range f.leases {
		if all || l.State.Present() {
			out = append(out, l)
		}
	}
	return out, nil
}

func (f *fakeStore) Lease(ctx context.Context, vmid int) (reaper.Lease, error) {
	for _, l := range f.leases {
		if l.VMID == vmid {
			return l, nil
		}
	}
	return reaper.Lease{}, fmt.Errorf("vm %d: %w", vmid, reaper.ErrNotFound)
}

func (f *fakeStore) Events(ctx context.Context, flt reaper.EventFilter) ([]reaper.Event, error) {
	f.filter = flt
	return f.events, nil
}

type fakeRenewer struct {
	calls []string
	keeps []string
}

func (f *fakeRenewer) Keep(ctx context.Context, vmid int, keep bool, actor string) (reaper.Lease, error) {
	f.keeps = append(f.keeps, fmt.Sprintf("%d %v %s", vmid, keep, actor))
	return reaper.Lease{VMID: vmid, State: reaper.StateProtected}, nil
}

func (f *fakeRenewer) Renew(ctx context.Context, vmid int, d time.Duration, actor string) (reaper.Renewal, error) {
	f.calls = append(f.calls, fmt.Sprintf("%d %s %s", vmid, d, actor))
	l := reaper.Lease{VMID: vmid, State: reaper.StateActive, ExpiresAt: t0.Add(d), MaxExpiresAt: t0.Add(3 * time.Hour)}
	switch vmid {
	case 404:
		return reaper.Renewal{}, fmt.Errorf("vm 404: %w", reaper.ErrNotFound)
	case 409:
		return reaper.Renewal{}, fmt.Errorf("vm 409: %w: being destroyed", reaper.ErrConflict)
	}
	if d > 3*time.Hour {
		l.ExpiresAt = l.MaxExpiresAt
		return reaper.Renewal{Lease: l, Previous: t0, Capped: true}, &lease.PastMaxTTLError{Now: t0, TTL: d, MaxTTL: 3 * time.Hour,
			Requested: t0.Add(d), Limit: t0.Add(3 * time.Hour)}
	}
	return reaper.Renewal{Lease: l, Previous: t0}, nil
}

func newServer() (*Server, *fakeStore, *fakeRenewer) {
	st := &fakeStore{
		leases: []reaper.Lease{
			{VMID: 101, Node: "pve", Name: "a", State: reaper.StateActive, ExpiresAt: t0.Add(time.Hour)},
			{VMID: 102, Node: "pve", Name: "b", State: reaper.StateDestroyed},
		},
		events: []reaper.Event{{ID: 1, Time: t0, VMID: 101, Kind: reaper.KindObserve, Decision: reaper.DecisionTrack, Actor: "reaper"}},
	}
	rn := &fakeRenewer{}
	return &Server{Store: st, Renewer: rn, Keeper: rn, Status: func() Status { return Status{Version: "v9", Interval: "30s"} }}, st, rn
}

func TestUnixSocketRoundTrip(t *testing.T) {
	srv, st, rn := newServer()
	sock := filepath.Join(t.TempDir(), "run", "reaper.sock")
	ln, err := ListenUnix(sock)
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: srv.Handler()}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })

	unix := NewUnixClient(sock)
	if l, err := unix.Keep(context.Background(), 101, true); err != nil || l.State != reaper.StateProtected {
		t.Errorf("Keep over the socket = %+v, %v; want protected", l, err)
	}
	if _, err := unix.Keep(context.Background(), 101, false); err != nil {
		t.Errorf("keep --remove over the socket = %v", err)
	}
	if got, want := rn.keeps, []string{"101 true operator@unix", "101 false operator@unix"}; !slices.Equal(got, want) {
		t.Errorf("keeps = %v; want %v", got, want)
	}

	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o600 {
		t.Errorf("socket mode = %04o; want 0600", got)
	}
	if _, err := ListenUnix(sock); err == nil || !strings.Contains(err.Error(), "another agentlab-reaper") {
		t.Errorf("second ListenUnix = %v; want 'another agentlab-reaper is running'", err)
	}

	c := NewUnixClient(sock)
	ctx := context.Background()
	ls, err := c.Leases(ctx, false)
	if err != nil || len(ls) != 1 || ls[0].VMID != 101 || !ls[0].ExpiresAt.Equal(t0.Add(time.Hour)) {
		t.Errorf("Leases = %+v, %v; want [101 expiring %v]", ls, err, t0.Add(time.Hour))
	}
	if all, err := c.Leases(ctx, true); err != nil || len(all) != 2 {
		t.Errorf("Leases(all) = %d leases, %v; want 2", len(all), err)
	}
	ren, err := c.Renew(ctx, 101, 2*time.Hour)
	if err != nil || !ren.Lease.ExpiresAt.Equal(t0.Add(2*time.Hour)) {
		t.Errorf("Renew = %+v, %v; want expiry %v", ren, err, t0.Add(2*time.Hour))
	}
	if got, want := rn.calls[0], "101 2h0m0s operator@unix"; got != want {
		t.Errorf("renewal = %q; want %q", got, want)
	}
	evs, err := c.Events(ctx, reaper.EventFilter{VMID: 101, Since: t0, Limit: 5})
	if err != nil || len(evs) != 1 || evs[0].Kind != reaper.KindObserve {
		t.Errorf("Events = %+v, %v", evs, err)
	}
	if want := (reaper.EventFilter{VMID: 101, Since: t0, Limit: 5}); !st.filter.Since.Equal(want.Since) || st.filter.VMID != 101 || st.filter.Limit != 5 {
		t.Errorf("filter = %+v; want %+v", st.filter, want)
	}
	if s, err := c.Status(ctx); err != nil || s.Version != "v9" {
		t.Errorf("Status = %+v, %v", s, err)
	}
}

func TestStaleSocketIsReplaced(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "reaper.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close() // a dead reaper's socket file stays behind
	ln2, err := ListenUnix(sock)
	if err != nil {
		t.Fatalf("ListenUnix over a stale socket = %v", err)
	}
	ln2.Close()

	plain := filepath.Join(t.TempDir(), "file")
	os.WriteFile(plain, nil, 0o600)
	if _, err := ListenUnix(plain); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("ListenUnix over a regular file = %v; want 'not a socket'", err)
	}
}

func TestTokenHandler(t *testing.T) {
	srv, _, rn := newServer()
	ts := httptest.NewServer(srv.TokenHandler("s3cret"))
	t.Cleanup(ts.Close)
	ctx := context.Background()
	tests := []struct {
		token string
		want  error
	}{
		{"", reaper.ErrUnauthorized},
		{"wrong", reaper.ErrUnauthorized},
		{"s3cret", nil},
	}
	for _, tt := range tests {
		c := &Client{BaseURL: ts.URL, Token: tt.token}
		_, err := c.Leases(ctx, false)
		if !errors.Is(err, tt.want) && !(tt.want == nil && err == nil) {
			t.Errorf("token %q: Leases = %v; want %v", tt.token, err, tt.want)
		}
	}
	c := &Client{BaseURL: ts.URL, Token: "s3cret"}
	if _, err := c.Renew(ctx, 101, time.Hour); err != nil {
		t.Fatal(err)
	}
	if got := rn.calls[len(rn.calls)-1]; !strings.HasSuffix(got, "client@tcp") {
		t.Errorf("TCP renewal actor in %q; want client@tcp", got)
	}
	// Keeping is the operator's, on the socket only.
	var ae *Error
	if _, err := c.Keep(ctx, 101, true); !errors.As(err, &ae) || ae.Status != http.StatusForbidden || !strings.Contains(ae.Message, "agentlab-reaper keep") {
		t.Errorf("Keep over TCP = %v; want 403 naming agentlab-reaper keep", err)
	}
	if got := rn.keeps; len(got) != 0 {
		t.Errorf("keeps over TCP reached the keeper: %v", got)
	}
	req, _ := http.NewRequest(http.MethodGet, ts.URL+"/v1/leases", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get("WWW-Authenticate"); !strings.HasPrefix(got, "Bearer") {
		t.Errorf("WWW-Authenticate = %q; want Bearer", got)
	}
}

func TestErrors(t *testing.T) {
	srv, _, _ := newServer()
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	c := &Client{BaseURL: ts.URL}
	ctx := context.Background()

	ren, err := c.Renew(ctx, 101, 5*time.Hour)
	var ae *Error
	if !errors.As(err, &ae) || ae.Status != http.StatusConflict || !strings.Contains(ae.Message, "max_ttl") {
		t.Errorf("capped Renew = %v; want 409 naming max_ttl", err)
	}
	if !ren.Capped || !ren.Lease.ExpiresAt.Equal(t0.Add(3*time.Hour)) {
		t.Errorf("capped renewal = %+v; want Capped and expiry at the cap", ren)
	}
	if _, err := c.Renew(ctx, 404, time.Hour); !errors.Is(err, reaper.ErrNotFound) {
		t.Errorf("Renew(404) = %v; want ErrNotFound", err)
	}
	if _, err := c.Renew(ctx, 409, time.Hour); !errors.Is(err, reaper.ErrConflict) {
		t.Errorf("Renew(409) = %v; want ErrConflict", err)
	}

	tests := []struct {
		method, path, body string
		status             int
		msg                string
	}{
		{"POST", "/v1/leases/101/renew", `{"duration":"soon"}`, 400, "not a Go duration"},
		{"POST", "/v1/leases/101/renew", `{"duration":"-1h"}`, 400, "duration -1h0m0s is not positive"},
		{"POST", "/v1/leases/101/renew", `{"duration":"1s"}`, 400, "shorter than 1m0s: the sandbox would be reaped at the next tick; set force"},
		{"POST", "/v1/leases/101/renew", `{"ttl":"1h"}`, 400, "body must be JSON"},
		{"POST", "/v1/leases/abc/renew", `{"duration":"1h"}`, 400, "not a VM ID"},
		{"GET", "/v1/leases/999", "", 404, "not found"},
		{"GET", "/v1/leases/101", "", 200, `"vmid": 101`},
		{"GET", "/v1/leases?all=maybe", "", 400, "want true or false"},
		{"GET", "/v1/events?vmid=x", "", 400, "not a VM ID"},
		{"GET", "/v1/events?since=yesterday", "", 400, "RFC 3339"},
		{"GET", "/v1/events?limit=0", "", 400, "limit"},
		{"GET", "/v1/jobs", "", 501, "not available yet"},
		{"GET", "/v1/nope", "", 404, "no such endpoint"},
		{"DELETE", "/v1/leases/101", "", 404, "no such endpoint: DELETE"},
	}
	for _, tt := range tests {
		req, _ := http.NewRequest(tt.method, ts.URL+tt.path, strings.NewReader(tt.body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tt.status || !strings.Contains(string(body), tt.msg) {
			t.Errorf("%s %s = %d %q; want %d containing %q", tt.method, tt.path, resp.StatusCode, body, tt.status, tt.msg)
		}
	}
}
