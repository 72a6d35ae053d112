package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe for the server and the test to share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var firstLineRE = regexp.MustCompile(`^agentlab-pvesim: endpoint=(https?://[^ ]+/api2/json) token=([^ ]+@[^ ]+![^ ]+=[^ ]+)\n`)

// start runs the program with args until the test ends; it returns the
// endpoint and token from the first line.
func start(t *testing.T, args ...string) (endpoint, token string, stop func() error) {
	t.Helper()
	var stdout, stderr syncBuffer
	m := NewMain(&stdout, &stderr)
	if err := m.ParseFlags(append([]string{"--listen", "127.0.0.1:0"}, args...)); err != nil {
		t.Fatalf("ParseFlags: %v", err)
	}
	ready := make(chan string, 1)
	m.ready = ready
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	select {
	case <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("Run ended early: %v\n%s", err, stderr.String())
	}
	match := firstLineRE.FindStringSubmatch(stdout.String())
	if match == nil {
		cancel()
		t.Fatalf("first line %q does not match %s", stdout.String(), firstLineRE)
	}
	var once sync.Once
	var runErr error
	stop = func() error {
		once.Do(func() {
			cancel()
			runErr = <-done
		})
		return runErr
	}
	t.Cleanup(func() { _ = stop() })
	return match[1], match[2], stop
}

func get(t *testing.T, url, token string) (int, string) {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, Timeout: 10 * time.Second}
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Authorization", "PVEAPIToken="+token)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestServesAndPrintsEndpoint(t *testing.T) {
	endpoint, token, stop := start(t, "--nodes", "pve1,pve2", "--template", "9100:ubuntu@pve2", "--auth-delay", "0s")
	if !strings.HasPrefix(endpoint, "https://127.0.0.1:") || !strings.HasPrefix(token, "root@pam!agentlab=") {
		t.Errorf("endpoint %q token %q; want https://127.0.0.1:PORT and a root@pam!agentlab token", endpoint, token)
	}
	code, body := get(t, endpoint+"/cluster/resources?type=vm", token)
	if code != 200 || !strings.Contains(body, `"vmid":9100`) || !strings.Contains(body, `"node":"pve2"`) {
		t.Errorf("resources = %d %s; want template 9100 on pve2", code, body)
	}
	if err := stop(); err != nil {
		t.Errorf("Run after cancel = %v; want nil", err)
	}
}

func TestPlainHTTPAndStateDir(t *testing.T) {
	dir := t.TempDir()
	endpoint, token, stop := start(t, "--plain-http", "--token", "root@pam!ci=s3cret", "--state-dir", dir)
	if !strings.HasPrefix(endpoint, "http://") || token != "root@pam!ci=s3cret" {
		t.Errorf("endpoint %q token %q; want http:// and the given token", endpoint, token)
	}
	if code, _ := get(t, endpoint+"/version", token); code != 200 {
		t.Errorf("GET /version = %d; want 200", code)
	}
	if err := stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "state.json")); err != nil {
		t.Errorf("state.json after shutdown: %v", err)
	}
}

func TestFlagErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--latency", "slow"}, "latency model"},
		{[]string{"--template", "abc"}, "VMID:NAME"},
		{[]string{"--token", "nonsense"}, "USER@REALM!TOKENID=SECRET"},
		{[]string{"--workers", "0"}, "--workers"},
		{[]string{"--boot", "soon"}, "--boot"},
		{[]string{"--version", "nine"}, "MAJOR.MINOR.PATCH"},
		{[]string{"--lose-answers", "0.5", "--lose-answers-mode", "reset"}, "lost-answer mode"},
		{[]string{"--lose-answers-calls", "clone,resize"}, "--lose-answers-calls"},
	}
	for _, tt := range tests {
		var out bytes.Buffer
		m := NewMain(&out, &out)
		err := m.ParseFlags(append([]string{"--listen", "127.0.0.1:0"}, tt.args...))
		if err == nil {
			err = m.Run(context.Background())
		}
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: err = %v; want it to mention %q", tt.args, err, tt.want)
		}
	}
}
