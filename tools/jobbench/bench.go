package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/agentlab/terraform-provider-agentlab/internal/pvesim"
	"github.com/agentlab/terraform-provider-agentlab/internal/size"
	"github.com/agentlab/terraform-provider-agentlab/internal/tfcli"
	"github.com/agentlab/terraform-provider-agentlab/tools/internal/critical"
	"github.com/agentlab/terraform-provider-agentlab/tools/internal/routes"
)

// options are the bench's flags.
type options struct {
	bin         string // holds terraform-provider-agentlab and agentlab-reaper
	terraform   string
	n           int
	parallelism int
	task        time.Duration // how long each job's task runs
	artifact    int64         // bytes of each job's artifact
	latency     string        // realistic or zero
	boot        string        // pvesim.WithBoot's value; "" keeps the model's
	keep        bool          // keep the working directory
}

func parseOptions(args []string) (options, error) {
	fs := flag.NewFlagSet("jobbench", flag.ContinueOnError)
	var o options
	var artifact string
	fs.StringVar(&o.bin, "bin", "bin", "`directory` holding the built terraform-provider-agentlab and agentlab-reaper (make build)")
	fs.StringVar(&o.terraform, "terraform", "", "terraform or tofu `binary` (default: the one on PATH)")
	fs.IntVar(&o.n, "n", 20, "jobs to apply")
	fs.IntVar(&o.parallelism, "parallelism", 20, "terraform -parallelism")
	fs.DurationVar(&o.task, "task", 30*time.Second, "how long each job's task runs (a sleep) after its guest booted, before it writes its artifact")
	fs.StringVar(&artifact, "artifact-size", "1MiB", "`size` of each job's artifact")
	fs.StringVar(&o.latency, "latency", "realistic", "the simulator's latency model: realistic or zero")
	fs.StringVar(&o.boot, "boot", "", "guest boot time: realistic, zero or a duration (default: the latency model's)")
	fs.BoolVar(&o.keep, "keep", false, "keep the working directory (logs, state) and print its path")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if o.n < 1 || o.parallelism < 1 {
		return o, errors.New("-n and -parallelism must be 1 or more")
	}
	if o.task < time.Second || o.task%time.Second != 0 {
		return o, fmt.Errorf("-task %v: give whole seconds, 1s or more (the task is sh's sleep)", o.task)
	}
	var err error
	if o.artifact, err = size.Parse(artifact); err != nil {
		return o, fmt.Errorf("-artifact-size: %w", err)
	}
	if o.latency != "realistic" && o.latency != "zero" {
		return o, fmt.Errorf("-latency must be realistic or zero, not %q", o.latency)
	}
	return o, nil
}

// model is the latency model the options name.
func (o options) model() (pvesim.Latency, error) {
	m := pvesim.RealisticLatency()
	if o.latency == "zero" {
		m = pvesim.ZeroLatency()
	}
	if o.boot == "" {
		return m, nil
	}
	m, err := pvesim.WithBoot(m, o.boot)
	if err != nil {
		return m, fmt.Errorf("-boot: %w", err)
	}
	return m, nil
}

// checkMachine returns a skipError when the bench cannot run here.
func checkMachine() error {
	if os.Geteuid() != 0 {
		return &skipError{"the simulator's guest execution needs root (mount and PID namespaces); run it as root"}
	}
	for _, tool := range []string{"git", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			return &skipError{fmt.Sprintf("the guests run the job runner with the host's programs and need %s on PATH", tool)}
		}
	}
	return nil
}

func run(args []string, out io.Writer) error {
	o, err := parseOptions(args)
	if err != nil {
		return err
	}
	if err := checkMachine(); err != nil {
		return err
	}
	if o.terraform, err = tfcli.Find(o.terraform); err != nil {
		return &skipError{err.Error() + " (or pass -terraform)"}
	}
	cli, err := tfcli.Detect(context.Background(), o.terraform)
	if err != nil {
		return fmt.Errorf("-terraform: %w", err)
	}
	if o.bin, err = filepath.Abs(o.bin); err != nil {
		return err
	}
	for _, b := range []string{"terraform-provider-agentlab", "agentlab-reaper"} {
		if _, err := os.Stat(filepath.Join(o.bin, b)); err != nil {
			return fmt.Errorf("no %s in %s: run make build first (or pass -bin)", b, o.bin)
		}
	}
	model, err := o.model()
	if err != nil {
		return err
	}

	work, err := os.MkdirTemp("", "jobbench-")
	if err != nil {
		return err
	}
	if o.keep {
		fmt.Fprintln(out, "working directory:", work)
	} else {
		defer os.RemoveAll(work)
	}
	w, err := start(o, model, cli, work)
	if err != nil {
		return err
	}
	defer w.close()
	res, err := w.measure()
	if err != nil {
		return err
	}
	res.report(out, o, model, cli)
	return nil
}

// result is what one run measured.
type result struct {
	apply   time.Duration // terraform apply, every job waited for
	cleanup time.Duration // from the apply's start until the reaper destroyed the last job VM
	// boots are the job VMs' boot times, as the simulator drew them.
	boots     []time.Duration
	stats     pvesim.Stats // apply and the reaper's cleanup, not the destroy
	succeeded int
	// phases are each job's times as the reaper recorded them.
	phases []phases
}

// phases are one job's times, from the apply's start: registered with the
// reaper, started (the runner's report, after its checkout) and ended.
type phases struct {
	registered, started, ended time.Duration
}

// measure applies the jobs, waits for the reaper to destroy their VMs,
// checks every job's outcome and artifact, and destroys the resources.
func (w *world) measure() (result, error) {
	var res result
	sampler := w.sampleBoots()
	start := time.Now()
	if err := w.terraform("apply", "-auto-approve", "-input=false", "-no-color", fmt.Sprintf("-parallelism=%d", w.o.parallelism)); err != nil {
		sampler.stop()
		return res, err
	}
	res.apply = time.Since(start)
	// The reaper destroys each job's VM once the job ended: wait for the
	// last, watching the simulator's state (another component acts).
	deadline := time.Now().Add(5 * time.Minute)
	for len(w.jobVMs()) > 0 {
		if time.Now().After(deadline) {
			sampler.stop()
			return res, fmt.Errorf("the reaper had not destroyed VMs %v 5 minutes after the apply", w.jobVMs())
		}
		time.Sleep(50 * time.Millisecond)
	}
	res.cleanup = time.Since(start)
	res.stats = w.sim.Stats()
	res.boots = sampler.stop()

	out, err := w.terraformOutput("jobs")
	if err != nil {
		return res, err
	}
	var jobs []struct {
		ID        string `json:"id"`
		Status    string `json:"status"`
		Artifacts []struct {
			Name   string `json:"name"`
			Size   int64  `json:"size"`
			SHA256 string `json:"sha256"`
		} `json:"artifacts"`
	}
	if err := json.Unmarshal(out, &jobs); err != nil {
		return res, fmt.Errorf("terraform output jobs: %w", err)
	}
	var problems []string
	for _, j := range jobs {
		ok := j.Status == "succeeded" && len(j.Artifacts) == 1 && j.Artifacts[0].Name == "out/result.bin" &&
			j.Artifacts[0].SHA256 == w.artifactSHA && j.Artifacts[0].Size == w.o.artifact
		if ok {
			res.succeeded++
		} else {
			problems = append(problems, fmt.Sprintf("job %s: status %s, artifacts %+v", j.ID, j.Status, j.Artifacts))
		}
	}
	for _, j := range jobs {
		got, err := w.ctl.Job(context.Background(), j.ID)
		if err != nil {
			return res, fmt.Errorf("read job %s from the reaper: %w", j.ID, err)
		}
		res.phases = append(res.phases, phases{registered: got.CreatedAt.Sub(start), started: got.StartedAt.Sub(start),
			ended: got.FinishedAt.Sub(start)})
	}
	if len(jobs) != w.o.n || len(problems) > 0 {
		return res, fmt.Errorf("%d of %d jobs succeeded with the artifact expected (sha256 %s):\n  %s\nthe reaper's log: %s",
			res.succeeded, w.o.n, w.artifactSHA, strings.Join(problems, "\n  "), w.reaperLog)
	}
	if len(res.boots) != w.o.n {
		return res, fmt.Errorf("saw %d job VMs boot; want %d", len(res.boots), w.o.n)
	}
	if err := w.terraform("destroy", "-auto-approve", "-input=false", "-no-color", fmt.Sprintf("-parallelism=%d", w.o.parallelism)); err != nil {
		return res, err
	}
	return res, nil
}

// jobVMs lists the VMs other than the template.
func (w *world) jobVMs() []int {
	var ids []int
	for _, id := range w.sim.VMIDs() {
		if id != pvesim.DefaultTemplate().VMID {
			ids = append(ids, id)
		}
	}
	return ids
}

// bootSampler records the boot time the simulator drew for each job VM
// while it runs (a stopped VM has none, and the reaper destroys them).
type bootSampler struct {
	done  chan struct{}
	wg    sync.WaitGroup
	boots map[int]time.Duration
}

func (w *world) sampleBoots() *bootSampler {
	s := &bootSampler{done: make(chan struct{}), boots: map[int]time.Duration{}}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			for _, id := range w.jobVMs() {
				if _, seen := s.boots[id]; seen {
					continue
				}
				if vm, ok := w.sim.VM(id); ok && vm.Running {
					s.boots[id] = vm.BootTime
				}
			}
			select {
			case <-s.done:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

// stop ends the sampling and returns the boot times in VMID order.
func (s *bootSampler) stop() []time.Duration {
	close(s.done)
	s.wg.Wait()
	ids := slices.Sorted(func(yield func(int) bool) {
		for id := range s.boots {
			if !yield(id) {
				return
			}
		}
	})
	boots := make([]time.Duration, 0, len(ids))
	for _, id := range ids {
		boots = append(boots, s.boots[id])
	}
	return boots
}

// jobPath is how long one job cannot be faster than, in this model: the
// Proxmox tasks the provider waits for in order (linked clone, seed upload,
// start), the guest's boot (its cloud-init starts the runner at the end of
// it, as the simulator's guest execution does), then the longer of the
// seed's deletion (the reaper retires the seed at the runner's first call)
// and the task. API service and queueing time, the runner's clone and
// upload and the provider's polling are not in it: they count against the
// system.
func jobPath(m pvesim.Latency, boot, task time.Duration) time.Duration {
	return m.LinkedClone + m.Upload + m.Start + boot + max(m.VolumeDelete, task)
}

func (r result) report(out io.Writer, o options, m pvesim.Latency, cli tfcli.Info) {
	jobs := make([]time.Duration, len(r.boots))
	for i, b := range r.boots {
		jobs[i] = jobPath(m, b, o.task)
	}
	path := critical.Path(jobs, o.parallelism)
	// The reaper stops and destroys a VM once its job ended.
	cleanupPath := critical.Path(addEach(jobs, m.Stop+m.Destroy), o.parallelism)
	fmt.Fprintf(out, "cli: %s %s (%s)\n", cli.Kind, cli.Version, o.terraform)
	fmt.Fprintf(out, "latency model: %s (linked clone %v, upload %v, start %v, volume delete %v, stop %v, destroy %v, guest boot %v)\n",
		o.latency, m.LinkedClone, m.Upload, m.Start, m.VolumeDelete, m.Stop, m.Destroy, critical.Describe(r.boots))
	fmt.Fprintf(out, "jobs: %d, terraform -parallelism=%d, task %v, artifact %s each; %d succeeded, every artifact's sha256 checked\n",
		o.n, o.parallelism, o.task, size.FormatIEC(o.artifact), r.succeeded)
	fmt.Fprintf(out, "critical path: %v (each job: tasks %v, its boot, then the longer of the seed's delete and the task; in order on %d slots)\n",
		path.Round(time.Millisecond), m.LinkedClone+m.Upload+m.Start, o.parallelism)
	fmt.Fprintf(out, "apply (every job ended): %v\n", r.apply.Round(time.Millisecond))
	fmt.Fprintf(out, "ratio to critical path: %.3f\n", r.apply.Seconds()/path.Seconds())
	fmt.Fprintf(out, "every job VM destroyed by the reaper: %v after the apply started (critical path with stop and destroy: %v, ratio %.3f)\n",
		r.cleanup.Round(time.Millisecond), cleanupPath.Round(time.Millisecond), r.cleanup.Seconds()/cleanupPath.Seconds())
	r.writePhases(out, o, m)
	fmt.Fprintf(out, "simulator: %d API requests, %d tasks (apply and the reaper's cleanup): %.1f requests per job\n",
		r.stats.Total, r.stats.TasksStarted, float64(r.stats.Total)/float64(o.n))
	fmt.Fprintf(out, "simulator's peak queue depth (calls waiting for an API worker): %d\n", r.stats.PeakQueueDepth)
	routes.Write(out, r.stats, o.n)
}

// writePhases says where each job's time went, as the reaper saw it.
func (r result) writePhases(out io.Writer, o options, m pvesim.Latency) {
	if len(r.phases) == 0 {
		return
	}
	var reg, toStart, afterTask []time.Duration
	var lastEnd time.Duration
	for _, p := range r.phases {
		reg = append(reg, p.registered)
		toStart = append(toStart, p.started-p.registered)
		afterTask = append(afterTask, p.ended-p.started-o.task)
		lastEnd = max(lastEnd, p.ended)
	}
	fmt.Fprintf(out, "where the time went (min, median, max over the jobs):\n")
	fmt.Fprintf(out, "  apply start to the job registered with the reaper:  %s\n", spread(reg))
	fmt.Fprintf(out, "  registered to the runner's start (clone, seed upload and start %v, then the checkout):  %s\n",
		m.LinkedClone+m.Upload+m.Start, spread(toStart))
	fmt.Fprintf(out, "  the runner's start to the job's end, beyond the %v task (artifact upload, end report):  %s\n", o.task, spread(afterTask))
	fmt.Fprintf(out, "  the last job's end to the apply's end (the provider's poll, terraform):  %v\n", (r.apply - lastEnd).Round(time.Millisecond))
}

// spread is the min, median and max of ds.
func spread(ds []time.Duration) string {
	s := slices.Sorted(slices.Values(ds))
	r := func(d time.Duration) time.Duration { return d.Round(10 * time.Millisecond) }
	return fmt.Sprintf("%v, %v, %v", r(s[0]), r(s[len(s)/2]), r(s[len(s)-1]))
}

func addEach(ds []time.Duration, d time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, x := range ds {
		out[i] = x + d
	}
	return out
}

// randomFile writes n random bytes to path and returns their sha256.
func randomFile(path string, n int64) (string, error) {
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.CopyN(io.MultiWriter(f, h), rand.Reader, n); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), f.Close()
}
