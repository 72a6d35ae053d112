package pve

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// virtualClock is a Clock whose timers fire at once, moving virtual time
// forward by their duration. It records every wait.
type virtualClock struct {
	mu     sync.Mutex
	now    time.Time
	sleeps []time.Duration
}

func newVirtualClock() *virtualClock {
	// starts at the wall clock, so context deadlines relate to virtual time
	return &virtualClock{now: time.Now()}
}

func (v *virtualClock) Now() time.Time {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.now
}

func (v *virtualClock) After(d time.Duration) <-chan time.Time {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.now = v.now.Add(d)
	v.sleeps = append(v.sleeps, d)
	ch := make(chan time.Time, 1)
	ch <- v.now
	return ch
}

func (v *virtualClock) Sleeps() []time.Duration {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]time.Duration(nil), v.sleeps...)
}

const testToken = "root@pam!test=0b3e5e1c-5d41-4bb1-8a7e-6c6d1f1f0a01"

// newTestClient returns a client for srv on a virtual clock.
func newTestClient(t *testing.T, srv *httptest.Server, mod ...func(*Config)) (*Client, *virtualClock) {
	t.Helper()
	clk := newVirtualClock()
	cfg := Config{Endpoint: srv.URL, APIToken: testToken, HTTPClient: srv.Client(), Clock: clk}
	for _, m := range mod {
		m(&cfg)
	}
	c, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c, clk
}

// writeRaw answers with an exact status line, which net/http's
// ResponseWriter cannot do: PVE puts its messages there.
func writeRaw(t *testing.T, w http.ResponseWriter, status int, reason, body string) {
	t.Helper()
	conn, buf, err := w.(http.Hijacker).Hijack()
	if err != nil {
		t.Errorf("hijack: %v", err)
		return
	}
	defer conn.Close()
	fmt.Fprintf(buf, "HTTP/1.1 %d %s\r\nContent-Type: application/json;charset=UTF-8\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
		status, reason, len(body), body)
	if err := buf.Flush(); err != nil {
		t.Errorf("flush: %v", err)
	}
}

// dropConnection closes the connection without any answer: a lost response.
func dropConnection(t *testing.T, w http.ResponseWriter) {
	t.Helper()
	conn, _, err := w.(http.Hijacker).Hijack()
	if err != nil {
		t.Errorf("hijack: %v", err)
		return
	}
	conn.Close()
}

func writeData(w http.ResponseWriter, data string) {
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	fmt.Fprintf(w, `{"data":%s}`, data)
}
