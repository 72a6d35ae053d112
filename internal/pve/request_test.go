package pve

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func TestAPIErrorParsing(t *testing.T) {
	tests := []struct {
		name        string
		status      int
		reason      string
		body        string
		wantMessage string
		wantErrors  map[string]string
		notFound    bool
		transient   bool
	}{
		{
			name:   "new body with message",
			status: 500, reason: "Configuration file 'nodes/pve/qemu-server/101.conf' does not exist",
			body:        `{"data":null,"message":"Configuration file 'nodes/pve/qemu-server/101.conf' does not exist\n"}`,
			wantMessage: "Configuration file 'nodes/pve/qemu-server/101.conf' does not exist",
			notFound:    true,
		},
		{
			name:   "old body without message",
			status: 500, reason: "Configuration file 'nodes/pve/qemu-server/101.conf' does not exist",
			body:        `{"data":null}`,
			wantMessage: "Configuration file 'nodes/pve/qemu-server/101.conf' does not exist",
			notFound:    true,
		},
		{
			name:   "old body lock timeout",
			status: 500, reason: "can't lock file '/var/lock/qemu-server/lock-100.conf' - got timeout",
			body:        `{"data":null}`,
			wantMessage: "can't lock file '/var/lock/qemu-server/lock-100.conf' - got timeout",
			transient:   true,
		},
		{
			name:   "non-json 596",
			status: 596, reason: "Broken pipe",
			body:        "Broken pipe\n",
			wantMessage: "Broken pipe",
			transient:   true,
		},
		{
			name:   "parameter errors",
			status: 400, reason: "Parameter verification failed.",
			body:        `{"data":null,"errors":{"vmid":"VM 105 already exists"},"message":"Parameter verification failed.\n"}`,
			wantMessage: "Parameter verification failed.",
			wantErrors:  map[string]string{"vmid": "VM 105 already exists"},
		},
		{
			name:   "401 empty body",
			status: 401, reason: "No ticket",
			wantMessage: "No ticket",
		},
		{
			name:   "empty reason falls back to status text",
			status: 503, reason: "",
			wantMessage: "Service Unavailable",
			transient:   true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				writeRaw(t, w, tt.status, tt.reason, tt.body)
			}))
			t.Cleanup(srv.Close)
			c, _ := newTestClient(t, srv)
			err := c.send(context.Background(), request{method: "GET", path: "/nodes/pve/qemu/101/config"}, nil)
			var ae *APIError
			if !errors.As(err, &ae) {
				t.Fatalf("got error %v (%T); want *APIError", err, err)
			}
			if ae.Status != tt.status {
				t.Errorf("got status %d; want %d", ae.Status, tt.status)
			}
			if ae.Message != tt.wantMessage {
				t.Errorf("got message %q; want %q", ae.Message, tt.wantMessage)
			}
			if !reflect.DeepEqual(ae.Errors, tt.wantErrors) {
				t.Errorf("got errors %v; want %v", ae.Errors, tt.wantErrors)
			}
			if got := IsNotFound(err); got != tt.notFound {
				t.Errorf("got IsNotFound %v; want %v", got, tt.notFound)
			}
			if got := IsTransient(err); got != tt.transient {
				t.Errorf("got IsTransient %v; want %v", got, tt.transient)
			}
		})
	}
}

func TestIsTransient(t *testing.T) {
	sysErr := func(errno syscall.Errno) error {
		return &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", errno)}
	}
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"500 can't lock", &APIError{Status: 500, Message: "can't lock file '/var/lock/qemu-server/lock-100.conf' - got timeout"}, true},
		{"500 vm locked", &APIError{Status: 500, Message: "VM is locked (clone)"}, true},
		{"500 no quorum", &APIError{Status: 500, Message: "cluster not ready - no quorum?"}, true},
		{"500 cfs lock", &APIError{Status: 500, Message: "error during cfs-locked 'file-replication_cfg' operation: got lock request timeout"}, true},
		{"500 other", &APIError{Status: 500, Message: "VM 100 is running - destroy failed"}, false},
		{"500 not found", &APIError{Status: 500, Message: "Configuration file 'nodes/pve/qemu-server/1.conf' does not exist"}, false},
		{"502", &APIError{Status: 502, Message: "Bad Gateway"}, true},
		{"503", &APIError{Status: 503, Message: "Service Unavailable"}, true},
		{"504", &APIError{Status: 504, Message: "Gateway Timeout"}, true},
		{"596", &APIError{Status: 596, Message: "Connection timed out"}, true},
		{"599", &APIError{Status: 599, Message: "Too many redirections"}, true},
		{"400", &APIError{Status: 400, Message: "Parameter verification failed.", Errors: map[string]string{"size": "got timeout"}}, false},
		{"401", &APIError{Status: 401, Message: "No ticket"}, false},
		{"403", &APIError{Status: 403, Message: "Permission check failed (/vms/100, VM.Audit)"}, false},
		{"501", &APIError{Status: 501, Message: "Method 'GET /x' not implemented"}, false},
		{"task lock timeout", &TaskError{ExitStatus: "can't lock file '/var/lock/qemu-server/lock-100.conf' - got timeout"}, true},
		{"task failure", &TaskError{ExitStatus: "VM 100 already running"}, false},
		{"connection refused", fmt.Errorf("x: %w", sysErr(syscall.ECONNREFUSED)), true},
		{"connection reset", sysErr(syscall.ECONNRESET), true},
		{"unexpected eof", fmt.Errorf("reading: %w", io.ErrUnexpectedEOF), true},
		{"eof", fmt.Errorf("post: %w", io.EOF), true},
		{"attempt timeout", &attemptTimeoutError{Err: context.DeadlineExceeded}, true},
		{"context canceled", fmt.Errorf("x: %w", context.Canceled), false},
		{"context deadline", context.DeadlineExceeded, false},
		{"tls", &TLSError{Err: errors.New("x509: certificate signed by unknown authority")}, false},
		{"wait error", &waitError{Err: &APIError{Status: 596}}, false},
		{"no retry", &noRetryError{Err: &APIError{Status: 596}}, false},
		{"plain", errors.New("boom"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := IsTransient(tt.err); got != tt.want {
				t.Errorf("IsTransient(%v) = %v; want %v", tt.err, got, tt.want)
			}
		})
	}
}

func TestIsNotFound(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"config missing", &APIError{Status: 500, Message: "Configuration file 'nodes/pve/qemu-server/101.conf' does not exist"}, true},
		{"wrapped", fmt.Errorf("status of pve/101: %w", &APIError{Status: 500, Message: "Configuration file 'nodes/pve/qemu-server/101.conf' does not exist"}), true},
		{"task", &TaskError{ExitStatus: "Configuration file 'nodes/pve/qemu-server/101.conf' does not exist"}, true},
		{"volume", &APIError{Status: 500, Message: "volume 'local:iso/x.iso' does not exist"}, true},
		{"sentinel", fmt.Errorf("vm 5: %w", ErrNotFound), true},
		{"missing disk is not a missing vm", &APIError{Status: 500, Message: "disk 'scsi3' does not exist"}, false},
		{"ha resource", &APIError{Status: 500, Message: "no such resource 'vm:101'"}, false},
		{"other", &APIError{Status: 500, Message: "VM is locked (clone)"}, false},
		{"nil", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := IsNotFound(tt.err); got != tt.want {
				t.Errorf("IsNotFound(%v) = %v; want %v", tt.err, got, tt.want)
			}
		})
	}
}

func TestRetryClassificationOverHTTP(t *testing.T) {
	lockFail := func(t *testing.T, w http.ResponseWriter) {
		writeRaw(t, w, 500, "can't lock file '/var/lock/qemu-server/lock-100.conf' - got timeout", `{"data":null}`)
	}
	tests := []struct {
		name      string
		fail      func(t *testing.T, w http.ResponseWriter) // answer of the failing attempts
		failures  int                                       // attempts that fail before success
		wantCalls int
		wantErr   bool
	}{
		{"lock timeout retried", lockFail, 2, 3, false},
		{"596 retried", func(t *testing.T, w http.ResponseWriter) { writeRaw(t, w, 596, "Broken pipe", "") }, 3, 4, false},
		{"dropped connection retried", dropConnection, 1, 2, false},
		{"400 not retried", func(t *testing.T, w http.ResponseWriter) {
			writeRaw(t, w, 400, "Parameter verification failed.", `{"data":null,"errors":{"vmid":"invalid"}}`)
		}, 5, 1, true},
		{"401 not retried", func(t *testing.T, w http.ResponseWriter) { writeRaw(t, w, 401, "No ticket", "") }, 5, 1, true},
		{"403 not retried", func(t *testing.T, w http.ResponseWriter) {
			writeRaw(t, w, 403, "Permission check failed (/vms/100, VM.Audit)", `{"data":null}`)
		}, 5, 1, true},
		{"501 not retried", func(t *testing.T, w http.ResponseWriter) {
			writeRaw(t, w, 501, "Method 'GET /nodes/pve/qemu/100/config' not implemented", "")
		}, 5, 1, true},
		{"does not exist not retried", func(t *testing.T, w http.ResponseWriter) {
			writeRaw(t, w, 500, "Configuration file 'nodes/pve/qemu-server/100.conf' does not exist", `{"data":null}`)
		}, 5, 1, true},
		{"gives up after max attempts", lockFail, 100, 4, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var calls atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if n := calls.Add(1); int(n) <= tt.failures {
					tt.fail(t, w)
					return
				}
				writeData(w, `{"name":"vm"}`)
			}))
			t.Cleanup(srv.Close)
			c, clk := newTestClient(t, srv, func(cfg *Config) { cfg.Retry = RetryPolicy{MaxAttempts: 4} })
			var out map[string]any
			err := c.get(context.Background(), "/nodes/pve/qemu/100/config", nil, &out)
			if (err != nil) != tt.wantErr {
				t.Fatalf("got error %v; want error %v", err, tt.wantErr)
			}
			if got := int(calls.Load()); got != tt.wantCalls {
				t.Errorf("got %d calls; want %d", got, tt.wantCalls)
			}
			if got, want := len(clk.Sleeps()), tt.wantCalls-1; got != want {
				t.Errorf("got %d backoff sleeps; want %d", got, want)
			}
		})
	}
}

func TestBackoffBounds(t *testing.T) {
	c, err := New(context.Background(), Config{Endpoint: "https://pve:8006", APIToken: testToken,
		Retry: RetryPolicy{BaseDelay: 100 * time.Millisecond, MaxDelay: 2 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	ceilings := []time.Duration{100, 200, 400, 800, 1600, 2000, 2000, 2000}
	for i, ms := range ceilings {
		attempt := i + 1
		ceiling := ms * time.Millisecond
		var max time.Duration
		for range 2000 {
			d := c.backoff(attempt)
			if d < 0 || d > ceiling {
				t.Fatalf("attempt %d: got delay %v; want within [0, %v]", attempt, d, ceiling)
			}
			max = maxDur(max, d)
		}
		if max < ceiling*3/4 {
			t.Errorf("attempt %d: largest of 2000 delays %v; want full jitter up to %v", attempt, max, ceiling)
		}
	}
	// extreme attempts do not overflow
	for _, a := range []int{31, 64, 1000} {
		if d := c.backoff(a); d < 0 || d > 2*time.Second {
			t.Errorf("attempt %d: got delay %v; want within [0, 2s]", a, d)
		}
	}
	// the jitter source sees the ceiling (+1 for an inclusive bound)
	c.jitter = func(n int64) int64 { return n - 1 }
	if got, want := c.backoff(3), 400*time.Millisecond; got != want {
		t.Errorf("got max delay %v for attempt 3; want %v", got, want)
	}
}

func maxDur(a, b time.Duration) time.Duration {
	if a > b {
		return a
	}
	return b
}

func TestRetryStopsBeforeDeadline(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		writeRaw(t, w, 596, "Connection timed out", "")
	}))
	t.Cleanup(srv.Close)
	c, clk := newTestClient(t, srv, func(cfg *Config) {
		cfg.Retry = RetryPolicy{MaxAttempts: 50, BaseDelay: time.Second, MaxDelay: time.Second}
	})
	c.jitter = func(n int64) int64 { return n - 1 } // always the full second
	ctx, cancel := context.WithDeadline(context.Background(), clk.Now().Add(2500*time.Millisecond))
	defer cancel()
	err := c.get(ctx, "/version", nil, nil)
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != 596 {
		t.Fatalf("got error %v; want the last 596 error", err)
	}
	// sleeps of 1 s fit twice into 2.5 s of virtual time; the third would not
	if got := calls.Load(); got != 3 {
		t.Errorf("got %d calls; want 3", got)
	}
}

func TestRetryHonoursCancel(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeRaw(t, w, 503, "busy", "")
	}))
	t.Cleanup(srv.Close)
	c, _ := newTestClient(t, srv)
	c.clock = realClock{}
	ctx, cancel := context.WithCancel(context.Background())
	c.jitter = func(n int64) int64 { cancel(); return int64(time.Hour) }
	done := make(chan error, 1)
	go func() { done <- c.get(ctx, "/version", nil, nil) }()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("got %v; want an error wrapping context.Canceled", err)
		}
		var ae *APIError
		if !errors.As(err, &ae) || ae.Status != 503 {
			t.Errorf("got %v; want it to carry the last 503 error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("get did not return after cancel")
	}
}
