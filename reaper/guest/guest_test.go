package guest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/agentlab/terraform-provider-agentlab/internal/clock"
	"github.com/agentlab/terraform-provider-agentlab/internal/lease"
	"github.com/agentlab/terraform-provider-agentlab/reaper"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

type fakeHB struct{ calls int }

func (f *fakeHB) Heartbeat(ctx context.Context, token string) (reaper.Renewal, error) {
	f.calls++
	l := reaper.Lease{VMID: 101, ExpiresAt: t0.Add(time.Hour), MaxExpiresAt: t0.Add(2 * time.Hour), TTL: time.Hour}
	switch token {
	case "good":
		return reaper.Renewal{Lease: l, Previous: t0}, nil
	case "capped":
		l.ExpiresAt = l.MaxExpiresAt
		return reaper.Renewal{Lease: l, Capped: true}, &lease.PastMaxTTLError{Now: t0, TTL: time.Hour, MaxTTL: 2 * time.Hour,
			Requested: t0.Add(3 * time.Hour), Limit: t0.Add(2 * time.Hour)}
	case "expired":
		return reaper.Renewal{}, fmt.Errorf("vm 101: %w: lease expired", reaper.ErrConflict)
	case "gone":
		return reaper.Renewal{}, fmt.Errorf("vm 101: %w", reaper.ErrNotFound)
	case "broken":
		return reaper.Renewal{}, fmt.Errorf("pve: 596 Broken pipe")
	}
	return reaper.Renewal{}, reaper.ErrUnauthorized
}

func post(t *testing.T, h http.Handler, token, remote string) (*httptest.ResponseRecorder, HeartbeatResponse) {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/v1/heartbeat", strings.NewReader("{}"))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if remote != "" {
		req.RemoteAddr = remote
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var resp HeartbeatResponse
	_ = json.Unmarshal(rec.Body.Bytes(), &resp)
	return rec, resp
}

func TestHeartbeatStatuses(t *testing.T) {
	s := New(&fakeHB{}, Limits{PerToken: 100, TokenBurst: 100, PerAddress: 100, AddressBurst: 100}, clock.NewFake(t0), nil)
	tests := []struct {
		token  string
		status int
		body   string
	}{
		{"good", 200, `"expires_at":"2026-03-01T13:00:00Z"`},
		{"capped", 409, `"capped":true`},
		{"expired", 409, "lease expired"},
		{"gone", 404, "no longer exists"},
		{"broken", 503, "try again later"},
		{"nobody", 401, "unknown heartbeat token"},
		{"", 401, "Authorization: Bearer"},
	}
	for _, tt := range tests {
		rec, _ := post(t, s, tt.token, "")
		if rec.Code != tt.status || !strings.Contains(rec.Body.String(), tt.body) {
			t.Errorf("token %q: %d %s; want %d containing %q", tt.token, rec.Code, rec.Body, tt.status, tt.body)
		}
	}
	rec, resp := post(t, s, "capped", "")
	if !resp.ExpiresAt.Equal(t0.Add(2*time.Hour)) || !strings.Contains(resp.Error, "max_ttl") {
		t.Errorf("capped answer = %d %+v; want expiry at the cap and an error naming max_ttl", rec.Code, resp)
	}

	for _, tt := range []struct {
		method, path string
		status       int
	}{
		{http.MethodGet, "/v1/heartbeat", 405},
		{http.MethodPost, "/v1/job/started", 501}, // no job registry set
		{http.MethodGet, "/", 404},
	} {
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, httptest.NewRequest(tt.method, tt.path, nil))
		if rec.Code != tt.status {
			t.Errorf("%s %s = %d; want %d", tt.method, tt.path, rec.Code, tt.status)
		}
	}
}

func TestRateLimits(t *testing.T) {
	clk := clock.NewFake(t0)
	hb := &fakeHB{}
	s := New(hb, Limits{PerToken: 0.1, TokenBurst: 2, PerAddress: 1, AddressBurst: 5}, clk, nil)

	for i, want := range []int{200, 200, 429} {
		rec, _ := post(t, s, "good", "10.77.0.5:40000")
		if rec.Code != want {
			t.Errorf("heartbeat %d = %d; want %d", i+1, rec.Code, want)
		}
		if want == 429 && rec.Header().Get("Retry-After") != "10" {
			t.Errorf("Retry-After = %q; want 10", rec.Header().Get("Retry-After"))
		}
	}
	// Another token is not limited by the first one's bucket.
	if rec, _ := post(t, s, "capped", "10.77.0.5:40000"); rec.Code != 409 {
		t.Errorf("other token = %d; want 409 (not rate-limited)", rec.Code)
	}
	// The address limit stops guessing many tokens from one address.
	rec, _ := post(t, s, "guess1", "10.77.0.5:40000")
	if rec.Code != 401 {
		t.Errorf("5th request from the address = %d; want 401", rec.Code)
	}
	rec, _ = post(t, s, "guess2", "10.77.0.5:40000")
	if rec.Code != 429 {
		t.Errorf("6th request from the address = %d; want 429", rec.Code)
	}
	calls := hb.calls
	clk.Advance(10 * time.Second)
	if rec, _ := post(t, s, "good", "10.77.0.6:1"); rec.Code != 200 {
		t.Errorf("after 10s = %d; want 200", rec.Code)
	}
	if hb.calls != calls+1 {
		t.Errorf("heartbeats reaching the loop = %d; want %d (limited ones never do)", hb.calls, calls+1)
	}
}
