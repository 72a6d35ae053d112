package pvesim

import (
	"encoding/json"
	"reflect"
	"sort"
	"testing"
	"time"
)

func TestCallKinds(t *testing.T) {
	want := map[string]string{
		"GET /version":                                 KindRead,
		"GET /nodes/{node}/tasks/{upid}/status":        KindRead,
		"GET /cluster/resources":                       KindResources,
		"GET /nodes/{node}/qemu/{vmid}/config":         KindConfigRead,
		"GET /nodes/{node}/qemu/{vmid}/status/current": KindConfigRead,
		"PUT /nodes/{node}/qemu/{vmid}/config":         KindConfigWrite,
		"POST /access/ticket":                          KindConfigWrite,
		"POST /nodes/{node}/qemu/{vmid}/config":        KindTaskStart,
		"POST /nodes/{node}/qemu/{vmid}/clone":         KindTaskStart,
		"POST /nodes/{node}/qemu/{vmid}/status/start":  KindTaskStart,
		"DELETE /nodes/{node}/qemu/{vmid}":             KindTaskStart,
		"PUT /nodes/{node}/qemu/{vmid}/resize":         KindTaskStart,
		"POST /nodes/{node}/storage/{storage}/upload":  KindTaskStart,
	}
	seen := map[string]bool{}
	for _, r := range routeTable() {
		key := r.Method + " " + r.Path
		if w, ok := want[key]; ok {
			seen[key] = true
			if got := callKind(r); got != w {
				t.Errorf("kind of %s = %s; want %s", key, got, w)
			}
		}
	}
	for k := range want {
		if !seen[k] {
			t.Errorf("route %s not in the table", k)
		}
	}
}

func TestResourcesServiceGrowsWithGuests(t *testing.T) {
	s, err := New(Options{Latency: Latency{Service: Service{Resources: 10 * time.Millisecond, ResourcesPerGuest: time.Millisecond}}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	before := s.serviceTime(KindResources) // the template only
	if before != 11*time.Millisecond {
		t.Errorf("service time with 1 guest = %v; want 11ms", before)
	}
	s.mu.Lock()
	for id := 100; id < 200; id++ {
		s.st.VMs[id] = &vmState{VMID: id, Node: "pve", Conf: map[string]string{}}
	}
	s.mu.Unlock()
	if got := s.serviceTime(KindResources); got != 111*time.Millisecond {
		t.Errorf("service time with 101 guests = %v; want 111ms", got)
	}
}

// TestBootTimes checks the realistic boot spread: within 20-60 s, median
// near 25 s, a long tail, and the same draws for the same seed.
func TestBootTimes(t *testing.T) {
	draw := func(seed int64) []time.Duration {
		s := &Server{opts: Options{Seed: seed, Latency: RealisticLatency()}}
		var out []time.Duration
		for vmid := 100; vmid < 1100; vmid++ {
			out = append(out, s.bootTime(vmid, 0x1000+vmid))
		}
		return out
	}
	a, b := draw(7), draw(7)
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("draw %d differs for the same seed: %v, %v", i, a[i], b[i])
		}
		if a[i] < 20*time.Second || a[i] > 60*time.Second {
			t.Fatalf("boot time %v outside 20-60 s", a[i])
		}
	}
	sorted := append([]time.Duration(nil), a...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
	if med := sorted[len(sorted)/2]; med < 23*time.Second || med > 27*time.Second {
		t.Errorf("median boot = %v; want about 25 s", med)
	}
	if p95 := sorted[len(sorted)*95/100]; p95 < 45*time.Second {
		t.Errorf("95th percentile boot = %v; want a long tail (>= 45 s)", p95)
	}
	if c := draw(8); c[0] == a[0] && c[1] == a[1] && c[2] == a[2] {
		t.Errorf("seeds 7 and 8 gave the same boots")
	}
	fixed, err := WithBoot(RealisticLatency(), "8s")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{opts: Options{Latency: fixed}}
	if got := s.bootTime(100, 0x1000); got != 8*time.Second {
		t.Errorf("--boot 8s gives %v; want 8s", got)
	}
	zero, _ := WithBoot(RealisticLatency(), "zero")
	s = &Server{opts: Options{Latency: zero}}
	if got := s.bootTime(100, 0x1000); got != 0 {
		t.Errorf("--boot zero gives %v; want 0", got)
	}
	// The accessor reports the boot time of the VM's current start.
	srv, err := New(Options{Seed: 7, Latency: RealisticLatency().Scaled(0.001)})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	srv.mu.Lock()
	srv.st.VMs[100] = &vmState{VMID: 100, Node: "pve", Conf: map[string]string{}, Running: true, PID: 0x1234}
	want := srv.bootTime(100, 0x1234)
	srv.mu.Unlock()
	if vm, _ := srv.VM(100); vm.BootTime != want || want == 0 {
		t.Errorf("VM(100).BootTime = %v; want %v", vm.BootTime, want)
	}
	if _, err := WithBoot(Latency{}, "soon"); err == nil {
		t.Errorf("--boot soon accepted")
	}
}

// TestEncodeStateMatchesMarshal guards the hand-assembled state encoding:
// it must decode to what json.Marshal of the state decodes to, before and
// after the task encodings are cached.
func TestEncodeStateMatchesMarshal(t *testing.T) {
	s, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.st.Tasks = append(s.st.Tasks,
		&task{UPID: "UPID:pve:00001000:0000ABCD:6B098FA7:qmclone:9000:root@pam:", Node: "pve", Type: "qmclone", ExitStatus: "OK", Log: []string{"TASK OK"}},
		&task{UPID: "UPID:pve:00001001:0000ABCD:6B098FA7:qmstart:100:root@pam:", Node: "pve", Type: "qmstart", Running: true})
	s.st.MACSeq, s.st.NextPID = 42, 0x1002
	for round := 0; round < 2; round++ {
		got, err := encodeStateLocked(s.st)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := json.Marshal(s.st)
		var g, w any
		if err := json.Unmarshal(got, &g); err != nil {
			t.Fatalf("round %d: invalid JSON %s: %v", round, got, err)
		}
		_ = json.Unmarshal(want, &w)
		if !reflect.DeepEqual(g, w) {
			t.Fatalf("round %d: encoded state\n%s\nwant\n%s", round, got, want)
		}
	}
	if s.st.Tasks[0].enc == nil || s.st.Tasks[1].enc != nil {
		t.Errorf("cache: stopped task cached %v, running task cached %v; want true, false",
			s.st.Tasks[0].enc != nil, s.st.Tasks[1].enc != nil)
	}
}
