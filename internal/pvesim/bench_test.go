package pvesim_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/agentlab/terraform-provider-agentlab/internal/pvesim"
	"github.com/agentlab/terraform-provider-agentlab/internal/pvesim/pvesimtest"
)

// Run with: go test -run '^$' -bench . -benchtime 3s ./internal/pvesim/

func benchGet(b *testing.B, sim *pvesimtest.Sim, path string) []byte {
	req, _ := http.NewRequest("GET", sim.URL+path, nil)
	req.Header.Set("Authorization", sim.AuthHeader())
	resp, err := sim.Client.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		b.Fatalf("GET %s = %s", path, resp.Status)
	}
	return body
}

// BenchmarkGetVersion measures a simple authenticated GET over HTTPS with
// keep-alive, one request at a time.
func BenchmarkGetVersion(b *testing.B) {
	sim := pvesimtest.Start(b)
	benchGet(b, sim, "/version") // warm up the TLS connection
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		benchGet(b, sim, "/version")
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}

// BenchmarkGetVersionParallel is the same with concurrent clients.
func BenchmarkGetVersionParallel(b *testing.B) {
	sim := pvesimtest.Start(b)
	benchGet(b, sim, "/version")
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			benchGet(b, sim, "/version")
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}

// BenchmarkCloneWait measures one linked clone and the wait for its task
// (POST clone, GET task status) with the zero latency model.
func BenchmarkCloneWait(b *testing.B) {
	sim := pvesimtest.Start(b)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		req, _ := http.NewRequest("POST", sim.URL+"/nodes/pve/qemu/9000/clone", strings.NewReader("newid="+strconv.Itoa(1000+i)))
		req.Header.Set("Authorization", sim.AuthHeader())
		resp, err := sim.Client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		var up struct{ Data string }
		err = json.NewDecoder(resp.Body).Decode(&up)
		resp.Body.Close()
		if err != nil || up.Data == "" {
			b.Fatalf("clone %d: %s %v", 1000+i, resp.Status, err)
		}
		var st struct{ Data map[string]any }
		if err := json.Unmarshal(benchGet(b, sim, "/nodes/pve/tasks/"+up.Data+"/status"), &st); err != nil {
			b.Fatal(err)
		}
		if st.Data["exitstatus"] != "OK" {
			b.Fatalf("clone task: %v", st.Data)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "clones/s")
}

// benchPut sends PUT .../config and fails on anything but 200.
func benchPut(b *testing.B, sim *pvesimtest.Sim, vmid int, body string) {
	req, _ := http.NewRequest("PUT", sim.URL+"/nodes/pve/qemu/"+strconv.Itoa(vmid)+"/config", strings.NewReader(body))
	req.Header.Set("Authorization", sim.AuthHeader())
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := sim.Client.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		b.Fatalf("PUT config = %s", resp.Status)
	}
}

// BenchmarkDurableConfigWrite measures the cost of durable state: a config
// change answered only once it is on disk, with 50 guests in the state,
// one client at a time and with concurrent clients (group commit), against
// the same without a state dir.
func BenchmarkDurableConfigWrite(b *testing.B) {
	for _, tc := range []struct {
		name     string
		durable  bool
		parallel bool
	}{
		{"memory", false, false},
		{"durable", true, false},
		{"memory-parallel", false, true},
		{"durable-parallel", true, true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			sim := pvesimtest.Start(b, func(o *pvesim.Options) {
				if tc.durable {
					o.StateDir = b.TempDir()
				}
			})
			for id := 100; id < 150; id++ {
				req, _ := http.NewRequest("POST", sim.URL+"/nodes/pve/qemu/9000/clone", strings.NewReader("newid="+strconv.Itoa(id)))
				req.Header.Set("Authorization", sim.AuthHeader())
				resp, err := sim.Client.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				resp.Body.Close()
			}
			b.ResetTimer()
			if tc.parallel {
				var next atomic.Int64
				b.SetParallelism(8) // 16 clients on 2 cores
				b.RunParallel(func(pb *testing.PB) {
					id := 100 + int(next.Add(1))%50
					for i := 0; pb.Next(); i++ {
						benchPut(b, sim, id, "cores="+strconv.Itoa(1+i%4))
					}
				})
			} else {
				for i := 0; i < b.N; i++ {
					benchPut(b, sim, 100+i%50, "cores="+strconv.Itoa(1+i%4))
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "writes/s")
		})
	}
}
