// Command uploadbench measures artifact uploads through the reaper's guest
// listener against the real agentlab-reaper binary: the throughput of an
// upload (streamed to disk, sha256 on the way, fsync, rename) as a ratio to
// writing the same bytes to the same disk (fsync) in the same run, and the
// reaper's peak resident memory during uploads of growing size (it should
// stay flat: uploads are streamed, never buffered).
//
//	go run ./tools/uploadbench -reaper bin/agentlab-reaper [-sizes 64MiB,256MiB,1GiB] [-rounds 3]
package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/agentlab/terraform-provider-agentlab/internal/job"
	"github.com/agentlab/terraform-provider-agentlab/reaper/api"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "uploadbench:", err)
		os.Exit(1)
	}
}

func run() error {
	reaperBin := flag.String("reaper", "bin/agentlab-reaper", "the agentlab-reaper `binary`")
	sizesFlag := flag.String("sizes", "64MiB,256MiB,1GiB", "upload `sizes`, comma-separated (MiB, GiB)")
	rounds := flag.Int("rounds", 3, "rounds per size; the median is reported")
	dirFlag := flag.String("dir", "", "working `directory` (default: a temporary one under .bench)")
	flag.Parse()
	sizes, err := parseSizes(*sizesFlag)
	if err != nil {
		return err
	}
	dir := *dirFlag
	if dir == "" {
		if err := os.MkdirAll(".bench", 0o755); err != nil {
			return err
		}
		if dir, err = os.MkdirTemp(".bench", "upload-"); err != nil {
			return err
		}
		defer os.RemoveAll(dir)
	}
	dir, _ = filepath.Abs(dir)

	r, err := startReaper(*reaperBin, dir)
	if err != nil {
		return err
	}
	defer r.stop()

	buf := make([]byte, 1<<20)
	rand.Read(buf)
	fmt.Printf("%-8s  %12s  %12s  %6s  %14s\n", "size", "disk MB/s", "upload MB/s", "ratio", "reaper peak RSS")
	for _, size := range sizes {
		var disk, up []float64
		var peak int64
		// The runner uploads a file (curl -T): so does the bench, from a
		// file written once (and cached) before the rounds.
		src := filepath.Join(dir, "source")
		if _, err := writeDisk(src, size, buf, true); err != nil {
			return err
		}
		for range *rounds {
			d, err := writeDisk(filepath.Join(dir, "baseline"), size, buf, false)
			if err != nil {
				return err
			}
			u, p, err := r.upload(src, size)
			if err != nil {
				return err
			}
			disk, up, peak = append(disk, mbps(size, d)), append(up, mbps(size, u)), max(peak, p)
		}
		dm, um := median(disk), median(up)
		fmt.Printf("%-8s  %12.0f  %12.0f  %6.2f  %11.1f MiB\n", sizeText(size), dm, um, um/dm, float64(peak)/(1<<20))
	}
	return nil
}

// reaperProc is a running agentlab-reaper with a job to upload to.
type reaperProc struct {
	cmd      *exec.Cmd
	guestURL string
	ctl      *api.Client
	dir      string
}

func startReaper(bin, dir string) (*reaperProc, error) {
	guestAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	token := filepath.Join(dir, "pve-token")
	if err := os.WriteFile(token, []byte("root@pam!bench=secret\n"), 0o600); err != nil {
		return nil, err
	}
	sock := filepath.Join(dir, "reaper.sock")
	conf := fmt.Sprintf(`proxmox:
  endpoint: "https://127.0.0.1:1"
  api_token_file: %q
database: %q
interval: 1h
control:
  socket: %q
guest:
  listen: %q
metrics:
  listen: ""
artifacts:
  dir: %q
  max_bytes: 20GiB
`, token, filepath.Join(dir, "reaper.db"), sock, guestAddr, filepath.Join(dir, "artifacts"))
	cfgPath := filepath.Join(dir, "reaper.yaml")
	if err := os.WriteFile(cfgPath, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "serve", "--config", cfgPath, "--log-level", "warn")
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	r := &reaperProc{cmd: cmd, guestURL: "http://" + guestAddr, ctl: api.NewUnixClient(sock), dir: dir}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := r.ctl.Status(context.Background()); err == nil {
			return r, nil
		}
		if time.Now().After(deadline) {
			r.stop()
			return nil, fmt.Errorf("agentlab-reaper did not come up on %s", sock)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (r *reaperProc) stop() {
	r.cmd.Process.Signal(os.Interrupt)
	r.cmd.Wait()
}

// upload registers a job, fetches its token and uploads size bytes; it
// returns the time from the first byte sent to the reaper's 201, and the
// reaper's peak RSS sampled meanwhile.
func (r *reaperProc) upload(src string, size int64) (time.Duration, int64, error) {
	ctx := context.Background()
	reg, err := r.ctl.RegisterJob(ctx, job.RegisterRequest{Repo: "file:///bench", Ref: "main", Task: "true"})
	if err != nil {
		return 0, 0, err
	}
	req, _ := http.NewRequest(http.MethodGet, r.guestURL+"/v1/job/spec", nil)
	req.Header.Set("Authorization", "Bearer "+reg.BootstrapToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, 0, err
	}
	var spec job.Spec
	err = json.NewDecoder(resp.Body).Decode(&spec)
	resp.Body.Close()
	if err != nil {
		return 0, 0, err
	}

	var peak atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			if rss := rssBytes(r.cmd.Process.Pid); rss > peak.Load() {
				peak.Store(rss)
			}
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	f, err := os.Open(src)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	req, _ = http.NewRequest(http.MethodPut, r.guestURL+"/v1/job/artifacts/out/big.bin", f)
	req.ContentLength = size
	req.Header.Set("Authorization", "Bearer "+spec.Token)
	start := time.Now()
	resp, err = http.DefaultClient.Do(req)
	elapsed := time.Since(start)
	close(stop)
	wg.Wait()
	if err != nil {
		return 0, 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		return 0, 0, fmt.Errorf("upload answered %s", resp.Status)
	}
	// Free the disk for the next round.
	os.RemoveAll(filepath.Join(r.dir, "artifacts", reg.Job.ID))
	return elapsed, peak.Load(), nil
}

// writeDisk writes size bytes to path and fsyncs, as the reaper does; the
// file is removed unless keep.
func writeDisk(path string, size int64, buf []byte, keep bool) (time.Duration, error) {
	start := time.Now()
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	if _, err := io.CopyBuffer(f, &repeatReader{buf: buf, left: size}, make([]byte, 1<<20)); err != nil {
		f.Close()
		return 0, err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return 0, err
	}
	if err := f.Close(); err != nil {
		return 0, err
	}
	d := time.Since(start)
	if keep {
		return d, nil
	}
	return d, os.Remove(path)
}

// repeatReader yields buf over and over, left bytes in all.
type repeatReader struct {
	buf  []byte
	off  int
	left int64
}

func (r *repeatReader) Read(p []byte) (int, error) {
	if r.left == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.buf[r.off:])
	n = int(min(int64(n), r.left))
	r.off = (r.off + n) % len(r.buf)
	r.left -= int64(n)
	return n, nil
}

// rssBytes reads VmRSS of pid from /proc.
func rssBytes(pid int) int64 {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func parseSizes(s string) ([]int64, error) {
	var out []int64
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		mult := int64(1)
		switch {
		case strings.HasSuffix(f, "GiB"):
			mult, f = 1<<30, strings.TrimSuffix(f, "GiB")
		case strings.HasSuffix(f, "MiB"):
			mult, f = 1<<20, strings.TrimSuffix(f, "MiB")
		}
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("-sizes: %q is not a size such as 256MiB or 1GiB", f)
		}
		out = append(out, n*mult)
	}
	return out, nil
}

func mbps(size int64, d time.Duration) float64 { return float64(size) / (1 << 20) / d.Seconds() }

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

func sizeText(n int64) string {
	if n >= 1<<30 && n%(1<<30) == 0 {
		return strconv.FormatInt(n>>30, 10) + "GiB"
	}
	return strconv.FormatInt(n>>20, 10) + "MiB"
}
