package jobs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentlab/terraform-provider-agentlab/internal/job"
	"github.com/agentlab/terraform-provider-agentlab/internal/pve"
	"github.com/agentlab/terraform-provider-agentlab/reaper"
)

var ctx = context.Background()

func register(t *testing.T, e *env, mod func(*job.RegisterRequest)) job.Registered {
	t.Helper()
	req := job.RegisterRequest{Repo: "https://git.example/r.git", Ref: "main", Task: "make", Timeout: "10m",
		Artifacts: []string{"out/*"}, Env: map[string]string{"K": "v"}}
	if mod != nil {
		mod(&req)
	}
	reg, err := e.svc.Register(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

// start registers a job, gives it sandbox vmid and has its runner fetch the
// spec; it returns the job ID and job token.
func start(t *testing.T, e *env, vmid int, mod func(*job.RegisterRequest)) (string, string) {
	t.Helper()
	reg := register(t, e, mod)
	e.pve.addSandbox(t, vmid, reg.Job.ID, nil)
	if _, err := e.svc.SetSandbox(ctx, reg.Job.ID, job.SandboxRequest{Node: "pve", VMID: vmid}); err != nil {
		t.Fatal(err)
	}
	spec, err := e.svc.Spec(ctx, reg.BootstrapToken)
	if err != nil {
		t.Fatal(err)
	}
	return reg.Job.ID, spec.Token
}

func TestLifecycle(t *testing.T) {
	e := newEnv(t, Options{})
	reg := register(t, e, nil)
	id := reg.Job.ID
	if reg.Job.Status != job.StatusRequested || !job.ValidID(id) || len(reg.BootstrapToken) != 64 {
		t.Fatalf("registered %+v; want a requested job with an ID and a token", reg)
	}
	e.pve.addSandbox(t, 200, id, nil)
	for range 2 { // setting the sandbox twice is harmless
		if _, err := e.svc.SetSandbox(ctx, id, job.SandboxRequest{Node: "pve", VMID: 200}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.svc.SetSandbox(ctx, id, job.SandboxRequest{Node: "pve", VMID: 201}); !errors.Is(err, reaper.ErrConflict) {
		t.Errorf("second sandbox: %v; want ErrConflict", err)
	}
	if j, err := e.svc.SetStatus(ctx, id, job.StatusProvisioning); err != nil || j.Status != job.StatusProvisioning {
		t.Fatalf("SetStatus(provisioning) = %v, %v", j.Status, err)
	}
	if _, err := e.svc.SetStatus(ctx, id, job.StatusRunning); !errors.Is(err, job.ErrInvalid) {
		t.Errorf("SetStatus(running) = %v; want ErrInvalid (the runner drives running)", err)
	}

	spec, err := e.svc.Spec(ctx, reg.BootstrapToken)
	if err != nil {
		t.Fatal(err)
	}
	if spec.ID != id || spec.TimeoutSeconds != 600 || spec.Env["K"] != "v" || spec.Workspace != "" || spec.Token == "" {
		t.Errorf("spec = %+v", spec)
	}
	if _, err := e.svc.Spec(ctx, reg.BootstrapToken); !errors.Is(err, ErrTokenUsed) || !errors.Is(err, reaper.ErrUnauthorized) {
		t.Errorf("replayed bootstrap: %v; want ErrTokenUsed and ErrUnauthorized", err)
	}
	if _, err := e.svc.Authenticate(ctx, reg.BootstrapToken); !errors.Is(err, reaper.ErrUnauthorized) {
		t.Errorf("bootstrap token as job token: %v; want ErrUnauthorized", err)
	}
	if _, err := e.svc.Authenticate(ctx, spec.Token); err != nil {
		t.Fatal(err)
	}
	// A late provider report does not move the job back.
	if err := e.svc.Started(ctx, id); err != nil {
		t.Fatal(err)
	}
	if j, _ := e.svc.SetStatus(ctx, id, job.StatusBooting); j.Status != job.StatusRunning {
		t.Errorf("late booting report moved the job to %s; want running", j.Status)
	}
	for _, chunk := range []string{"hello ", "world\n"} {
		if _, err := e.svc.AppendLog(ctx, id, []byte(chunk)); err != nil {
			t.Fatal(err)
		}
	}
	a, err := e.svc.Upload(ctx, id, "out/r.txt", strings.NewReader("result"), 6)
	if err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256([]byte("result")); a.SHA256 != hex.EncodeToString(sum[:]) || a.Size != 6 {
		t.Errorf("artifact %+v", a)
	}
	e.clock.Advance(42 * time.Second)
	if _, err := e.svc.Finished(ctx, id, job.Finished{ExitCode: 0}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Authenticate(ctx, spec.Token); !errors.Is(err, reaper.ErrUnauthorized) {
		t.Errorf("job token after the end: %v; want ErrUnauthorized", err)
	}
	if err := e.svc.Check(ctx); err != nil {
		t.Fatal(err)
	}
	if !e.pve.wasDestroyed(200) {
		t.Error("the sandbox of a succeeded job was not destroyed")
	}
	j, err := e.svc.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if j.Status != job.StatusSucceeded || j.ExitCode == nil || *j.ExitCode != 0 || j.LogTail != "hello world\n" ||
		len(j.Artifacts) != 1 || j.Artifacts[0] != a || !j.FinishedAt.Equal(t0.Add(42*time.Second)) || j.StartedAt.IsZero() {
		t.Errorf("job after the end = %+v", j)
	}
	data, next, complete, err := e.svc.ReadLog(ctx, id, 6, 100)
	if err != nil || string(data) != "world\n" || next != 12 || !complete {
		t.Errorf("ReadLog(6) = %q, %d, %v, %v; want world, 12, complete", data, next, complete, err)
	}
}

func TestEndings(t *testing.T) {
	tests := []struct {
		name      string
		act       func(t *testing.T, e *env, id string)
		status    job.Status
		reason    string
		exit      int // -1: none
		destroyed bool
	}{
		{"failed exit code", func(t *testing.T, e *env, id string) {
			e.svc.Finished(ctx, id, job.Finished{ExitCode: 3})
		}, job.StatusFailed, "exited with code 3", 3, true},
		{"task never ran", func(t *testing.T, e *env, id string) {
			e.svc.Finished(ctx, id, job.Finished{ExitCode: 1, NotRun: true, Error: "cannot check out ref main of the repository, see the log"})
		}, job.StatusFailed, "runner: cannot check out ref main", -1, true},
		{"runner timer", func(t *testing.T, e *env, id string) {
			e.svc.Finished(ctx, id, job.Finished{ExitCode: 124, TimedOut: true})
		}, job.StatusTimedOut, "longer than its timeout", 124, true},
		{"silent runner", func(t *testing.T, e *env, id string) {
			e.clock.Advance(91 * time.Second)
		}, job.StatusLost, "no heartbeat", -1, true},
		{"heartbeats keep it alive", func(t *testing.T, e *env, id string) {
			for range 5 {
				e.clock.Advance(60 * time.Second)
				if err := e.svc.Heartbeat(ctx, id); err != nil {
					t.Fatal(err)
				}
			}
		}, job.StatusRunning, "", -1, false},
		{"no end report past timeout", func(t *testing.T, e *env, id string) {
			for range 12 {
				e.clock.Advance(60 * time.Second)
				e.svc.Heartbeat(ctx, id)
			}
		}, job.StatusTimedOut, "did not report the end", -1, true},
		{"vm vanished", func(t *testing.T, e *env, id string) {
			e.pve.Destroy(ctx, pveRef(200))
			e.pve.destroyed = nil
		}, job.StatusLost, "vanished", -1, false},
		{"cancelled", func(t *testing.T, e *env, id string) {
			e.svc.Cancel(ctx, id, "")
		}, job.StatusFailed, "cancelled", -1, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, Options{})
			id, _ := start(t, e, 200, nil)
			if err := e.svc.Started(ctx, id); err != nil {
				t.Fatal(err)
			}
			tt.act(t, e, id)
			if err := e.svc.Check(ctx); err != nil {
				t.Fatal(err)
			}
			e.svc.Check(ctx) // the sandbox of a job the first check ended
			j, err := e.svc.Get(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			exit := -1
			if j.ExitCode != nil {
				exit = *j.ExitCode
			}
			if j.Status != tt.status || !strings.Contains(j.Reason, tt.reason) || exit != tt.exit {
				t.Errorf("job = %s %q exit %d; want %s %q exit %d", j.Status, j.Reason, exit, tt.status, tt.reason, tt.exit)
			}
			if got := e.pve.wasDestroyed(200); got != tt.destroyed {
				t.Errorf("destroyed = %v; want %v", got, tt.destroyed)
			}
		})
	}
}

func pveRef(vmid int) pve.VMRef { return pve.VMRef{Node: "pve", VMID: vmid} }

func TestBootTimeout(t *testing.T) {
	e := newEnv(t, Options{BootTimeout: 10 * time.Minute})
	noVM := register(t, e, nil)
	booting := register(t, e, nil)
	e.pve.addSandbox(t, 300, booting.Job.ID, nil)
	e.svc.SetSandbox(ctx, booting.Job.ID, job.SandboxRequest{Node: "pve", VMID: 300})
	e.clock.Advance(9 * time.Minute)
	e.svc.Check(ctx)
	for _, id := range []string{noVM.Job.ID, booting.Job.ID} {
		if j, _ := e.svc.Get(ctx, id); j.Status.Ended() {
			t.Fatalf("%s ended before boot_timeout: %s", id, j.Reason)
		}
	}
	e.clock.Advance(2 * time.Minute)
	e.svc.Check(ctx)
	e.svc.Check(ctx)
	for id, want := range map[string]string{noVM.Job.ID: "no sandbox", booting.Job.ID: "did not fetch its spec"} {
		if j, _ := e.svc.Get(ctx, id); j.Status != job.StatusLost || !strings.Contains(j.Reason, want) {
			t.Errorf("%s = %s %q; want lost %q", id, j.Status, j.Reason, want)
		}
	}
	if !e.pve.wasDestroyed(300) {
		t.Error("the sandbox of a job lost at boot was not destroyed")
	}
	if _, err := e.svc.Spec(ctx, booting.BootstrapToken); !errors.Is(err, job.ErrTransition) {
		t.Errorf("spec of a lost job: %v; want ErrTransition", err)
	}
	// The provider's VM for the job lost waiting for it is taken and destroyed, not orphaned.
	e.pve.addSandbox(t, 301, noVM.Job.ID, nil)
	j, err := e.svc.SetSandbox(ctx, noVM.Job.ID, job.SandboxRequest{Node: "pve", VMID: 301})
	if err != nil || j.Status != job.StatusLost {
		t.Fatalf("SetSandbox on a lost job = %s, %v; want the job (lost), no error", j.Status, err)
	}
	e.svc.Check(ctx)
	if !e.pve.wasDestroyed(301) {
		t.Error("the late sandbox of a lost job was not destroyed")
	}
}

// TestSandboxesEndTogether ends jobs together and checks their sandboxes
// are destroyed at once, DestroyConcurrency at a time: each Destroy waits
// until that many are under way (a serial Check would never get there).
func TestSandboxesEndTogether(t *testing.T) {
	tests := []struct {
		jobs, concurrency int
	}{
		{jobs: 6, concurrency: 3},
		{jobs: 2, concurrency: 4},
	}
	for _, tt := range tests {
		e := newEnv(t, Options{DestroyConcurrency: tt.concurrency})
		want := min(tt.jobs, tt.concurrency)
		var mu sync.Mutex
		inFlight, peak := 0, 0
		all := make(chan struct{})
		var allOnce sync.Once
		e.pve.destroying = func(int) {
			mu.Lock()
			inFlight++
			peak = max(peak, inFlight)
			if inFlight == want {
				allOnce.Do(func() { close(all) })
			}
			mu.Unlock()
			select {
			case <-all:
			case <-time.After(10 * time.Second):
				t.Errorf("%d jobs, concurrency %d: a destroy waited 10 s for %d under way at once", tt.jobs, tt.concurrency, want)
			}
			mu.Lock()
			inFlight--
			mu.Unlock()
		}
		for i := range tt.jobs {
			id, _ := start(t, e, 400+i, nil)
			if _, err := e.svc.Finished(ctx, id, job.Finished{ExitCode: 0}); err != nil {
				t.Fatalf("Finished(%s) = %v", id, err)
			}
		}
		if err := e.svc.Check(ctx); err != nil {
			t.Fatal(err)
		}
		for i := range tt.jobs {
			if !e.pve.wasDestroyed(400 + i) {
				t.Errorf("%d jobs, concurrency %d: VM %d was not destroyed", tt.jobs, tt.concurrency, 400+i)
			}
		}
		if peak != want {
			t.Errorf("%d jobs, concurrency %d: %d destroys at once; want %d", tt.jobs, tt.concurrency, peak, want)
		}
	}
}

func TestSandboxFates(t *testing.T) {
	t.Run("keep_sandbox", func(t *testing.T) {
		e := newEnv(t, Options{})
		id, _ := start(t, e, 200, func(r *job.RegisterRequest) { r.KeepSandbox = true })
		e.svc.Finished(ctx, id, job.Finished{})
		e.svc.Check(ctx)
		if e.pve.wasDestroyed(200) {
			t.Error("keep_sandbox: the sandbox was destroyed")
		}
		assertFate(t, e, id, reaper.FateKept)
	})
	t.Run("reused vmid", func(t *testing.T) {
		e := newEnv(t, Options{})
		id, _ := start(t, e, 200, nil)
		e.pve.addSandbox(t, 200, "job-00000000000000ff", nil) // the VMID now holds another sandbox
		e.svc.Finished(ctx, id, job.Finished{})
		e.svc.Check(ctx)
		if e.pve.wasDestroyed(200) {
			t.Error("a VM whose metadata names another job was destroyed")
		}
		assertFate(t, e, id, reaper.FateRefused)
	})
	t.Run("workspace detached first", func(t *testing.T) {
		e := newEnv(t, Options{})
		reg := register(t, e, nil)
		e.pve.addSandbox(t, 200, reg.Job.ID, map[string]any{
			"scsi0": "local-lvm:vm-200-disk-0,size=8G",
			"scsi1": "local-lvm:vm-999000-disk-0,size=4G",
		})
		e.svc.SetSandbox(ctx, reg.Job.ID, job.SandboxRequest{Node: "pve", VMID: 200, Workspace: "local-lvm:vm-999000-disk-0"})
		spec, err := e.svc.Spec(ctx, reg.BootstrapToken)
		if err != nil || spec.Workspace != "/workspace" {
			t.Fatalf("spec workspace = %q, %v; want /workspace", spec.Workspace, err)
		}
		e.svc.Finished(ctx, reg.Job.ID, job.Finished{})
		e.svc.Check(ctx)
		if got := e.pve.deleted[200]; len(got) != 1 || got[0] != "scsi1" || !e.pve.wasDestroyed(200) {
			t.Errorf("detached %v, destroyed %v; want scsi1 detached, then the VM destroyed", got, e.pve.wasDestroyed(200))
		}
	})
	t.Run("dry run", func(t *testing.T) {
		e := newEnv(t, Options{DryRun: true})
		id, _ := start(t, e, 200, nil)
		e.svc.Finished(ctx, id, job.Finished{})
		e.svc.Check(ctx)
		if e.pve.wasDestroyed(200) {
			t.Error("dry_run: the sandbox was destroyed")
		}
	})
}

func assertFate(t *testing.T, e *env, id string, want reaper.SandboxFate) {
	t.Helper()
	j, err := e.db.Job(ctx, id)
	if err != nil || j.SandboxFate != want {
		t.Errorf("fate = %q, %v; want %q", j.SandboxFate, err, want)
	}
}

func TestUploads(t *testing.T) {
	e := newEnv(t, Options{MaxBytes: 100})
	id, _ := start(t, e, 200, nil)
	tests := []struct {
		name, artifact string
		body           string
		size           int64
		want           error
	}{
		{"ok", "out/a.txt", "abc", 3, nil},
		{"unknown length", "out/b.txt", "abcd", -1, nil},
		{"replace", "out/a.txt", "xyz!", 4, nil},
		{"traversal", "../a", "x", 1, job.ErrInvalid},
		{"absolute", "/etc/passwd", "x", 1, job.ErrInvalid},
		{"odd bytes", "a\x00b", "x", 1, job.ErrInvalid},
		{"announced too large", "big", "", 101, ErrTooLarge},
		{"too large", "big", strings.Repeat("x", 101), -1, ErrTooLarge},
		{"truncated", "short", "abc", 10, ErrTruncated},
	}
	for _, tt := range tests {
		_, err := e.svc.Upload(ctx, id, tt.artifact, strings.NewReader(tt.body), tt.size)
		if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
			t.Errorf("%s: Upload(%q) = %v; want %v", tt.name, tt.artifact, err, tt.want)
		}
	}
	// A body that breaks off midway.
	_, err := e.svc.Upload(ctx, id, "broken", &brokenReader{data: []byte("abc")}, -1)
	if !errors.Is(err, ErrTruncated) {
		t.Errorf("broken body: %v; want ErrTruncated", err)
	}
	as, _ := e.svc.Artifacts(ctx, id)
	if len(as) != 2 || as[0].Name != "out/a.txt" || as[0].Size != 4 || as[1].Name != "out/b.txt" {
		t.Errorf("artifacts = %+v; want out/a.txt (4 bytes) and out/b.txt", as)
	}
	files := listFiles(t, e.dir)
	if len(files) != 2 {
		t.Errorf("files on disk = %v; want the two artifacts and nothing else", files)
	}
	f, a, err := e.svc.OpenArtifact(ctx, id, "out/a.txt")
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	buf.ReadFrom(f)
	f.Close()
	if buf.String() != "xyz!" || a.Size != 4 {
		t.Errorf("artifact content %q; want the replacement", buf.String())
	}
	if _, _, err := e.svc.OpenArtifact(ctx, id, "nope"); !errors.Is(err, job.ErrNotFound) {
		t.Errorf("unknown artifact: %v; want ErrNotFound", err)
	}
}

type brokenReader struct{ data []byte }

func (b *brokenReader) Read(p []byte) (int, error) {
	if len(b.data) == 0 {
		return 0, errors.New("connection reset")
	}
	n := copy(p, b.data)
	b.data = b.data[n:]
	return n, nil
}

func listFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			out = append(out, p)
		}
		return nil
	})
	return out
}

func TestRetentionAndPartial(t *testing.T) {
	e := newEnv(t, Options{Retention: 24 * time.Hour})
	oldID, _ := start(t, e, 200, nil)
	e.svc.Upload(ctx, oldID, "x", strings.NewReader("x"), 1)
	e.svc.AppendLog(ctx, oldID, []byte("log"))
	e.svc.Finished(ctx, oldID, job.Finished{})
	e.clock.Advance(23 * time.Hour)
	newID, _ := start(t, e, 201, nil)
	e.svc.Finished(ctx, newID, job.Finished{})
	e.svc.Check(ctx)
	e.clock.Advance(2 * time.Hour)
	e.svc.Check(ctx)
	if _, err := e.svc.Get(ctx, oldID); !errors.Is(err, job.ErrNotFound) {
		t.Errorf("old job after retention: %v; want ErrNotFound", err)
	}
	if _, err := os.Stat(filepath.Join(e.dir, oldID)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("old job's artifacts directory: %v; want removed", err)
	}
	if _, err := e.svc.Get(ctx, newID); err != nil {
		t.Errorf("recent job: %v; want kept", err)
	}
	// A crash mid-upload leaves a temporary file; RemovePartial removes it.
	os.MkdirAll(filepath.Join(e.dir, newID), 0o700)
	partial := filepath.Join(e.dir, newID, tempPrefix+"123")
	os.WriteFile(partial, []byte("half"), 0o600)
	if err := e.svc.RemovePartial(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(partial); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("partial upload: %v; want removed", err)
	}
}

func TestLogLimit(t *testing.T) {
	e := newEnv(t, Options{MaxLogBytes: 10})
	id, _ := start(t, e, 200, nil)
	e.svc.AppendLog(ctx, id, []byte("0123456"))
	size, err := e.svc.AppendLog(ctx, id, []byte("789abc"))
	if err != nil || size != 10 {
		t.Fatalf("log size = %d, %v; want 10", size, err)
	}
	data, next, complete, _ := e.svc.ReadLog(ctx, id, 0, 100)
	if string(data) != "0123456789" || next != 10 || complete {
		t.Errorf("log = %q next %d complete %v; want the first 10 bytes, not complete", data, next, complete)
	}
	data, next, _, _ = e.svc.ReadLog(ctx, id, 50, 100)
	if len(data) != 0 || next != 10 {
		t.Errorf("read past the end = %q, %d; want nothing, 10", data, next)
	}
}
