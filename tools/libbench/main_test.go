package main

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentlab/terraform-provider-agentlab/internal/pvesim"
)

func startTestSimulator(t *testing.T) *simulator {
	t.Helper()
	sim, err := startSimulator(pvesim.ZeroLatency())
	if err != nil {
		t.Fatalf("start simulator: %v", err)
	}
	t.Cleanup(func() { _ = sim.stop() })
	return sim
}

// TestSandboxers creates sandboxes through both sandboxers concurrently and
// checks what the simulator holds, then destroys them.
func TestSandboxers(t *testing.T) {
	tests := []struct {
		name string
		new  func(sim *simulator) (sandboxer, error)
	}{
		{"library", func(sim *simulator) (sandboxer, error) {
			return newLibSandboxer(sim.endpoint, sim.token, newPollSchedule(10*time.Millisecond))
		}},
		{"internal/pve", func(sim *simulator) (sandboxer, error) {
			return newPVESandboxer(context.Background(), sim.endpoint, sim.token)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sim := startTestSimulator(t)
			s, err := tt.new(sim)
			if err != nil {
				t.Fatalf("new sandboxer: %v", err)
			}
			ctx := context.Background()
			const n = 4
			created, _ := runPool(ctx, n, 3, s.create)
			var ids []int
			for i, oc := range created {
				if oc.err != nil {
					t.Fatalf("create %d: %v", i, oc.err)
				}
				ids = append(ids, oc.sb.vmid)
				if got, want := oc.sb.ip, pvesim.GuestIPv4(oc.sb.vmid); got != want {
					t.Errorf("sandbox %d ip = %v; want %v", i, got, want)
				}
				checkConfig(t, sim, oc.sb.vmid, sandboxName(i))
			}
			slices.Sort(ids)
			if got := len(slices.Compact(ids)); got != n {
				t.Errorf("distinct vmids = %d (%v); want %d", got, ids, n)
			}

			destroyed, _ := runPool(ctx, n, 3, func(ctx context.Context, i int) (sandbox, error) {
				return created[i].sb, s.destroy(ctx, created[i].sb)
			})
			for _, oc := range destroyed {
				if oc.err != nil {
					t.Errorf("destroy %d: %v", oc.sb.vmid, oc.err)
				}
			}
			if got, want := sim.srv.VMIDs(), []int{templateVMID}; !slices.Equal(got, want) {
				t.Errorf("vmids after destroy = %v; want %v", got, want)
			}
		})
	}
}

func checkConfig(t *testing.T, sim *simulator, vmid int, name string) {
	t.Helper()
	vm, ok := sim.srv.VM(vmid)
	if !ok {
		t.Fatalf("vm %d does not exist", vmid)
	}
	if !vm.Running {
		t.Errorf("vm %d is not running", vmid)
	}
	want := map[string]string{"name": name, "cores": "2", "memory": "2048", "tags": tags}
	for k, v := range want {
		if got := vm.Config[k]; got != v {
			t.Errorf("vm %d %s = %q; want %q", vmid, k, got, v)
		}
	}
	if got := vm.Config[bootDisk]; !strings.Contains(got, "size="+diskSize) {
		t.Errorf("vm %d %s = %q; want size=%s", vmid, bootDisk, got, diskSize)
	}
}

// TestRun runs both phases with the zero latency model and checks the report.
func TestRun(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"-latency", "zero", "-n", "3", "-workers", "2"}, &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	for _, want := range []string{
		"create wall time, 3 sandboxes (s)",
		"(a) library",
		"(b) internal/pve",
		"POST /nodes/{node}/qemu/{vmid}/clone",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}

func TestParseOptions(t *testing.T) {
	tests := []struct {
		args    []string
		wantErr bool
	}{
		{nil, false},
		{[]string{"-n", "0"}, true},
		{[]string{"-workers", "0"}, true},
		{[]string{"-lib-agent-poll", "-1s"}, true},
		{[]string{"-lib-agent-poll", "5s", "-n", "2"}, false},
	}
	for _, tt := range tests {
		_, err := parseOptions(tt.args)
		if got := err != nil; got != tt.wantErr {
			t.Errorf("parseOptions(%q) error = %v; want error: %v", tt.args, err, tt.wantErr)
		}
	}
}

func TestPollSchedule(t *testing.T) {
	tests := []struct {
		fixed time.Duration
		want  []time.Duration
	}{
		{0, []time.Duration{250 * time.Millisecond, 375 * time.Millisecond, 562500 * time.Microsecond}},
		{5 * time.Second, []time.Duration{5 * time.Second, 5 * time.Second, 5 * time.Second}},
	}
	for _, tt := range tests {
		s := newPollSchedule(tt.fixed)
		var got []time.Duration
		for d := s.first(); len(got) < len(tt.want); d = s.next(d) {
			got = append(got, d)
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("newPollSchedule(%v) intervals = %v; want %v", tt.fixed, got, tt.want)
		}
	}
	s := newPollSchedule(0)
	d := s.first()
	for range 20 {
		d = s.next(d)
	}
	if got, want := d, 5*time.Second; got != want {
		t.Errorf("interval after 20 polls = %v; want %v", got, want)
	}
}
