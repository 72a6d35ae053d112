package api

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
)

type fixedRuleset string

func (f fixedRuleset) Ruleset() string { return string(f) }

func TestEgress(t *testing.T) {
	ctx := context.Background()
	srv, _, _ := newServer()
	off := httptest.NewServer(srv.Handler())
	t.Cleanup(off.Close)
	if got, err := (&Client{BaseURL: off.URL}).Egress(ctx); err != nil || got.Enabled || got.Ruleset != "" {
		t.Errorf("Egress with the filter off = %+v, %v; want disabled", got, err)
	}

	srv.Egress = fixedRuleset("table inet agentlab {}\n")
	on := httptest.NewServer(srv.Handler())
	t.Cleanup(on.Close)
	if got, err := (&Client{BaseURL: on.URL}).Egress(ctx); err != nil || !got.Enabled || got.Ruleset != "table inet agentlab {}\n" {
		t.Errorf("Egress = %+v, %v; want the ruleset", got, err)
	}

	tcp := httptest.NewServer(srv.TokenHandler("s3cret"))
	t.Cleanup(tcp.Close)
	var ae *Error
	if _, err := (&Client{BaseURL: tcp.URL, Token: "s3cret"}).Egress(ctx); !errors.As(err, &ae) || ae.Status != http.StatusForbidden {
		t.Errorf("Egress over TCP = %v; want 403", err)
	}
}
