package jobrunner_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentlab/terraform-provider-agentlab/internal/job"
	"github.com/agentlab/terraform-provider-agentlab/internal/jobrunner"
	"github.com/agentlab/terraform-provider-agentlab/reaper/guest"
	"github.com/agentlab/terraform-provider-agentlab/reaper/jobs"
	"github.com/agentlab/terraform-provider-agentlab/reaper/sqlite"
)

// gitRepo makes a repository with a main branch (two commits), a tag v1 on
// the first, and a branch feature; it returns its path and the first
// commit's sha.
func gitRepo(t *testing.T) (string, string) {
	t.Helper()
	dir := t.TempDir()
	git := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-C", dir}, args...)...)
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com",
			"GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com", "GIT_CONFIG_NOSYSTEM=1", "HOME="+dir)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	write := func(name, content string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	git("init", "-q", "-b", "main")
	write("version.txt", "one\n")
	git("add", ".")
	git("commit", "-q", "-m", "one")
	first := git("rev-parse", "HEAD")
	git("tag", "v1")
	write("version.txt", "two\n")
	git("commit", "-q", "-am", "two")
	git("checkout", "-q", "-b", "feature")
	write("version.txt", "feature\n")
	git("commit", "-q", "-am", "feature")
	git("checkout", "-q", "main")
	return dir, first
}

// listener is a real guest listener over a real registry.
type listener struct {
	svc *jobs.Service
	url string
}

// testMaxBytes is the listener's artifacts.max_bytes: 1 MiB.
const testMaxBytes = 1 << 20

func newListener(t *testing.T) *listener {
	t.Helper()
	dir := t.TempDir()
	db := sqlite.New(filepath.Join(dir, "reaper.db"))
	if err := db.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	svc, err := jobs.New(db, nil, jobs.Options{Dir: filepath.Join(dir, "artifacts"), MaxBytes: testMaxBytes})
	if err != nil {
		t.Fatal(err)
	}
	g := guest.New(nil, guest.Limits{}, nil, nil)
	g.SetJobs(svc)
	srv := httptest.NewServer(g)
	t.Cleanup(srv.Close)
	return &listener{svc: svc, url: srv.URL}
}

// run registers req, runs the real runner with sh against the listener
// and returns the job once the runner exited.
func run(t *testing.T, l *listener, req job.RegisterRequest) (job.Job, string) {
	t.Helper()
	return runIn(t, l, req, t.TempDir())
}

// runIn is run with the runner's files in dir (its state in dir/state).
func runIn(t *testing.T, l *listener, req job.RegisterRequest, dir string) (job.Job, string) {
	t.Helper()
	ctx := context.Background()
	reg, err := l.svc.Register(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	envFile := filepath.Join(dir, "job.env")
	env := "AGENTLAB_GUEST_URL=" + job.ShellQuote(l.url) + "\nAGENTLAB_BOOTSTRAP_TOKEN=" + job.ShellQuote(reg.BootstrapToken) + "\n"
	if err := os.WriteFile(envFile, []byte(env), 0o600); err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(dir, "agentlab-job-runner")
	if err := os.WriteFile(script, []byte(jobrunner.Script), 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := os.Create(filepath.Join(dir, "runner.out"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cmd := exec.Command("sh", script)
	cmd.Env = append(os.Environ(), "AGENTLAB_JOB_ENV="+envFile, "AGENTLAB_JOB_DIR="+filepath.Join(dir, "state"), "HOME="+dir,
		"AGENTLAB_SECRETS_DIR="+filepath.Join(dir, "secrets"))
	cmd.Stdout, cmd.Stderr = out, out
	runCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-runCtx.Done():
		cmd.Process.Kill()
		err = <-done
	}
	text, _ := os.ReadFile(out.Name())
	if err != nil {
		t.Fatalf("runner: %v\n%s", err, text)
	}
	j, err := l.svc.Get(ctx, reg.Job.ID)
	if err != nil {
		t.Fatal(err)
	}
	return j, string(text)
}

func TestRunner(t *testing.T) {
	for _, tool := range []string{"sh", "git", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not on PATH: the runner needs it", tool)
		}
	}
	repo, first := gitRepo(t)
	l := newListener(t)
	tests := []struct {
		name      string
		req       job.RegisterRequest
		status    job.Status
		exit      int
		log       []string
		reason    string
		artifacts map[string]string // name → content
	}{
		{
			name: "success with artifacts and env",
			req: job.RegisterRequest{Ref: "main", Timeout: "1m", Artifacts: []string{"out/*", "*.md"},
				Env:  map[string]string{"GREETING": "hello from env"},
				Task: `mkdir -p out/sub && echo a > out/a.txt && echo b > out/sub/b.txt && echo n > notes.md && echo x > other.txt && echo "$GREETING" && cat version.txt`},
			status: job.StatusSucceeded, exit: 0,
			log:       []string{"hello from env", "two", "uploaded out/a.txt"},
			artifacts: map[string]string{"out/a.txt": "a\n", "out/sub/b.txt": "b\n", "notes.md": "n\n"},
		},
		{
			name:   "failure exit code",
			req:    job.RegisterRequest{Ref: "main", Timeout: "1m", Task: "echo about to fail; exit 7"},
			status: job.StatusFailed, exit: 7, log: []string{"about to fail"},
		},
		{
			name:   "timeout",
			req:    job.RegisterRequest{Ref: "main", Timeout: "2s", Task: "echo started; sleep 60; echo never"},
			status: job.StatusTimedOut, exit: 143, log: []string{"started", "longer than 2s"},
		},
		{
			name:   "tag",
			req:    job.RegisterRequest{Ref: "v1", Task: "cat version.txt"},
			status: job.StatusSucceeded, log: []string{"one"},
		},
		{
			name:   "branch",
			req:    job.RegisterRequest{Ref: "feature", Task: "cat version.txt"},
			status: job.StatusSucceeded, log: []string{"feature"},
		},
		{
			name:   "commit",
			req:    job.RegisterRequest{Ref: first, Task: "cat version.txt"},
			status: job.StatusSucceeded, log: []string{"one"},
		},
		{
			name:   "unknown ref",
			req:    job.RegisterRequest{Ref: "no-such-branch", Task: "echo never"},
			status: job.StatusFailed, exit: -1, log: []string{"cannot check out"}, reason: "cannot check out ref no-such-branch",
		},
		{
			name: "odd artifact name fails the job, the good one is kept",
			req: job.RegisterRequest{Ref: "main", Artifacts: []string{"out/*"},
				Task: `mkdir -p out && echo good > out/good.txt && echo bad > 'out/we"ird name.txt'`},
			status: job.StatusFailed, exit: 0,
			log:       []string{`upload of out/we"ird name.txt failed: the reaper answered 400:`, "has a byte not allowed (0x22)"},
			reason:    "artifact upload failed, see the log: out/weird name.txt HTTP 400",
			artifacts: map[string]string{"out/good.txt": "good\n"},
		},
		{
			name: "an artifact over artifacts.max_bytes fails the job and the log says why",
			req: job.RegisterRequest{Ref: "main", Artifacts: []string{"out/*"},
				Task: `mkdir -p out && echo small > out/small.txt && head -c 2000000 /dev/zero > out/big.bin`},
			status: job.StatusFailed, exit: 0,
			log:       []string{"upload of out/big.bin failed: the reaper answered 413:", "artifacts.max_bytes", "uploaded out/small.txt"},
			reason:    "artifact upload failed, see the log: out/big.bin HTTP 413",
			artifacts: map[string]string{"out/small.txt": "small\n"},
		},
		{
			name:   "tokens stay out of the task",
			req:    job.RegisterRequest{Ref: "main", Task: `test -z "${AGENTLAB_JOB_TOKEN:-}${AGENTLAB_BOOTSTRAP_TOKEN:-}" && echo "id=$AGENTLAB_JOB_ID"`},
			status: job.StatusSucceeded, log: []string{"id=job-"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.req.Repo = repo
			j, out := run(t, l, tt.req)
			exit := -1
			if j.ExitCode != nil {
				exit = *j.ExitCode
			}
			if j.Status != tt.status || exit != tt.exit {
				t.Errorf("job = %s (%s) exit %d; want %s exit %d\nrunner output:\n%s\nlog:\n%s", j.Status, j.Reason, exit, tt.status, tt.exit, out, j.LogTail)
			}
			if !strings.Contains(j.Reason, tt.reason) {
				t.Errorf("reason = %q; want it to contain %q", j.Reason, tt.reason)
			}
			for _, want := range tt.log {
				if !strings.Contains(j.LogTail, want) {
					t.Errorf("log lacks %q:\n%s", want, j.LogTail)
				}
			}
			if len(j.Artifacts) != len(tt.artifacts) {
				t.Errorf("artifacts = %+v; want %d", j.Artifacts, len(tt.artifacts))
			}
			for _, a := range j.Artifacts {
				content, ok := tt.artifacts[a.Name]
				sum := sha256.Sum256([]byte(content))
				if !ok || a.SHA256 != hex.EncodeToString(sum[:]) || a.Size != int64(len(content)) {
					t.Errorf("artifact %+v; want %q", a, content)
				}
			}
		})
	}
}

// TestRunnerReusesCheckout runs a second job over the first one's checkout,
// as a workspace keeps it between sandboxes: the runner fetches instead of
// cloning, checks out the new ref, and leaves the files the first task
// wrote in place.
func TestRunnerReusesCheckout(t *testing.T) {
	for _, tool := range []string{"sh", "git", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not on PATH: the runner needs it", tool)
		}
	}
	repo, _ := gitRepo(t)
	l := newListener(t)
	first := t.TempDir()
	j, out := runIn(t, l, job.RegisterRequest{Repo: repo, Ref: "main", Task: "echo kept > data.txt"}, first)
	if j.Status != job.StatusSucceeded {
		t.Fatalf("first job = %s (%s)\n%s", j.Status, j.Reason, out)
	}
	second := t.TempDir()
	if err := os.MkdirAll(filepath.Join(second, "state"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(first, "state", "src"), filepath.Join(second, "state", "src")); err != nil {
		t.Fatal(err)
	}
	j, out = runIn(t, l, job.RegisterRequest{Repo: repo, Ref: "feature", Task: "cat data.txt version.txt"}, second)
	if j.Status != job.StatusSucceeded || !strings.Contains(j.LogTail, "kept\nfeature\n") {
		t.Errorf("second job = %s (%s), log %q; want the kept file and the feature branch\n%s", j.Status, j.Reason, j.LogTail, out)
	}
}

// TestRunnerSecrets gives the task the secrets the guest opened at boot (one
// file per key in the secrets directory) as environment variables, values
// intact, and checks that neither the runner's output nor the log it
// streams holds a value the task did not print itself.
func TestRunnerSecrets(t *testing.T) {
	for _, tool := range []string{"sh", "git", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not on PATH: the runner needs it", tool)
		}
	}
	repo, _ := gitRepo(t)
	l := newListener(t)
	dir := t.TempDir()
	values := map[string]string{"API_KEY": "sk-live-9f8e7d", "MULTI": "line one\nline 'two' $HOME\n\n"}
	if err := os.Mkdir(filepath.Join(dir, "secrets"), 0o700); err != nil {
		t.Fatal(err)
	}
	for k, v := range values {
		if err := os.WriteFile(filepath.Join(dir, "secrets", k), []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// A file whose name no shell can export is left alone.
	if err := os.WriteFile(filepath.Join(dir, "secrets", "not-a-name"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	task := `d=$SECRETS_CHECK
[ "$API_KEY" = "$(cat "$d/API_KEY")" ] && echo api-key-ok
printf %s "$MULTI" | cmp -s - "$d/MULTI" && echo multi-ok`
	j, out := runIn(t, l, job.RegisterRequest{Repo: repo, Ref: "main", Task: task,
		Env: map[string]string{"SECRETS_CHECK": filepath.Join(dir, "secrets")}}, dir)
	if j.Status != job.StatusSucceeded || !strings.Contains(j.LogTail, "api-key-ok") || !strings.Contains(j.LogTail, "multi-ok") {
		t.Fatalf("job = %s (%s); want both secrets seen by the task\nrunner output:\n%s\nlog:\n%s", j.Status, j.Reason, out, j.LogTail)
	}
	for k, v := range values {
		first, _, _ := strings.Cut(v, "\n")
		if strings.Contains(j.LogTail, first) || strings.Contains(out, first) {
			t.Errorf("secret %s appears in the log or the runner's output", k)
		}
	}
}
