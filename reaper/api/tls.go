package api

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// IsLoopback reports whether a host:port (or bare host) names only the
// loopback interface: 127.0.0.0/8, ::1 or "localhost". An empty host (all
// interfaces) is not loopback.
func IsLoopback(addr string) bool {
	host := addr
	if h, _, err := net.SplitHostPort(addr); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// Fingerprint returns the SHA-256 fingerprint of a DER certificate as
// lower-case hex, the form reaper_fingerprint takes.
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

// NormalizeFingerprint accepts a SHA-256 fingerprint as hex, with or without
// colons and an optional "sha256:" prefix, and returns it as Fingerprint
// writes it.
func NormalizeFingerprint(s string) (string, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	s = strings.TrimPrefix(s, "sha256:")
	s = strings.ReplaceAll(s, ":", "")
	if b, err := hex.DecodeString(s); err != nil || len(b) != sha256.Size {
		return "", fmt.Errorf("fingerprint must be 64 hex digits (a SHA-256), optionally with colons")
	}
	return s, nil
}

// ServerTLS loads the control listener's certificate from certFile and
// keyFile, or, when both are empty, loads the pair generated earlier in dir
// (control-tls.crt, control-tls.key), generating it the first time:
// self-signed ECDSA P-256, valid ten years, for the host of listen. It
// returns the TLS config and the certificate's fingerprint.
func ServerTLS(certFile, keyFile, dir, listen string) (*tls.Config, string, error) {
	if certFile == "" && keyFile == "" {
		certFile, keyFile = filepath.Join(dir, "control-tls.crt"), filepath.Join(dir, "control-tls.key")
		if _, err := os.Stat(certFile); errors.Is(err, os.ErrNotExist) {
			if err := generateCert(certFile, keyFile, listen); err != nil {
				return nil, "", fmt.Errorf("generate the control listener's certificate: %w", err)
			}
		}
	}
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, "", fmt.Errorf("control listener certificate (%s, %s): %w", certFile, keyFile, err)
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{pair}}, Fingerprint(pair.Certificate[0]), nil
}

func generateCert(certFile, keyFile, listen string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "agentlab-reaper control API"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	if host, _, err := net.SplitHostPort(listen); err == nil {
		if ip := net.ParseIP(host); ip != nil && !ip.IsUnspecified() {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if ip == nil && host != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, host)
		}
	}
	if h, err := os.Hostname(); err == nil {
		tmpl.DNSNames = append(tmpl.DNSNames, h)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(certFile), 0o700); err != nil {
		return err
	}
	if err := writeFileAtomic(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return err
	}
	return writeFileAtomic(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// ErrPlainHTTP is a client asked to send its bearer token over plain HTTP
// to a host that is not loopback.
var ErrPlainHTTP = errors.New("refusing to send the reaper token over plain HTTP beyond loopback")

// ClientOptions configure NewClient.
type ClientOptions struct {
	// URL is the control API, http://127.0.0.1:8847 or https://reaper:8847.
	URL string
	// Token is the bearer token.
	Token string
	// CACert is PEM certificates to trust for an https URL (besides the
	// system roots when Fingerprint is empty).
	CACert []byte
	// Fingerprint pins the server certificate's SHA-256 (see Fingerprint);
	// when set, the certificate is trusted if and only if it matches.
	Fingerprint string
	// Timeout bounds the wait for each answer's headers (bodies, such as
	// large artifacts, take as long as they take; use a context to bound
	// them). Default 5 min.
	Timeout time.Duration
}

// NewClient returns a client for the control API over TCP. It refuses an
// http URL whose host is not loopback when a token is set (ErrPlainHTTP),
// and for https verifies the server against CACert or pins Fingerprint.
func NewClient(o ClientOptions) (*Client, error) {
	u, err := url.Parse(o.URL)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("reaper URL %q is not a URL such as https://reaper.example:8847", o.URL)
	}
	tr := &http.Transport{Proxy: nil, ForceAttemptHTTP2: true, MaxIdleConnsPerHost: 8, IdleConnTimeout: 90 * time.Second}
	switch u.Scheme {
	case "http":
		if o.Token != "" && !IsLoopback(u.Host) {
			return nil, fmt.Errorf("%w: %s; use https (the reaper serves TLS on a non-loopback control.listen)", ErrPlainHTTP, o.URL)
		}
	case "https":
		cfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if len(o.CACert) > 0 {
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(o.CACert) {
				return nil, errors.New("reaper CA certificate: no PEM certificate found")
			}
			cfg.RootCAs = pool
		}
		if o.Fingerprint != "" {
			want, err := NormalizeFingerprint(o.Fingerprint)
			if err != nil {
				return nil, err
			}
			cfg.InsecureSkipVerify = true //nolint:gosec // replaced by the pin below
			cfg.VerifyConnection = func(cs tls.ConnectionState) error {
				if len(cs.PeerCertificates) == 0 || Fingerprint(cs.PeerCertificates[0].Raw) != want {
					return fmt.Errorf("the reaper's certificate does not match the pinned fingerprint %s", want)
				}
				return nil
			}
		}
		tr.TLSClientConfig = cfg
	default:
		return nil, fmt.Errorf("reaper URL %q: want http:// or https://", o.URL)
	}
	tr.ResponseHeaderTimeout = o.Timeout
	if tr.ResponseHeaderTimeout <= 0 {
		tr.ResponseHeaderTimeout = 5 * time.Minute
	}
	return &Client{BaseURL: strings.TrimRight(o.URL, "/"), Token: o.Token, HTTP: &http.Client{Transport: tr}}, nil
}
