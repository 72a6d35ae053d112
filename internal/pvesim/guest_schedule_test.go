package pvesim

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/agentlab/terraform-provider-agentlab/internal/clock"
)

// TestGuestBootsAfterItsBootTime: a started VM's guest (its cloud-init
// user-data, hence the job runner) runs once the VM has booted, when its
// guest agent answers too, not at the start; a VM stopped or started again
// before that does not get the earlier start's guest.
func TestGuestBootsAfterItsBootTime(t *testing.T) {
	const boot = 30 * time.Second
	fake := clock.NewFake(time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC))
	s, err := New(Options{Clock: fake, Timers: fake, Latency: Latency{GuestAgentIP: boot}})
	if err != nil {
		t.Fatal(err)
	}
	// The init is missing: a boot shows as its plan written, then a failed
	// start on the console; no guest process runs (no root needed).
	s.guests = &guests{base: t.TempDir(), log: slog.New(slog.DiscardHandler), running: map[int]*guestProc{},
		init: []string{filepath.Join(t.TempDir(), "no-init")}}
	due := make(chan int, 8)
	s.guestBootDue = func(vmid int) { due <- vmid }
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// waitDue waits until the boots of vmids have come due.
	waitDue := func(vmids ...int) {
		t.Helper()
		for range vmids {
			select {
			case <-due:
			case <-ctx.Done():
				t.Fatalf("boots of %v never came due", vmids)
			}
		}
	}
	booted := func(vmid int) bool {
		_, err := os.Stat(filepath.Join(s.guests.dir(vmid), "boot.json"))
		return err == nil
	}
	s.mu.Lock()
	s.addVolumeLocked(&volume{Node: "pve", Storage: "local", Volid: "local:iso/seed.iso", Content: "iso",
		Format: "iso", Data: seedImage(t, "")})
	var vms []*vmState
	for _, id := range []int{101, 102, 103} {
		v := &vmState{VMID: id, Node: "pve", Conf: map[string]string{"ide2": "local:iso/seed.iso,media=cdrom"}}
		s.st.VMs[id] = v
		s.startVMLocked(v)
		vms = append(vms, v)
	}
	s.mu.Unlock()
	if err := fake.BlockUntil(ctx, 3); err != nil {
		t.Fatal(err)
	}
	for _, id := range []int{101, 102, 103} {
		if booted(id) {
			t.Fatalf("vm %d's guest ran at the VM's start; want it after its %s boot", id, boot)
		}
	}

	s.mu.Lock()
	stopVM(vms[1]) // 102 stops before it has booted
	stopVM(vms[2]) // 103 stops and starts again 10 s later
	s.mu.Unlock()
	fake.Advance(10 * time.Second)
	s.mu.Lock()
	s.startVMLocked(vms[2])
	s.mu.Unlock()
	if err := fake.BlockUntil(ctx, 4); err != nil {
		t.Fatal(err)
	}
	fake.Advance(boot - 10*time.Second) // the first starts' boot time is over
	waitDue(101, 102, 103)
	if !booted(101) {
		t.Errorf("vm 101's guest did not run once its boot time was over")
	}
	if booted(102) || booted(103) {
		t.Errorf("guests of VMs stopped before their boot ran (102: %v, 103: %v)", booted(102), booted(103))
	}
	fake.Advance(10 * time.Second) // 103's second start has booted
	waitDue(103)
	if !booted(103) {
		t.Errorf("vm 103's guest did not run after its second start's boot")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}
