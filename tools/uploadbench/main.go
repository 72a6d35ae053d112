// Command uploadbench measures artifact uploads through the reaper's guest
// listener against the real agentlab-reaper binary: the throughput of an
// upload (streamed to disk, sha256 on the way, fsync, rename) as a ratio to
// writing the same bytes to the same disk (fsync) in the same run, and the
// reaper's peak resident memory during uploads of growing size (it should
// stay flat: uploads are streamed, never buffered).
//
// The client is curl with the options the job runner uses (curl -T FILE),
// as in a sandbox; -client go uses Go's HTTP client instead, which times
// the end of the body, so the time from
// the last byte sent to the reaper's answer (fsync, rename, the store) is
// seen on its own. Every round reports the CPU time the reaper and the
// client spent, so a CPU-bound upload shows as such.
//
//	go run ./tools/uploadbench -reaper bin/agentlab-reaper [-sizes 64MiB,256MiB,1GiB] [-rounds 3] [-client curl|go] [-v]
package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/agentlab/terraform-provider-agentlab/internal/job"
	"github.com/agentlab/terraform-provider-agentlab/internal/size"
	"github.com/agentlab/terraform-provider-agentlab/internal/writeback"
	"github.com/agentlab/terraform-provider-agentlab/reaper/api"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "uploadbench:", err)
		os.Exit(1)
	}
}

func run(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("uploadbench", flag.ContinueOnError)
	reaperBin := fs.String("reaper", "bin/agentlab-reaper", "the agentlab-reaper `binary`")
	sizesFlag := fs.String("sizes", "64MiB,256MiB,1GiB", "upload `sizes`, comma-separated, such as 64MiB or 1G")
	rounds := fs.Int("rounds", 3, "rounds per size; the median is reported")
	client := fs.String("client", "curl", "the uploading `client`: curl (as the job runner) or go")
	verbose := fs.Bool("v", false, "print every round")
	dirFlag := fs.String("dir", "", "working `directory` (default: a temporary one under .bench)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	sizes, err := parseSizes(*sizesFlag)
	if err != nil {
		return err
	}
	if *rounds < 1 {
		return fmt.Errorf("-rounds must be 1 or more")
	}
	var up uploader
	switch *client {
	case "curl":
		curl, err := exec.LookPath("curl")
		if err != nil {
			return fmt.Errorf("-client curl: %w (install curl, or use -client go)", err)
		}
		up = curlUpload(curl)
	case "go":
		up = goUpload
	default:
		return fmt.Errorf("-client must be curl or go, not %q", *client)
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
	fmt.Fprintf(out, "client: %s; load average at start: %s\n", *client, loadAverage())
	fmt.Fprintf(out, "%-8s  %10s  %12s  %11s  %6s  %8s  %11s  %14s  %14s  %15s\n", "size", "disk MB/s", "reaper's way", "upload MB/s", "ratio",
		"vs disk", "sha256 MB/s", "reaper CPU/GiB", "client CPU/GiB", "reaper peak RSS")
	var bounds []string
	for _, sz := range sizes {
		var plain, behind, upl, hashed, rcpu, ccpu []float64
		var peak int64
		// The runner uploads a file (curl -T): so does the bench, from a
		// file written once (and cached) before the rounds.
		src := filepath.Join(dir, "source")
		if _, err := writeDisk(src, sz, buf, true, false); err != nil {
			return err
		}
		for i := range *rounds {
			var dPlain, dBehind time.Duration
			var u upload
			steps := []func() error{
				func() (err error) {
					dPlain, err = writeDisk(filepath.Join(dir, "baseline"), sz, buf, false, false)
					return err
				},
				func() (err error) {
					dBehind, err = writeDisk(filepath.Join(dir, "baseline"), sz, buf, false, true)
					return err
				},
				func() (err error) {
					u, err = r.upload(up, src, sz)
					return err
				},
			}
			// Rotate which goes first, so none always finds the page cache
			// and the disk in the state another left them.
			for k := range steps {
				if err := steps[(i+k)%len(steps)](); err != nil {
					return err
				}
			}
			dHash := hashTime(sz, buf)
			gib := float64(sz) / (1 << 30)
			plain, behind, upl = append(plain, mbps(sz, dPlain)), append(behind, mbps(sz, dBehind)), append(upl, mbps(sz, u.elapsed))
			hashed = append(hashed, mbps(sz, dHash))
			rcpu, ccpu = append(rcpu, u.reaperCPU.Seconds()/gib), append(ccpu, u.clientCPU.Seconds()/gib)
			peak = max(peak, u.peakRSS)
			if *verbose {
				tail := ""
				if u.tail > 0 {
					tail = fmt.Sprintf(", last byte sent to 201: %v", u.tail.Round(time.Millisecond))
				}
				fmt.Fprintf(out, "  round %d: disk %v, reaper's way %v, upload %v (ratio %.2f), sha256 %v, reaper CPU %v, client CPU %v%s\n", i+1,
					dPlain.Round(time.Millisecond), dBehind.Round(time.Millisecond), u.elapsed.Round(time.Millisecond),
					min(dPlain, dBehind).Seconds()/u.elapsed.Seconds(), dHash.Round(time.Millisecond),
					u.reaperCPU.Round(time.Millisecond), u.clientCPU.Round(time.Millisecond), tail)
			}
		}
		// The ratio's baseline is the faster way to write the disk, so
		// neither can flatter it; "vs disk" is to the plain write and
		// fsync alone. sha256 is one core hashing the bytes from memory:
		// no upload that checks its sha256 on the way can beat it.
		pm, bm, um := median(plain), median(behind), median(upl)
		fmt.Fprintf(out, "%-8s  %10.0f  %12.0f  %11.0f  %6.2f  %8.2f  %11.0f  %13.2fs  %13.2fs  %11.1f MiB\n", size.FormatIEC(sz), pm, bm, um,
			um/max(pm, bm), um/pm, median(hashed), median(rcpu), median(ccpu), float64(peak)/(1<<20))
		if sz >= boundMin {
			bounds = append(bounds, bound(size.FormatIEC(sz), median(hashed), median(rcpu)+median(ccpu), max(pm, bm), um))
		} else {
			bounds = append(bounds, fmt.Sprintf("  %-8s too small to bound: CPU time is counted in 10 ms ticks", size.FormatIEC(sz)))
		}
	}
	fmt.Fprintf(out, "bound on this machine (%d CPUs): no upload beats one core's sha256, nor the CPUs' time over the CPU-seconds per GiB the reaper and the client spent:\n",
		runtime.NumCPU())
	for _, b := range bounds {
		fmt.Fprintln(out, b)
	}
	fmt.Fprintf(out, "load average at end: %s\n", loadAverage())
	return nil
}

// boundMin is the smallest upload whose CPU time, counted in 10 ms ticks,
// is precise enough to bound its speed.
const boundMin = 64 << 20

// bound says how fast an upload could go on this machine, given one core's
// sha256 speed (MiB/s), the CPU-seconds per GiB the reaper and the client
// spent together, and the baseline's speed, and how close upload came.
func bound(name string, hash, cpuPerGiB, baseline, upload float64) string {
	cpu := float64(runtime.NumCPU()) * 1024 / cpuPerGiB
	ceiling := min(hash, cpu)
	return fmt.Sprintf("  %-8s sha256 %.0f MB/s, CPU %d / %.2f s per GiB = %.0f MB/s: at most %.0f MB/s, %.2f of the baseline; the upload reached %.2f of it",
		name, hash, runtime.NumCPU(), cpuPerGiB, cpu, ceiling, ceiling/baseline, upload/ceiling)
}

// loadAverage is the first three fields of /proc/loadavg.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
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

// upload is what one upload cost.
type upload struct {
	elapsed   time.Duration // from the client's start to the reaper's 201
	tail      time.Duration // from the last byte sent to the 201 (-client go only)
	reaperCPU time.Duration // user and system CPU time of the reaper meanwhile
	clientCPU time.Duration // user and system CPU time of the client
	peakRSS   int64         // the reaper's, sampled every 5 ms
}

// uploader sends the file src (size bytes) to url with the job token.
type uploader func(url, token, src string, size int64) (upload, error)

// curlUpload uploads with curl as the job runner does (its call function,
// internal/jobrunner).
func curlUpload(curl string) uploader {
	return func(url, token, src string, size int64) (upload, error) {
		cmd := exec.Command(curl, "-fsS", "--retry", "5", "--retry-delay", "1", "--retry-connrefused",
			"--connect-timeout", "30", "--speed-limit", "1024", "--speed-time", "120",
			"-X", "PUT", "-H", "Authorization: Bearer "+token, "-T", src, "-o", os.DevNull, url)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		start := time.Now()
		err := cmd.Run()
		u := upload{elapsed: time.Since(start)}
		if err != nil {
			return u, fmt.Errorf("curl: %w: %s", err, strings.TrimSpace(stderr.String()))
		}
		u.clientCPU = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
		return u, nil
	}
}

// goUpload uploads with Go's HTTP client and notes when the body's last
// byte went out.
func goUpload(url, token, src string, size int64) (upload, error) {
	f, err := os.Open(src)
	if err != nil {
		return upload{}, err
	}
	defer f.Close()
	body := &eofTimer{f: f}
	req, _ := http.NewRequest(http.MethodPut, url, body)
	req.ContentLength = size
	req.Header.Set("Authorization", "Bearer "+token)
	cpu0 := processCPU(os.Getpid())
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	end := time.Now()
	u := upload{elapsed: end.Sub(start), clientCPU: processCPU(os.Getpid()) - cpu0}
	if !body.eof.IsZero() {
		u.tail = end.Sub(body.eof)
	}
	if err != nil {
		return u, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		return u, fmt.Errorf("upload answered %s", resp.Status)
	}
	return u, nil
}

// eofTimer is a file read to its end, noting when. It hides the file, so
// the transport copies it through a buffer instead of with sendfile.
type eofTimer struct {
	f   *os.File
	eof time.Time
}

func (e *eofTimer) Read(p []byte) (int, error) {
	n, err := e.f.Read(p)
	if err == io.EOF {
		e.eof = time.Now()
	}
	return n, err
}

// upload registers a job, fetches its token and uploads the file src of
// size bytes with up, sampling the reaper's CPU time and peak RSS.
func (r *reaperProc) upload(up uploader, src string, size int64) (upload, error) {
	ctx := context.Background()
	reg, err := r.ctl.RegisterJob(ctx, job.RegisterRequest{Repo: "file:///bench", Ref: "main", Task: "true"})
	if err != nil {
		return upload{}, err
	}
	req, _ := http.NewRequest(http.MethodGet, r.guestURL+"/v1/job/spec", nil)
	req.Header.Set("Authorization", "Bearer "+reg.BootstrapToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return upload{}, err
	}
	var spec job.Spec
	err = json.NewDecoder(resp.Body).Decode(&spec)
	resp.Body.Close()
	if err != nil {
		return upload{}, err
	}

	pid := r.cmd.Process.Pid
	var peak atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			if rss := rssBytes(pid); rss > peak.Load() {
				peak.Store(rss)
			}
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	cpu0 := processCPU(pid)
	u, err := up(r.guestURL+"/v1/job/artifacts/out/big.bin", spec.Token, src, size)
	u.reaperCPU = processCPU(pid) - cpu0
	close(stop)
	wg.Wait()
	u.peakRSS = peak.Load()
	// Free the disk for the next round.
	os.RemoveAll(filepath.Join(r.dir, "artifacts", reg.Job.ID))
	return u, err
}

// processCPU is the user and system CPU time pid has used, from
// /proc/PID/stat (clock ticks of 10 ms), or 0 when it cannot be read.
func processCPU(pid int) time.Duration {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// The command name, in parentheses, may hold spaces: count the fields
	// after its closing one (utime and stime are fields 14 and 15).
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// writeDisk writes size bytes to path and fsyncs; with behind, through
// writeback.File as the reaper does, and otherwise with plain writes. The
// file is removed unless keep.
func writeDisk(path string, size int64, buf []byte, keep, behind bool) (time.Duration, error) {
	start := time.Now()
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	var w interface {
		io.Writer
		Sync() error
	} = f
	if behind {
		w = writeback.New(f)
	}
	if _, err := io.CopyBuffer(w, &repeatReader{buf: buf, left: size}, make([]byte, 1<<20)); err != nil {
		f.Close()
		return 0, err
	}
	if err := w.Sync(); err != nil {
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

// hashTime is how long sha256 takes over size bytes of buf repeated, on
// one core, from memory.
func hashTime(size int64, buf []byte) time.Duration {
	h := sha256.New()
	start := time.Now()
	io.CopyBuffer(h, &repeatReader{buf: buf, left: size}, make([]byte, len(buf)))
	h.Sum(nil)
	return time.Since(start)
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

// parseSizes parses a comma-separated list of sizes (internal/size).
func parseSizes(list string) ([]int64, error) {
	var out []int64
	for _, f := range strings.Split(list, ",") {
		n, err := size.Parse(strings.TrimSpace(f))
		if err != nil {
			return nil, fmt.Errorf("-sizes: %w", err)
		}
		if n <= 0 {
			return nil, fmt.Errorf("-sizes: %q: a size must be more than 0 bytes", f)
		}
		out = append(out, n)
	}
	return out, nil
}

func mbps(size int64, d time.Duration) float64 { return float64(size) / (1 << 20) / d.Seconds() }

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}
