// Package pvesimtest runs the Proxmox VE simulator for tests: an HTTPS server
// on 127.0.0.1 with a fresh self-signed certificate, an API token and a
// user/password, all cleaned up when the test ends.
//
//	sim := pvesimtest.Start(t)
//	// sim.URL   = "https://127.0.0.1:PORT/api2/json"
//	// sim.Token = "root@pam!test=<secret>"
//	resp, err := sim.Client.Get(sim.URL + "/version") // + Authorization header
//
// Options are changed with functions:
//
//	sim := pvesimtest.Start(t, func(o *pvesim.Options) {
//		o.Nodes = []string{"pve1", "pve2"}
//		o.Latency = pvesim.RealisticLatency().Scaled(0.01)
//	})
package pvesimtest

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/agentlab/terraform-provider-agentlab/internal/pvesim"
)

// Sim is a running simulator.
type Sim struct {
	// URL is the API base, "https://127.0.0.1:PORT/api2/json".
	URL string
	// Host is "127.0.0.1:PORT".
	Host string
	// Token is the API token "USER@REALM!TOKENID=SECRET" (Options.Tokens[0]).
	Token string
	// TokenID and TokenSecret are Token's two halves.
	TokenID, TokenSecret string
	// User and Password log in through POST /access/ticket (Options.Users[0]).
	User, Password string
	// Server is the simulator, for stats and state accessors.
	Server *pvesim.Server
	// Client is an HTTP client that trusts the simulator's certificate.
	Client *http.Client
	// TLSConfig is a client TLS configuration that trusts the certificate.
	TLSConfig *tls.Config
	// CertPool holds the simulator's certificate.
	CertPool *x509.CertPool
}

// Start starts a simulator with the zero latency model, one node "pve", the
// default template 9000, a token for root@pam!test and the user root@pam
// with password "pvesim", then applies opts. It stops when the test ends.
func Start(t testing.TB, opts ...func(*pvesim.Options)) *Sim {
	t.Helper()
	secret := make([]byte, 16)
	if _, err := rand.Read(secret); err != nil {
		t.Fatalf("pvesimtest: random secret: %v", err)
	}
	o := pvesim.Options{
		Tokens: []string{"root@pam!test=" + hex.EncodeToString(secret)},
		Users:  []string{"root@pam:pvesim"},
	}
	for _, f := range opts {
		f(&o)
	}
	srv, err := pvesim.New(o)
	if err != nil {
		t.Fatalf("pvesimtest: new simulator: %v", err)
	}
	addr, pool, done, err := srv.ServeLoopback()
	if err != nil {
		_ = srv.Close()
		t.Fatalf("pvesimtest: %v", err)
	}
	clientTLS := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	tr := &http.Transport{TLSClientConfig: clientTLS, ForceAttemptHTTP2: false, MaxIdleConnsPerHost: 64}
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		if err := srv.Close(); err != nil {
			t.Errorf("pvesimtest: close simulator: %v", err)
		}
		if err := <-done; err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("pvesimtest: serve: %v", err)
		}
	})
	sim := &Sim{
		URL:       "https://" + addr + "/api2/json",
		Host:      addr,
		Server:    srv,
		Client:    &http.Client{Transport: tr},
		TLSConfig: clientTLS,
		CertPool:  pool,
	}
	if len(o.Tokens) > 0 {
		sim.Token = o.Tokens[0]
		sim.TokenID, sim.TokenSecret, _ = strings.Cut(sim.Token, "=")
	}
	if len(o.Users) > 0 {
		sim.User, sim.Password, _ = strings.Cut(o.Users[0], ":")
	}
	return sim
}

// AuthHeader returns the Authorization header value for Token.
func (s *Sim) AuthHeader() string { return "PVEAPIToken=" + s.Token }
