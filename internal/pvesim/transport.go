package pvesim

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// PVE writes its error message on the HTTP status line ("500 no such
// resource 'vm:101'"). Go's http.Server always writes the standard reason
// phrase, so connections served by (*Server).Serve are wrapped: the handler
// tells the connection which reason to put on the next status line it writes.

type reasonKey struct{}

// reasonConn rewrites the reason phrase of the next status line written.
type reasonConn struct {
	net.Conn
	mu     sync.Mutex
	code   int
	reason string
}

func (c *reasonConn) setReason(code int, reason string) {
	c.mu.Lock()
	c.code, c.reason = code, reason
	c.mu.Unlock()
}

func (c *reasonConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	code, reason := c.code, c.reason
	c.mu.Unlock()
	if code == 0 || !bytes.HasPrefix(p, []byte("HTTP/1.1 ")) || len(p) < 13 {
		return c.Conn.Write(p)
	}
	if got, err := strconv.Atoi(string(p[9:12])); err != nil || got != code {
		return c.Conn.Write(p)
	}
	eol := bytes.Index(p, []byte("\r\n"))
	if eol < 0 {
		return c.Conn.Write(p)
	}
	c.mu.Lock()
	c.code, c.reason = 0, ""
	c.mu.Unlock()
	line := fmt.Sprintf("HTTP/1.1 %03d %s", code, reason)
	buf := make([]byte, 0, len(line)+len(p)-eol)
	buf = append(buf, line...)
	buf = append(buf, p[eol:]...)
	if _, err := c.Conn.Write(buf); err != nil {
		return 0, err
	}
	return len(p), nil
}

// reasonListener wraps accepted connections in reasonConn.
type reasonListener struct{ net.Listener }

func (l reasonListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &reasonConn{Conn: c}, nil
}

// setStatusReason asks the connection carrying r to write reason on the status line.
func setStatusReason(r *http.Request, code int, reason string) {
	if rc, ok := r.Context().Value(reasonKey{}).(*reasonConn); ok {
		rc.setReason(code, reason)
	}
}

// Serve answers HTTP/1.1 requests on ln until Shutdown or Close, over TLS when
// tlsConfig is not nil. Unlike serving Handler() with a plain http.Server, it
// puts PVE's error messages on the status line. It returns
// http.ErrServerClosed after Shutdown or Close.
func (s *Server) Serve(ln net.Listener, tlsConfig *tls.Config) error {
	if tlsConfig != nil {
		cfg := tlsConfig.Clone()
		cfg.NextProtos = []string{"http/1.1"}
		ln = tls.NewListener(ln, cfg)
	}
	hs := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 30 * time.Second,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, reasonKey{}, c)
		},
		// No HTTP/2: PVE's server speaks HTTP/1.1 only.
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return http.ErrServerClosed
	}
	s.httpServers = append(s.httpServers, hs)
	s.mu.Unlock()
	return hs.Serve(reasonListener{ln})
}

// Shutdown stops the servers started by Serve gracefully, waiting for active
// requests up to ctx's deadline, then closes the simulator like Close.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	servers := append([]*http.Server(nil), s.httpServers...)
	s.mu.Unlock()
	var first error
	for _, hs := range servers {
		if err := hs.Shutdown(ctx); err != nil && first == nil {
			first = fmt.Errorf("shut down http server: %w", err)
		}
	}
	if err := s.Close(); err != nil && first == nil {
		first = err
	}
	return first
}

// SelfSignedTLS returns a server TLS configuration with a fresh self-signed
// certificate (ECDSA P-256, valid for a year) for the given hosts (names or
// IPs; "localhost" and 127.0.0.1 are always included), and a pool that trusts it.
func SelfSignedTLS(hosts ...string) (*tls.Config, *x509.CertPool, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return nil, nil, fmt.Errorf("generate serial: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "agentlab-pvesim", Organization: []string{"AgentLab PVE simulator"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	all := append([]string{"localhost", "127.0.0.1", "::1"}, hosts...)
	for _, h := range all {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("create certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("parse certificate: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	cfg := &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}},
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"http/1.1"},
	}
	return cfg, pool, nil
}

// ServeLoopback serves s over HTTPS in a goroutine, with a fresh self-signed
// certificate, on a free port of 127.0.0.1. It returns the address
// ("127.0.0.1:PORT"), a pool that trusts the certificate, and a channel that
// receives Serve's result once s is closed or shut down. Tests, benchmarks
// and tools use it to run a simulator in-process.
func (s *Server) ServeLoopback() (addr string, pool *x509.CertPool, served <-chan error, err error) {
	serverTLS, pool, err := SelfSignedTLS("127.0.0.1")
	if err != nil {
		return "", nil, nil, fmt.Errorf("simulator certificate: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, nil, fmt.Errorf("simulator listener: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln, serverTLS) }()
	return ln.Addr().String(), pool, done, nil
}
