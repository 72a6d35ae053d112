package provider

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-log/tflogtest"

	"github.com/agentlab/terraform-provider-agentlab/internal/pve"
	"github.com/agentlab/terraform-provider-agentlab/internal/pvesim"
	"github.com/agentlab/terraform-provider-agentlab/internal/pvesim/pvesimtest"
)

// TestAPICallsAreLoggedWithoutTheToken drives the Proxmox VE client the
// provider's Configure builds, with tflog's test sink as Terraform's log: every call
// shows method, path, status and duration, retries show their attempt, and
// neither the token nor its secret appears anywhere.
func TestAPICallsAreLoggedWithoutTheToken(t *testing.T) {
	sim := pvesimtest.Start(t, func(o *pvesim.Options) {
		o.FaultRate = 0.5 // some calls fail once and are retried
		o.Seed = 7
	})
	var out bytes.Buffer
	ctx := tflogtest.RootLogger(context.Background(), &out)
	c, err := newPVEClient(ctx, providerSettings{Endpoint: sim.URL, APIToken: sim.Token, Insecure: true}, userAgent("test", ""))
	if err != nil {
		t.Fatal(err)
	}
	for range 10 {
		if _, err := c.ListVMs(ctx); err != nil {
			t.Fatalf("list VMs: %v", err)
		}
	}
	if _, err := c.Config(ctx, pve.VMRef{Node: "pve", VMID: 4242}); !pve.IsNotFound(err) {
		t.Fatalf("config of a missing VM: %v; want not found", err)
	}

	raw := out.String()
	for _, secret := range []string{sim.TokenSecret, "PVEAPIToken"} {
		if strings.Contains(raw, secret) {
			t.Errorf("the log contains %q:\n%s", secret, raw)
		}
	}
	entries, err := tflogtest.MultilineJSONDecode(&out)
	if err != nil {
		t.Fatal(err)
	}
	var ok, failed, retried int
	for _, e := range entries {
		switch e["@message"] {
		case "pve request":
			d, _ := e["duration"].(string)
			status, _ := e["status"].(float64)
			if e["@level"] != "debug" || e["method"] != "GET" || !strings.HasPrefix(e["path"].(string), "/") ||
				status < 200 || !strings.HasSuffix(d, "s") {
				t.Errorf("request entry %v; want debug, GET, a path, a status and a duration", e)
			}
			if status == 200 {
				ok++
			}
		case "pve request failed":
			failed++
		case "pve: retrying after transient error":
			if e["attempt"] == nil || e["op"] == nil || e["delay"] == nil {
				t.Errorf("retry entry %v; want op, attempt and delay", e)
			}
			retried++
		}
	}
	if ok < 10 || retried == 0 {
		t.Errorf("logged %d successful requests, %d failed, %d retries; want >= 10 successful and some retries:\n%s", ok, failed, retried, raw)
	}
}

func TestTFLogHandler(t *testing.T) {
	var out bytes.Buffer
	ctx := tflogtest.RootLogger(context.Background(), &out)
	log := slog.New(newTFLogHandler("s3cret", ""))
	log.With("vm", "pve/101").WithGroup("req").WarnContext(ctx, "retry s3cret", "attempt", 2, "delay", 1500*time.Millisecond,
		"err", errors.New("token root@pam!t=s3cret refused"))
	log.InfoContext(ctx, "plain")
	entries, err := tflogtest.MultilineJSONDecode(&out)
	if err != nil || len(entries) != 2 {
		t.Fatalf("entries = %v, %v; want 2", entries, err)
	}
	want := map[string]any{
		"@level": "warn", "@message": "retry ***", "vm": "pve/101", "req.attempt": float64(2),
		"req.delay": "1.5s", "req.err": "token root@pam!t=*** refused",
	}
	for k, v := range want {
		if entries[0][k] != v {
			t.Errorf("%s = %v; want %v (entry %v)", k, entries[0][k], v, entries[0])
		}
	}
	if entries[1]["@level"] != "info" || entries[1]["@message"] != "plain" {
		t.Errorf("second entry %v; want info \"plain\"", entries[1])
	}
}
