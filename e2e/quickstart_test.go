package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/agentlab/terraform-provider-agentlab/internal/pve"
	"github.com/agentlab/terraform-provider-agentlab/reaper/reapertest"
)

// quickstartDoc is the page TestQuickstart follows, relative to this package.
const quickstartDoc = "../docs/quickstart.md"

// quickstartCloneURL is the URL docs/quickstart.md clones; the test's git
// configuration rewrites it to a snapshot of this working tree.
const quickstartCloneURL = "https://github.com/agentlab/terraform-provider-agentlab.git"

// shBlock is one ```sh fenced block of a Markdown page.
type shBlock struct {
	// Line is the line number of the opening fence (1-based).
	Line int
	// Text is the block's content, without the fences and the fence's
	// indentation, ending in a newline.
	Text string
}

// errUnclosedFence reports a ```sh block that never ends.
var errUnclosedFence = errors.New("unclosed ```sh block")

// shBlocks returns the ```sh fenced blocks of a Markdown page, in order.
// Other fences (```hcl, ```console, ````md) are skipped whole, so a ```sh
// line inside them is not a block; as in CommonMark, a fence ends at a line
// of at least as many backticks as opened it.
func shBlocks(md string) ([]shBlock, error) {
	var (
		blocks []shBlock
		open   int    // backticks of the open fence, 0 outside fences
		isSh   bool   // the open fence is ```sh
		indent string // the open fence's indentation
		cur    shBlock
		body   strings.Builder
	)
	for i, line := range strings.Split(md, "\n") {
		trimmed := strings.TrimLeft(line, " ")
		ticks := len(trimmed) - len(strings.TrimLeft(trimmed, "`"))
		info := strings.TrimSpace(trimmed[ticks:])
		switch {
		case open > 0 && ticks >= open && info == "":
			if isSh {
				cur.Text = body.String()
				blocks = append(blocks, cur)
			}
			open = 0
		case open > 0:
			if isSh {
				body.WriteString(strings.TrimPrefix(line, indent))
				body.WriteString("\n")
			}
		case ticks >= 3:
			open, isSh = ticks, info == "sh"
			indent = line[:len(line)-len(trimmed)]
			cur = shBlock{Line: i + 1}
			body.Reset()
		}
	}
	if open > 0 && isSh {
		return nil, fmt.Errorf("line %d: %w", cur.Line, errUnclosedFence)
	}
	return blocks, nil
}

func TestShBlocks(t *testing.T) {
	tests := []struct {
		name    string
		md      string
		want    []shBlock
		wantErr error
	}{
		{
			name: "sh blocks in order, others skipped",
			md:   "# T\n\n```sh\necho one\necho two\n```\n\ntext\n\n```hcl\nx = 1\n```\n\n```sh\necho three\n```\n",
			want: []shBlock{{Line: 3, Text: "echo one\necho two\n"}, {Line: 14, Text: "echo three\n"}},
		},
		{
			name: "a ```sh line inside another fence is not a block",
			md:   "````md\n```sh\nnot run\n```\n````\n```console\n$ x\n```\n",
			want: nil,
		},
		{
			name: "an indented block loses the fence's indentation",
			md:   "- item:\n\n  ```sh\n  make install\n    indented more\n  ```\n",
			want: []shBlock{{Line: 3, Text: "make install\n  indented more\n"}},
		},
		{
			name: "empty lines and heredocs are kept",
			md:   "```sh\ncat > f <<'EOF'\na\n\nb\nEOF\n```\n",
			want: []shBlock{{Line: 1, Text: "cat > f <<'EOF'\na\n\nb\nEOF\n"}},
		},
		{
			name: "shell and bash fences are not run",
			md:   "```bash\nrm -rf /\n```\n```shell\nrm -rf /\n```\n",
			want: nil,
		},
		{
			name:    "unclosed",
			md:      "```sh\necho\n",
			wantErr: errUnclosedFence,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := shBlocks(tt.md)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("shBlocks: error %v; want %v", err, tt.wantErr)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("shBlocks = %+v; want %+v", got, tt.want)
			}
		})
	}
}

// quickstartScript joins the blocks into one script, as one shell session
// types them, with a marker line before each block naming its line in the
// page, so that a failure can be traced to its block.
func quickstartScript(blocks []shBlock) string {
	var b strings.Builder
	for i, bl := range blocks {
		fmt.Fprintf(&b, "printf '\\n%%s\\n' '%s block %d (line %d)'\n", quickstartMarker, i+1, bl.Line)
		b.WriteString(bl.Text)
	}
	return b.String()
}

// quickstartMarker starts the line the script prints before each block.
const quickstartMarker = "=== quickstart:"

// TestQuickstart follows docs/quickstart.md word for word: it runs every
// ```sh block of the page, in order, in one `sh -e` session whose HOME is a
// scratch directory (ports are free ones, given through the variables the
// page reads), where the page's `git clone` gets a snapshot of this working
// tree. Then it checks what the page promises: the job's artifacts were
// downloaded with the right contents, no VM but the template is left in the
// simulator's state, and no process the page started is still running.
func TestQuickstart(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("quickstart test: skipped with -short")
	}
	if os.Geteuid() != 0 {
		t.Skip("quickstart test: the quickstart runs agentlab-pvesim --guest-exec, which needs root (mount and PID namespaces)")
	}
	tf := os.Getenv("TF_ACC_TERRAFORM_PATH")
	for _, name := range []string{"terraform", "tofu"} {
		if tf == "" {
			tf, _ = exec.LookPath(name)
		}
	}
	if tf == "" {
		t.Skip("quickstart test: neither terraform nor tofu is on PATH")
	}
	for _, tool := range []string{"git", "curl", "make", "sh", "sha256sum", "diff"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("quickstart test: the quickstart needs %s on PATH", tool)
		}
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("quickstart test: the quickstart needs go on PATH")
	}

	md, err := os.ReadFile(quickstartDoc)
	if err != nil {
		t.Fatal(err)
	}
	blocks, err := shBlocks(string(md))
	if err != nil {
		t.Fatalf("%s: %v", quickstartDoc, err)
	}
	if len(blocks) == 0 {
		t.Fatalf("%s has no ```sh blocks", quickstartDoc)
	}

	scratch := t.TempDir()
	home := filepath.Join(scratch, "home")
	src := snapshotWorkTree(t, filepath.Join(scratch, "src"))
	if err := os.MkdirAll(home, 0o755); err != nil {
		t.Fatal(err)
	}
	// The page clones the project from GitHub; here the clone gets this tree.
	gitconfig := fmt.Sprintf("[url %q]\n\tinsteadOf = %s\n", src, quickstartCloneURL)
	if err := os.WriteFile(filepath.Join(home, ".gitconfig"), []byte(gitconfig), 0o644); err != nil {
		t.Fatal(err)
	}
	// The page says `terraform`; with OpenTofu under test, that name runs tofu.
	tfDir := filepath.Join(scratch, "tf")
	if err := os.MkdirAll(tfDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(tf, filepath.Join(tfDir, "terraform")); err != nil {
		t.Fatal(err)
	}
	env, err := quickstartEnv(home, tfDir, goBin)
	if err != nil {
		t.Fatal(err)
	}
	ports := map[string]string{}
	for _, name := range []string{"PVE_PORT", "REAPER_PORT", "GUEST_PORT", "GIT_PORT"} {
		_, port, _ := strings.Cut(freeAddr(t), ":")
		ports[name] = port
		env = append(env, name+"="+port)
	}

	script := filepath.Join(scratch, "quickstart.sh")
	if err := os.WriteFile(script, []byte(quickstartScript(blocks)), 0o644); err != nil {
		t.Fatal(err)
	}
	logFile := filepath.Join(scratch, "quickstart.log")
	started := time.Now()
	out, runErr := runQuickstart(t, script, home, env, logFile)
	t.Logf("the quickstart's %d blocks ran in %s (output in %s while the test runs)", len(blocks), time.Since(started).Round(time.Second), logFile)
	qs := filepath.Join(home, "agentlab-quickstart") // the page's default $QS
	if runErr != nil {
		t.Fatalf("following %s failed in %s: %v\n%s\n--- pvesim.log:\n%s\n--- reaper.log:\n%s", quickstartDoc,
			lastMarker(out), runErr, tail(out, 80), tailFile(filepath.Join(qs, "pvesim.log"), 30),
			tailFile(filepath.Join(qs, "reaper.log"), 30))
	}

	// The artifacts the page's repository builds, as terraform downloaded them.
	want := map[string]string{
		"out/sorted.txt":   "one\nthree\ntwo\n",
		"out/greeting.txt": "hello from a sandbox\n",
	}
	for name, content := range want {
		for _, dir := range []string{filepath.Join(qs, "job", "artifacts"), filepath.Join(qs, "from-reaper")} {
			b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(name)))
			if err != nil || sha(string(b)) != sha(content) {
				t.Errorf("%s in %s: %v, sha256 %s; want %s (%q)", name, dir, err, sha(string(b)), sha(content), content)
			}
		}
	}
	if !strings.Contains(out, `status = "succeeded"`) {
		t.Errorf("terraform's outputs do not say status = \"succeeded\":\n%s", tail(out, 60))
	}

	// Nothing is left: the simulator's state, read by a fresh simulator,
	// holds only the template, and no seed ISO.
	sim := reapertest.StartSimulator(t, filepath.Join(home, "go", "bin", "agentlab-pvesim"),
		"--listen", "127.0.0.1:0", "--plain-http", "--state-dir", filepath.Join(qs, "pvesim"))
	ctx := context.Background()
	c, err := pve.New(ctx, pve.Config{Endpoint: sim.Endpoint, APIToken: sim.Token})
	if err != nil {
		t.Fatal(err)
	}
	vms, err := c.ListVMs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, vm := range vms {
		if !vm.Template {
			t.Errorf("the quickstart left VM %d (%s, %s, tags %v) behind", vm.VMID, vm.Name, vm.Status, vm.Tags)
		}
	}
	isos, err := c.StorageContent(ctx, "pve", "local", "iso", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, iso := range isos {
		t.Errorf("the quickstart left the seed ISO %s behind", iso.VolID)
	}
}

// quickstartEnv is the environment of a newcomer's shell: this one's PATH
// (without the real GOPATH's bin, so only what the page installs is found,
// and with the terraform under test first), the scratch HOME, and Go's
// module and build caches shared with this run so that nothing is
// downloaded or compiled twice. Nothing else is inherited: no
// TF_CLI_CONFIG_FILE, no TF_ACC, no make variables.
func quickstartEnv(home, tfDir, goBin string) ([]string, error) {
	goEnv := func(name string) (string, error) {
		out, err := exec.Command(goBin, "env", name).Output()
		if err != nil {
			return "", fmt.Errorf("go env %s: %w", name, err)
		}
		return strings.TrimSpace(string(out)), nil
	}
	gopath, err := goEnv("GOPATH")
	if err != nil {
		return nil, err
	}
	gopathBins := map[string]bool{}
	for _, dir := range filepath.SplitList(gopath) {
		gopathBins[filepath.Join(dir, "bin")] = true
	}
	path := []string{tfDir}
	for _, dir := range filepath.SplitList(os.Getenv("PATH")) {
		if dir != "" && !gopathBins[filepath.Clean(dir)] {
			path = append(path, dir)
		}
	}
	env := []string{
		"HOME=" + home,
		"PATH=" + strings.Join(path, string(filepath.ListSeparator)),
		"LANG=C.UTF-8",
		"CHECKPOINT_DISABLE=1", // no version check against HashiCorp's servers
	}
	for _, name := range []string{"GOCACHE", "GOMODCACHE"} {
		v, err := goEnv(name)
		if err != nil {
			return nil, err
		}
		env = append(env, name+"="+v)
	}
	for _, name := range []string{"GOPROXY", "GOSUMDB", "GONOSUMDB", "GOPRIVATE", "GOFLAGS", "GOTOOLCHAIN", "TMPDIR"} {
		if v, ok := os.LookupEnv(name); ok {
			env = append(env, name+"="+v)
		}
	}
	return env, nil
}

// snapshotWorkTree copies this working tree (tracked files and untracked
// ones git does not ignore, as they are now) into dir and commits it there,
// so that the page's clone builds the code under test.
func snapshotWorkTree(t *testing.T, dir string) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	ls := exec.Command("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard")
	ls.Dir = root
	list, err := ls.Output()
	if err != nil {
		t.Fatalf("git ls-files: %v", err)
	}
	for _, name := range strings.Split(strings.TrimRight(string(list), "\x00"), "\x00") {
		from, to := filepath.Join(root, name), filepath.Join(dir, name)
		fi, err := os.Lstat(from)
		if errors.Is(err, os.ErrNotExist) {
			continue // deleted in the working tree
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
			t.Fatal(err)
		}
		if fi.Mode()&os.ModeSymlink != 0 {
			target, err := os.Readlink(from)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(target, to); err != nil {
				t.Fatal(err)
			}
			continue
		}
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to, b, fi.Mode().Perm()); err != nil {
			t.Fatal(err)
		}
	}
	for _, args := range [][]string{
		{"init", "-q", "-b", "main"},
		{"add", "-A"},
		{"-c", "user.name=e2e", "-c", "user.email=e2e@example.com", "commit", "-q", "-m", "snapshot of the working tree"},
	} {
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, b)
		}
	}
	return dir
}

// runQuickstart runs script with sh -e in its own process group, its output
// going to logFile and returned. Whatever the script leaves running is then
// given 15 s to end (the page stops what it starts), reported as an error
// if it does not, and killed.
func runQuickstart(t *testing.T, script, dir string, env []string, logFile string) (string, error) {
	t.Helper()
	f, err := os.Create(logFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-e", script)
	cmd.Dir = dir
	cmd.Env = env
	cmd.Stdin = nil // terraform must not wait for an answer
	cmd.Stdout = io.MultiWriter(&out, f)
	cmd.Stderr = cmd.Stdout
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// Background processes keep the output pipe open; stop waiting for it
	// once the shell has exited.
	cmd.WaitDelay = 5 * time.Second
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pgid := cmd.Process.Pid
	runErr := cmd.Wait()
	if errors.Is(runErr, exec.ErrWaitDelay) {
		runErr = nil // the shell exited 0; what it left running is checked below
	}
	if ctx.Err() != nil {
		runErr = fmt.Errorf("still running after 12 minutes: %w", runErr)
	}

	deadline := time.Now().Add(15 * time.Second)
	for len(groupMembers(pgid)) > 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond) // processes of the page ending after its kill
	}
	if left := groupMembers(pgid); len(left) > 0 {
		if runErr == nil {
			t.Errorf("the quickstart left processes running: %s", strings.Join(left, "; "))
		}
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		deadline = time.Now().Add(10 * time.Second)
		for len(groupMembers(pgid)) > 0 && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond) // giving them a chance to end cleanly
		}
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
	}
	return out.String(), runErr
}

// groupMembers lists the live (not zombie) processes of process group pgid,
// as "PID COMMAND".
func groupMembers(pgid int) []string {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	var found []string
	for _, p := range stats {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp ...; comm may hold spaces and parentheses.
		s := string(b)
		open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || end < open {
			continue
		}
		fields := strings.Fields(s[end+1:])
		if len(fields) < 3 || fields[0] == "Z" {
			continue
		}
		if g, err := strconv.Atoi(fields[2]); err == nil && g == pgid {
			found = append(found, strings.TrimSpace(s[:open])+" "+s[open+1:end])
		}
	}
	return found
}

// lastMarker names the block the script was in when it stopped.
func lastMarker(out string) string {
	last := "the first block"
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), quickstartMarker+" "); ok {
			last = rest
		}
	}
	return last
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// tailFile returns the last n lines of a file, or why it cannot.
func tailFile(name string, n int) string {
	b, err := os.ReadFile(name)
	if err != nil {
		return err.Error()
	}
	return tail(string(b), n)
}
