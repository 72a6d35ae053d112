package pve

import (
	"context"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

func TestNormalizeEndpoint(t *testing.T) {
	tests := []struct {
		in, want string
		wantErr  bool
	}{
		{"https://pve.example:8006", "https://pve.example:8006/api2/json", false},
		{"https://pve.example:8006/", "https://pve.example:8006/api2/json", false},
		{"https://pve.example:8006/api2/json", "https://pve.example:8006/api2/json", false},
		{"https://pve.example:8006/api2/json/", "https://pve.example:8006/api2/json", false},
		{"  pve.example:8006 ", "https://pve.example:8006/api2/json", false},
		{"http://127.0.0.1:8006", "http://127.0.0.1:8006/api2/json", false},
		{"https://proxy.example/pve", "https://proxy.example/pve/api2/json", false},
		{"", "", true},
		{"ftp://pve:8006", "", true},
		{"https://", "", true},
		{"https://user:pw@pve:8006", "", true},
		{"https://pve:8006/?x=1", "", true},
	}
	for _, tt := range tests {
		got, err := NormalizeEndpoint(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("NormalizeEndpoint(%q): got error %v; want error %v", tt.in, err, tt.wantErr)
			continue
		}
		if err != nil && !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("NormalizeEndpoint(%q): got %v; want ErrInvalidConfig", tt.in, err)
		}
		if got != tt.want {
			t.Errorf("NormalizeEndpoint(%q) = %q; want %q", tt.in, got, tt.want)
		}
	}
}

func TestParseAPIToken(t *testing.T) {
	tests := []struct {
		in, id, secret string
		wantErr        bool
	}{
		{"root@pam!agentlab=3f0c6b0e-8c1f-4d0e-9a57-1c2d3e4f5a6b", "root@pam!agentlab", "3f0c6b0e-8c1f-4d0e-9a57-1c2d3e4f5a6b", false},
		{"agent@pve!tf-1=abc\n", "agent@pve!tf-1", "abc", false},
		{"PVEAPIToken=root@pam!xy=z", "root@pam!xy", "z", false},
		{"", "", "", true},
		{"root@pam=secret", "", "", true},
		{"root@pam!agentlab", "", "", true},
		{"root@pam!agentlab=", "", "", true},
		{"root!agentlab=secret", "", "", true},
		{"@pam!agentlab=secret", "", "", true},
		{"root@pam!1bad=secret", "", "", true},
		{"root@pam!ok=sec ret", "", "", true},
	}
	for _, tt := range tests {
		id, secret, err := ParseAPIToken(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("ParseAPIToken(%q): got error %v; want error %v", tt.in, err, tt.wantErr)
			continue
		}
		if err != nil {
			if !strings.Contains(err.Error(), "user@realm!tokenid=secret") {
				t.Errorf("ParseAPIToken(%q): got %q; want the message to name the form user@realm!tokenid=secret", tt.in, err)
			}
			continue
		}
		if id != tt.id || secret != tt.secret {
			t.Errorf("ParseAPIToken(%q) = %q, %q; want %q, %q", tt.in, id, secret, tt.id, tt.secret)
		}
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
	}{
		{"http client and insecure", Config{Endpoint: "https://pve:8006", APIToken: testToken, HTTPClient: http.DefaultClient, Insecure: true}},
		{"bad ca", Config{Endpoint: "https://pve:8006", APIToken: testToken, CACertPEM: []byte("nope")}},
		{"range below 100", Config{Endpoint: "https://pve:8006", APIToken: testToken, VMIDMin: 5, VMIDMax: 200}},
		{"empty range", Config{Endpoint: "https://pve:8006", APIToken: testToken, VMIDMin: 500, VMIDMax: 400}},
		{"bad token", Config{Endpoint: "https://pve:8006", APIToken: "secret"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(context.Background(), tt.cfg)
			if !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("got %v; want ErrInvalidConfig", err)
			}
		})
	}
}

func TestNewSendsToken(t *testing.T) {
	var auth, path string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth, path = r.Header.Get("Authorization"), r.URL.Path
		writeData(w, `{"version":"8.2.4","release":"8.2","repoid":"faa83925c9641325"}`)
	}))
	t.Cleanup(srv.Close)
	c, _ := newTestClient(t, srv)
	v, err := c.Ping(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if v.Version != "8.2.4" || v.Release != "8.2" {
		t.Errorf("got %+v; want version 8.2.4 release 8.2", v)
	}
	if want := "PVEAPIToken=" + testToken; auth != want {
		t.Errorf("got Authorization %q; want %q", auth, want)
	}
	if path != "/api2/json/version" {
		t.Errorf("got path %q; want /api2/json/version", path)
	}
	if c.Library() == nil {
		t.Error("got nil library client")
	}
}

// sentinels are the distinct Ping failures.
var sentinels = []error{ErrUntrustedCertificate, ErrUnreachable, ErrUnauthorized, ErrNotProxmox}

func checkOnly(t *testing.T, err, want error) {
	t.Helper()
	for _, s := range sentinels {
		if got := errors.Is(err, s); got != (s == want) {
			t.Errorf("errors.Is(%v, %v) = %v; want %v", err, s, got, s == want)
		}
	}
}

func TestPingErrors(t *testing.T) {
	versionOK := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeData(w, `{"version":"8.2.4","release":"8.2","repoid":"x"}`)
	})

	t.Run("untrusted certificate", func(t *testing.T) {
		srv := httptest.NewUnstartedServer(versionOK)
		srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the failed handshake is expected
		srv.StartTLS()
		t.Cleanup(srv.Close)
		c, err := New(context.Background(), Config{Endpoint: srv.URL, APIToken: testToken})
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Ping(context.Background())
		checkOnly(t, err, ErrUntrustedCertificate)
		var te *TLSError
		if !errors.As(err, &te) {
			t.Fatalf("got %T; want *TLSError", err)
		}
		if !strings.Contains(err.Error(), "set insecure = true or provide a trusted certificate") {
			t.Errorf("got %q; want it to say what to do", err)
		}
	})
	t.Run("insecure accepts the certificate", func(t *testing.T) {
		srv := httptest.NewTLSServer(versionOK)
		t.Cleanup(srv.Close)
		c, err := New(context.Background(), Config{Endpoint: srv.URL, APIToken: testToken, Insecure: true})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Ping(context.Background()); err != nil {
			t.Errorf("Ping: %v", err)
		}
	})
	t.Run("ca certificate trusts the server", func(t *testing.T) {
		srv := httptest.NewTLSServer(versionOK)
		t.Cleanup(srv.Close)
		ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
		c, err := New(context.Background(), Config{Endpoint: srv.URL, APIToken: testToken, CACertPEM: ca})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Ping(context.Background()); err != nil {
			t.Errorf("Ping: %v", err)
		}
	})
	t.Run("bad token", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			writeRaw(t, w, 401, "Authentication failed!", "")
		}))
		t.Cleanup(srv.Close)
		c, _ := newTestClient(t, srv)
		_, err := c.Ping(context.Background())
		checkOnly(t, err, ErrUnauthorized)
		if !strings.Contains(err.Error(), "root@pam!test") || strings.Contains(err.Error(), "0b3e5e1c") {
			t.Errorf("got %q; want the token id and never the secret", err)
		}
	})
	t.Run("nothing listens", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		c, err := New(context.Background(), Config{Endpoint: "https://" + addr, APIToken: testToken})
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Ping(context.Background())
		checkOnly(t, err, ErrUnreachable)
	})
	t.Run("not an api", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.NotFound(w, r)
		}))
		t.Cleanup(srv.Close)
		c, _ := newTestClient(t, srv)
		_, err := c.Ping(context.Background())
		checkOnly(t, err, ErrNotProxmox)
	})
	t.Run("html page", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Write([]byte("<html>hello</html>"))
		}))
		t.Cleanup(srv.Close)
		c, _ := newTestClient(t, srv)
		_, err := c.Ping(context.Background())
		checkOnly(t, err, ErrNotProxmox)
	})
	t.Run("https to a plain http server", func(t *testing.T) {
		srv := httptest.NewServer(versionOK)
		t.Cleanup(srv.Close)
		c, err := New(context.Background(), Config{Endpoint: strings.Replace(srv.URL, "http://", "https://", 1), APIToken: testToken})
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Ping(context.Background())
		checkOnly(t, err, ErrNotProxmox)
	})
}

// TestUserAgent checks every request names the program that made it, so
// PVE's access log tells the provider's calls from the reaper's.
func TestUserAgent(t *testing.T) {
	tests := []struct {
		name, configured, want string
	}{
		{"configured", "terraform-provider-agentlab/1.2.3", "terraform-provider-agentlab/1.2.3"},
		{"default", "", DefaultUserAgent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got atomic.Value
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				got.Store(r.UserAgent())
				_, _ = io.WriteString(w, `{"data":{"version":"9.1.1","release":"9.1","repoid":"x"}}`)
			}))
			defer srv.Close()
			c, _ := newTestClient(t, srv, func(cfg *Config) { cfg.UserAgent = tt.configured })
			if _, err := c.Ping(context.Background()); err != nil {
				t.Fatalf("Ping: %v", err)
			}
			if got.Load() != tt.want {
				t.Errorf("User-Agent = %q; want %q", got.Load(), tt.want)
			}
		})
	}
}
