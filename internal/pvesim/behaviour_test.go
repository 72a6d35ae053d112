package pvesim_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentlab/terraform-provider-agentlab/internal/clock"
	"github.com/agentlab/terraform-provider-agentlab/internal/pvesim"
	"github.com/agentlab/terraform-provider-agentlab/internal/pvesim/pvesimtest"
)

const testToken = "root@pam!test=secret"

// serve calls h in-process and returns status and decoded body.
func serve(t *testing.T, h http.Handler, method, path, body string) (int, map[string]any) {
	t.Helper()
	req := httptest.NewRequest(method, "/api2/json"+path, strings.NewReader(body))
	if body == "" {
		req = httptest.NewRequest(method, "/api2/json"+path, nil)
	}
	req.Header.Set("Authorization", "PVEAPIToken="+testToken)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var m map[string]any
	_ = json.Unmarshal(rec.Body.Bytes(), &m)
	return rec.Code, m
}

func newServer(t *testing.T, o pvesim.Options) *pvesim.Server {
	t.Helper()
	o.Tokens = append(o.Tokens, testToken)
	s, err := pvesim.New(o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

// cloneUntilDone allocates an ID with nextid and clones the template,
// retrying when another client took the ID first, as a careful client does.
func cloneUntilDone(ctx context.Context, sim *pvesimtest.Sim) (int, int, error) {
	retries := 0
	for {
		var id struct{ Data string }
		if err := getJSON(ctx, sim, "GET", "/cluster/nextid", "", &id); err != nil {
			return 0, retries, err
		}
		var up struct {
			Data    string
			Message string
		}
		if err := getJSON(ctx, sim, "POST", "/nodes/pve/qemu/9000/clone", "newid="+id.Data, &up); err != nil {
			return 0, retries, err
		}
		if up.Data == "" {
			if strings.Contains(up.Message, "already exists") {
				retries++
				continue
			}
			return 0, retries, fmt.Errorf("clone %s: %s", id.Data, up.Message)
		}
		ti, err := sim.Server.WaitTask(ctx, up.Data)
		if err != nil {
			return 0, retries, err
		}
		if ti.ExitStatus != "OK" {
			// A VMID another client took first, or a lock wait that timed
			// out under contention (PVE's 1 s shared source lock): a real
			// client tries again, and so does this one.
			if strings.Contains(ti.ExitStatus, "already exists") || strings.Contains(ti.ExitStatus, "got timeout") {
				retries++
				continue
			}
			return 0, retries, fmt.Errorf("clone task %s: %s", id.Data, ti.ExitStatus)
		}
		var n int
		fmt.Sscan(id.Data, &n)
		return n, retries, nil
	}
}

func getJSON(ctx context.Context, sim *pvesimtest.Sim, method, path, body string, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, sim.URL+path, strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", sim.AuthHeader())
	resp, err := sim.Client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(out)
}

func TestParallelClonesGetDistinctVMs(t *testing.T) {
	for _, lat := range []pvesim.Latency{pvesim.ZeroLatency(), {LinkedClone: 5 * time.Millisecond, CloneLockTimeout: 5 * time.Second}} {
		t.Run(fmt.Sprintf("clone=%v", lat.LinkedClone), func(t *testing.T) {
			sim := pvesimtest.Start(t, func(o *pvesim.Options) { o.Latency = lat })
			ctx := context.Background()
			const n = 50
			ids := make([]int, n)
			errs := make([]error, n)
			var wg sync.WaitGroup
			for i := 0; i < n; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					ids[i], _, errs[i] = cloneUntilDone(ctx, sim)
				}()
			}
			wg.Wait()
			seen := map[int]bool{}
			for i, id := range ids {
				if errs[i] != nil {
					t.Fatalf("client %d: %v", i, errs[i])
				}
				if seen[id] {
					t.Fatalf("VMID %d given to two clients", id)
				}
				seen[id] = true
			}
			disks := map[string]int{}
			for id := range seen {
				cfg, ok := sim.Server.VMConfig(id)
				if !ok || cfg["lock"] != "" {
					t.Fatalf("VM %d: exists %v, lock %q; want an unlocked VM", id, ok, cfg["lock"])
				}
				disks[cfg["scsi0"]]++
			}
			if len(disks) != n {
				t.Errorf("%d distinct disks for %d VMs; want one each", len(disks), n)
			}
		})
	}
}

func TestStatePersistsAcrossRestarts(t *testing.T) {
	dir := t.TempDir()
	s1 := newServer(t, pvesim.Options{StateDir: dir})
	h := s1.Handler()
	if code, m := serve(t, h, "POST", "/nodes/pve/qemu/9000/clone", "newid=101&name=keep"); code != 200 {
		t.Fatalf("clone = %d %v", code, m)
	}
	serve(t, h, "POST", "/nodes/pve/qemu/101/status/start", "")
	if code, m := serve(t, h, "POST", "/nodes/pve/storage/local-lvm/content", "filename=vm-999-disk-0&size=1G&vmid=999"); code != 200 {
		t.Fatalf("alloc = %d %v", code, m)
	}
	tasksBefore := len(s1.Tasks())
	if err := s1.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	s2 := newServer(t, pvesim.Options{StateDir: dir})
	defer s2.Close()
	vm, ok := s2.VM(101)
	if !ok || !vm.Running || vm.Config["name"] != "keep" {
		t.Fatalf("VM 101 after restart = %+v, %v; want running VM named keep", vm, ok)
	}
	if got := len(s2.Tasks()); got != tasksBefore {
		t.Errorf("%d tasks after restart; want %d", got, tasksBefore)
	}
	found := false
	for _, v := range s2.Volumes("pve") {
		found = found || v.Volid == "local-lvm:vm-999-disk-0"
	}
	if !found {
		t.Errorf("allocated volume lost across restart")
	}
	// New PIDs continue after the saved ones, so UPIDs never repeat.
	_, m := serve(t, s2.Handler(), "POST", "/nodes/pve/qemu/101/status/stop", "")
	upid := m["data"].(string)
	for _, ti := range s2.Tasks()[:tasksBefore] {
		if strings.Split(ti.UPID, ":")[2] == strings.Split(upid, ":")[2] {
			t.Errorf("new task reuses PID of %s", ti.UPID)
		}
	}
}

func TestRestartEndsInterruptedTasks(t *testing.T) {
	dir := t.TempDir()
	s1 := newServer(t, pvesim.Options{StateDir: dir, Latency: pvesim.Latency{LinkedClone: time.Hour}})
	_, m := serve(t, s1.Handler(), "POST", "/nodes/pve/qemu/9000/clone", "newid=102")
	upid, _ := m["data"].(string)
	waitFor(t, func() bool { cfg, ok := s1.VMConfig(102); return ok && cfg["lock"] == "clone" })
	if err := s1.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	s2 := newServer(t, pvesim.Options{StateDir: dir})
	defer s2.Close()
	var ti pvesim.TaskInfo
	for _, x := range s2.Tasks() {
		if x.UPID == upid {
			ti = x
		}
	}
	if ti.Running || ti.ExitStatus != "unexpected status" {
		t.Errorf("interrupted clone after restart = running %v exitstatus %q; want stopped, unexpected status", ti.Running, ti.ExitStatus)
	}
	// PVE keeps the lock in the config file: the placeholder stays locked.
	cfg, ok := s2.VMConfig(102)
	if !ok || len(cfg) != 1 || cfg["lock"] != "clone" {
		t.Errorf("clone target after restart = %v (exists %v); want exactly lock: clone", cfg, ok)
	}
}

func TestFaultInjection(t *testing.T) {
	run := func(seed int64) ([]int, pvesim.Stats) {
		s := newServer(t, pvesim.Options{FaultRate: 0.5, Seed: seed, FaultDelay: time.Millisecond})
		defer s.Close()
		h := s.Handler()
		var codes []int
		for i := 0; i < 40; i++ {
			code, _ := serve(t, h, "GET", "/cluster/resources", "")
			codes = append(codes, code)
		}
		for i := 0; i < 40; i++ {
			code, body := serve(t, h, "PUT", "/nodes/pve/qemu/9000/config", "description=x")
			codes = append(codes, code)
			if code == 596 && body != nil {
				t.Errorf("596 answer has a JSON body %v; want plain text", body)
			}
		}
		return codes, s.Stats()
	}
	a, statsA := run(42)
	b, _ := run(42)
	if fmt.Sprint(a) != fmt.Sprint(b) {
		t.Errorf("same seed gave different faults:\n%v\n%v", a, b)
	}
	c, _ := run(43)
	if fmt.Sprint(a) == fmt.Sprint(c) {
		t.Errorf("seeds 42 and 43 gave the same faults %v", a)
	}
	if statsA.FaultsInjected < 20 || statsA.FaultsInjected > 60 {
		t.Errorf("%d faults in 80 requests at rate 0.5; want about 40", statsA.FaultsInjected)
	}
	for _, k := range []string{pvesim.FaultServerError, pvesim.FaultProxy, pvesim.FaultLockTimeout, pvesim.FaultSlow} {
		if statsA.Faults[k] == 0 {
			t.Errorf("no %s faults in %v", k, statsA.Faults)
		}
	}
	failed := 0
	for _, code := range a {
		if code != 200 {
			failed++
		}
	}
	if want := statsA.FaultsInjected - statsA.Faults[pvesim.FaultSlow]; failed != want {
		t.Errorf("%d failed answers; want %d (faults other than slow)", failed, want)
	}
}

func TestFaultsChangeNothingAndSpareLogin(t *testing.T) {
	s := newServer(t, pvesim.Options{FaultRate: 1, Seed: 1, Users: []string{"root@pam:pw"}, FaultDelay: time.Millisecond})
	defer s.Close()
	h := s.Handler()
	for i := 0; i < 10; i++ {
		code, m := serve(t, h, "POST", "/nodes/pve/qemu/9000/clone", fmt.Sprintf("newid=%d", 200+i))
		if code == 200 {
			continue // a slow fault: served normally
		}
		if _, ok := s.VM(200 + i); ok {
			t.Errorf("failed clone %d (%d %v) created the VM; want no change", 200+i, code, m)
		}
		if code == 500 && strings.Contains(fmt.Sprint(m["message"]), "can't lock file") &&
			!strings.Contains(fmt.Sprint(m["message"]), "lock-9000.conf") {
			t.Errorf("lock timeout %v names the wrong VM", m["message"])
		}
	}
	for i := 0; i < 5; i++ {
		req := httptest.NewRequest("POST", "/api2/json/access/ticket", strings.NewReader("username=root%40pam&password=pw"))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != 200 {
			t.Errorf("login with faults on = %d; want 200 (logins are never faulted)", rec.Code)
		}
	}
	for i := 0; i < 20; i++ {
		_, m := serve(t, h, "GET", "/nodes/pve/qemu/9000/config", "")
		if strings.Contains(fmt.Sprint(m["message"]), "can't lock file") {
			t.Errorf("GET got a lock timeout fault; want those only on calls that change a VM")
		}
	}
}

func TestConfigLockContention(t *testing.T) {
	sim := pvesimtest.Start(t, func(o *pvesim.Options) {
		o.Latency = pvesim.Latency{ConfigLockTimeout: 50 * time.Millisecond, CloneLockTimeout: 50 * time.Millisecond}
	})
	cloneVM(t, sim, 101, "")
	ctx := context.Background()
	release, err := sim.Server.HoldConfigLock(ctx, 101)
	if err != nil {
		t.Fatal(err)
	}
	a := do(t, sim, "PUT", "/nodes/pve/qemu/101/config", "cores=2", "")
	if a.status != 500 || a.reason != "can't lock file '/var/lock/qemu-server/lock-101.conf' - got timeout" {
		t.Errorf("PUT config while locked = %d %q; want 500 can't lock file ... got timeout", a.status, a.reason)
	}
	release()
	if a := do(t, sim, "PUT", "/nodes/pve/qemu/101/config", "cores=2", ""); a.status != 200 {
		t.Errorf("PUT config after release = %d %q; want 200", a.status, a.reason)
	}

	release, err = sim.Server.HoldConfigLock(ctx, 9000)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	if st := task(t, sim, "POST", "/nodes/pve/qemu/9000/clone", "newid=102"); st != "can't lock file '/var/lock/qemu-server/lock-9000.conf' - got timeout" {
		t.Errorf("clone while the source is locked = %q; want the lock timeout as a task error", st)
	}
	if _, ok := sim.Server.VM(102); ok {
		t.Errorf("clone target exists after the clone failed")
	}
}

// TestRealisticLatencyRunsTasksInBackground: under the realistic model a
// clone call answers its UPID after its service time while the clone runs
// on, and the clone takes its modelled time. The model waits on a fake
// clock that the test moves only while the step it measures waits.
func TestRealisticLatencyRunsTasksInBackground(t *testing.T) {
	lat := pvesim.RealisticLatency()
	fake := clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	sim := pvesimtest.Start(t, func(o *pvesim.Options) { o.Latency, o.Timers = lat, fake })
	send := func(method, path, body string) (<-chan answer, <-chan struct{}) {
		out, done := make(chan answer, 1), make(chan struct{})
		go func() {
			defer close(done)
			req, _ := http.NewRequest(method, sim.URL+path, strings.NewReader(body))
			req.Header.Set("Authorization", sim.AuthHeader())
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			resp, err := sim.Client.Do(req)
			if err != nil {
				out <- answer{reason: err.Error()}
				return
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			out <- answer{status: resp.StatusCode, body: b}
		}()
		return out, done
	}
	dataOf := func(a answer) any {
		t.Helper()
		var out struct {
			Data any `json:"data"`
		}
		if a.status != 200 || json.Unmarshal(a.body, &out) != nil {
			t.Fatalf("answer %d %s %s; want 200 with data", a.status, a.reason, a.body)
		}
		return out.Data
	}

	out, done := send("POST", "/nodes/pve/qemu/9000/clone", "newid=101")
	if moved := pumpClock(fake, lat.Service.TaskStart, done); moved != lat.Service.TaskStart {
		t.Errorf("the clone call answered after %v on the clock; want its service time %v", moved, lat.Service.TaskStart)
	}
	upid := dataOf(<-out).(string)

	out, done = send("GET", "/nodes/pve/tasks/"+upid+"/status", "")
	inClone := pumpClock(fake, lat.Service.Read, done)
	if st := dataOf(<-out).(map[string]any); st["status"] != "running" {
		t.Errorf("clone status after %v = %v; want running", inClone, st["status"])
	}

	finished := make(chan struct{})
	var ti pvesim.TaskInfo
	var err error
	go func() {
		defer close(finished)
		ti, err = sim.Server.WaitTask(context.Background(), upid)
	}()
	inClone += pumpClock(fake, lat.LinkedClone, finished)
	if err != nil || ti.ExitStatus != "OK" {
		t.Fatalf("WaitTask = %+v, %v; want OK", ti, err)
	}
	if inClone < lat.LinkedClone || inClone > lat.LinkedClone+10*time.Millisecond {
		t.Errorf("clone took %v on the clock; want %v", inClone, lat.LinkedClone)
	}
}

// pumpClock moves the fake clock forward a millisecond at a time while a
// timer due within d waits on it, until done is closed; it returns how far
// it moved. Timers further away (a task running behind a call) stay put.
func pumpClock(fake *clock.Fake, d time.Duration, done <-chan struct{}) time.Duration {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-done:
			cancel()
		case <-ctx.Done():
		}
	}()
	var moved time.Duration
	for fake.BlockUntilDue(ctx, 1, d) == nil {
		fake.Advance(time.Millisecond)
		moved += time.Millisecond
	}
	return moved
}
