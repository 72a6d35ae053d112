package main

import (
	"log/slog"
	"slices"
	"testing"
	"time"
)

// TestAnalyse reads a made-up request log: the first clone's arrival gives
// the head, each guest's first agent answer sent after its boot its
// lateness (an answer sent before the boot does not count, one to a poll
// that arrived before it but was answered after does), its seed delete
// after that answer the retirement, the last one the tail.
func TestAnalyse(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	reqs := []served{
		{end: at(1100), dur: 100 * time.Millisecond, method: "POST", path: "/api2/json/nodes/pve/qemu/9000/clone", route: "POST /nodes/{node}/qemu/{vmid}/clone", status: 200},
		// guest 100 boots at 10 s: an answer at 9.995 s does not count, one
		// at 10.6 s to a poll that arrived at 9.9 s does
		{end: at(9995), dur: 10 * time.Millisecond, method: "GET", path: "/api2/json/nodes/pve/qemu/100/agent/network-get-interfaces", route: "GET agent", status: 200},
		{end: at(10600), dur: 700 * time.Millisecond, method: "GET", path: "/api2/json/nodes/pve/qemu/100/agent/network-get-interfaces", route: "GET agent", status: 200},
		{end: at(10700), dur: 50 * time.Millisecond, method: "DELETE", path: "/api2/json/nodes/pve/storage/local/content/local:iso/agentlab-100-cidata.iso", route: "DELETE content", status: 200},
		// guest 101 boots at 20 s, is seen 1 s late
		{end: at(20000), dur: 3 * time.Second, method: "GET", path: "/api2/json/nodes/pve/qemu/101/agent/network-get-interfaces", route: "GET agent", status: 500},
		{end: at(21000), dur: 10 * time.Millisecond, method: "GET", path: "/api2/json/nodes/pve/qemu/101/agent/network-get-interfaces", route: "GET agent", status: 200},
		{end: at(21200), dur: 50 * time.Millisecond, method: "DELETE", path: "/api2/json/nodes/pve/storage/local/content/local:iso/agentlab-101-cidata.iso", route: "DELETE content", status: 200},
	}
	guests := []guest{{vmid: 100, bootedAt: at(10000)}, {vmid: 101, bootedAt: at(20000)}}
	tl := analyse(reqs, guests, 1, t0, at(21500))
	if tl.head != time.Second {
		t.Errorf("got head %v; want 1s", tl.head)
	}
	if want := []time.Duration{600 * time.Millisecond, time.Second}; !slices.Equal(tl.late, want) {
		t.Errorf("got late %v; want %v", tl.late, want)
	}
	if want := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond}; !slices.Equal(tl.retire, want) {
		t.Errorf("got retire %v; want %v", tl.retire, want)
	}
	if tl.tail != 300*time.Millisecond {
		t.Errorf("got tail %v; want 300ms", tl.tail)
	}
	if got := tl.count["GET agent (500)"]; got != 1 {
		t.Errorf("got %d failed agent polls; want 1 (by route and status)", got)
	}
	if got := tl.wait["GET agent"]; got != (10+700+10)*time.Millisecond/3 {
		t.Errorf("got mean agent wait %v; want 240ms", got)
	}
}

// TestRecorder keeps the simulator's request lines and nothing else.
func TestRecorder(t *testing.T) {
	rec := &recorder{}
	log := slog.New(rec)
	log.Debug("request", "method", "GET", "path", "/api2/json/nodes/pve/storage/local/content/local%3Aiso%2Fx.iso",
		"status", 200, "route", "GET r", "duration", 5*time.Millisecond)
	log.Info("serving", "endpoint", "x")
	got := rec.requests(time.Time{}, time.Now().Add(time.Hour))
	if len(got) != 1 {
		t.Fatalf("got %d requests; want 1", len(got))
	}
	if s := got[0]; s.method != "GET" || s.path != "/api2/json/nodes/pve/storage/local/content/local:iso/x.iso" ||
		s.status != 200 || s.route != "GET r" || s.dur != 5*time.Millisecond {
		t.Errorf("got %+v; want the request's fields, path unescaped", s)
	}
}
