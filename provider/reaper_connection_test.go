package provider

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-framework/types"
)

func TestResolveReaperTLS(t *testing.T) {
	const fp = "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89"
	srv := httptest.NewTLSServer(http.NotFoundHandler())
	defer srv.Close()
	caPEM := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}))
	tests := []struct {
		name             string
		url, token       string
		ca, fp           string
		wantAttr, wantIn string // attribute and summary substring of the error; "" for none
	}{
		{name: "loopback http with token", url: "http://127.0.0.1:8847", token: "t"},
		{name: "localhost http with token", url: "http://localhost:8847", token: "t"},
		{name: "ipv6 loopback http with token", url: "http://[::1]:8847", token: "t"},
		{name: "remote http without token", url: "http://10.0.0.5:8847"},
		{name: "remote http with token", url: "http://10.0.0.5:8847", token: "t",
			wantAttr: "reaper_url", wantIn: "Refusing to send the reaper token over plain HTTP"},
		{name: "remote https with pin", url: "https://10.0.0.5:8847", token: "t", fp: fp},
		{name: "remote https with ca", url: "https://10.0.0.5:8847", token: "t", ca: caPEM},
		{name: "tls settings on http", url: "http://127.0.0.1:8847", fp: fp,
			wantAttr: "reaper_url", wantIn: "plain HTTP URL"},
		{name: "short fingerprint", url: "https://r:8847", fp: "abcd",
			wantAttr: "reaper_fingerprint", wantIn: "Invalid reaper fingerprint"},
		{name: "ca without pem", url: "https://r:8847", ca: "not a certificate",
			wantAttr: "reaper_ca_cert", wantIn: "Invalid reaper CA certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := providerSettings{ReaperURL: tt.url, ReaperToken: tt.token}
			str := func(v string) types.String {
				if v == "" {
					return types.StringNull()
				}
				return types.StringValue(v)
			}
			diags := resolveReaperTLS(&s, str(tt.ca), str(tt.fp), func(string) string { return "" })
			if tt.wantIn == "" {
				if diags.HasError() {
					t.Fatalf("got %v; want no error", diags)
				}
				return
			}
			if !diags.HasError() || !strings.Contains(diags.Errors()[0].Summary(), tt.wantIn) {
				t.Fatalf("got %v; want an error %q", diags, tt.wantIn)
			}
			if !strings.Contains(diags.Errors()[0].Detail(), tt.wantAttr) {
				t.Errorf("detail %q does not name %s", diags.Errors()[0].Detail(), tt.wantAttr)
			}
		})
	}
	t.Run("openssl's output is accepted", func(t *testing.T) {
		s := providerSettings{}
		diags := resolveReaperTLS(&s, types.StringNull(), types.StringValue("SHA256 Fingerprint="+fp), func(string) string { return "" })
		if diags.HasError() || s.ReaperTLS.Fingerprint != strings.ToLower(strings.ReplaceAll(fp, ":", "")) {
			t.Fatalf("got %q, %v", s.ReaperTLS.Fingerprint, diags)
		}
	})
}

// TestReaperClientVerifiesTheReaper talks to a TLS server standing in for
// the reaper: the right pin or CA is trusted, a wrong pin or no trust at
// all is refused before any token is sent.
func TestReaperClientVerifiesTheReaper(t *testing.T) {
	var sawToken []string
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sawToken = append(sawToken, r.Header.Get("Authorization"))
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"jobs":[]}`))
	}))
	defer srv.Close()
	sum := sha256.Sum256(srv.Certificate().Raw)
	rightPin := hex.EncodeToString(sum[:])
	wrongPin := strings.Repeat("00", 32)
	caPEM := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}))
	tests := []struct {
		name   string
		tls    reaperTLS
		wantOK bool
	}{
		{"pinned", reaperTLS{Fingerprint: rightPin}, true},
		{"ca", reaperTLS{CACert: caPEM}, true},
		{"ca and pin", reaperTLS{CACert: caPEM, Fingerprint: rightPin}, true},
		{"wrong pin", reaperTLS{Fingerprint: wrongPin}, false},
		{"ca and wrong pin", reaperTLS{CACert: caPEM, Fingerprint: wrongPin}, false},
		{"system roots", reaperTLS{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sawToken = nil
			c, err := newReaperClient(providerSettings{ReaperURL: srv.URL, ReaperToken: "secret", ReaperTLS: tt.tls})
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.Jobs(context.Background())
			if tt.wantOK != (err == nil) {
				t.Fatalf("Jobs: err = %v; want ok %t", err, tt.wantOK)
			}
			if !tt.wantOK && len(sawToken) > 0 {
				t.Fatalf("the token reached an unverified server")
			}
			if tt.wantOK && (len(sawToken) != 1 || sawToken[0] != "Bearer secret") {
				t.Fatalf("server saw Authorization %q; want the bearer token", sawToken)
			}
		})
	}
	if _, err := newReaperClient(providerSettings{}); !errors.Is(err, errNoReaper) {
		t.Fatalf("no reaper_url: got %v; want errNoReaper", err)
	}
}
