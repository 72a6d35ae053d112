package cloudinit

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

func TestRenderHeartbeat(t *testing.T) {
	c := testConfig()
	c.Heartbeat = &Heartbeat{URL: "http://10.77.0.1:8846", Token: "tok_0123456789abcdef"}
	seed, err := c.Render()
	if err != nil {
		t.Fatalf("Render: %v", err)
	}
	var doc struct {
		WriteFiles []writeFile `yaml:"write_files"`
	}
	if err := yaml.Unmarshal(seed.UserData, &doc); err != nil {
		t.Fatalf("user-data is not YAML: %v", err)
	}
	if len(doc.WriteFiles) != 2 {
		t.Fatalf("write_files has %d entries; want 2", len(doc.WriteFiles))
	}
	env, cmd := doc.WriteFiles[0], doc.WriteFiles[1]
	if env.Path != HeartbeatEnvFile || env.Permissions != "0600" || env.Owner != "agent:agent" || !env.Defer {
		t.Errorf("env file = %+v; want %s, 0600, agent:agent, deferred", env, HeartbeatEnvFile)
	}
	wantEnv := "AGENTLAB_HEARTBEAT_URL=http://10.77.0.1:8846\nAGENTLAB_HEARTBEAT_TOKEN=tok_0123456789abcdef\n"
	if env.Content != wantEnv {
		t.Errorf("env content = %q; want %q", env.Content, wantEnv)
	}
	if cmd.Path != HeartbeatCommand || cmd.Permissions != "0755" || !strings.Contains(cmd.Content, "/v1/heartbeat") {
		t.Errorf("command = %+v; want %s, 0755, posting to /v1/heartbeat", cmd, HeartbeatCommand)
	}
	// Without a heartbeat there is no write_files key at all.
	plain, err := testConfig().Render()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(plain.UserData), "write_files") {
		t.Errorf("user-data without heartbeat has write_files:\n%s", plain.UserData)
	}
}

func TestHeartbeatValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		hb   Heartbeat
		want string
	}{
		{"no scheme", Heartbeat{URL: "10.77.0.1:8846", Token: "tok_0123456789abcdef"}, "heartbeat url"},
		{"ftp", Heartbeat{URL: "ftp://10.77.0.1", Token: "tok_0123456789abcdef"}, "heartbeat url"},
		{"query", Heartbeat{URL: "http://10.77.0.1:8846/?x=1", Token: "tok_0123456789abcdef"}, "heartbeat url"},
		{"short token", Heartbeat{URL: "http://10.77.0.1:8846", Token: "short"}, "heartbeat token"},
		{"shell chars", Heartbeat{URL: "http://10.77.0.1:8846", Token: "tok_0123456789abcdef;rm"}, "heartbeat token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := testConfig()
			hb := tc.hb
			c.Heartbeat = &hb
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate() = %v; want an error about %s", err, tc.want)
			}
		})
	}
}

// TestRenderBootReport: with ReportBoot, the boot report is the last runcmd
// entry (after the secrets and the job runner) and cannot fail the boot;
// without it there is none.
func TestRenderBootReport(t *testing.T) {
	runcmd := func(c Config) [][]string {
		t.Helper()
		seed, err := c.Render()
		if err != nil {
			t.Fatalf("Render: %v", err)
		}
		var doc struct {
			Runcmd [][]string `yaml:"runcmd"`
		}
		if err := yaml.Unmarshal(seed.UserData, &doc); err != nil {
			t.Fatalf("user-data is not YAML: %v", err)
		}
		return doc.Runcmd
	}
	c := testConfig()
	c.Heartbeat = &Heartbeat{URL: "http://10.77.0.1:8846", Token: "tok_0123456789abcdef"}
	if got := runcmd(c); len(got) != 0 {
		t.Errorf("runcmd without ReportBoot = %q; want none", got)
	}
	c.Heartbeat.ReportBoot = true
	c.Job = &Job{URL: "http://10.77.0.1:8846", BootstrapToken: "boot_0123456789abcdef"}
	got := runcmd(c)
	if len(got) != 2 {
		t.Fatalf("runcmd = %q; want the job runner, then the boot report", got)
	}
	if last, want := strings.Join(got[1], " "), "sh -c nohup "+HeartbeatCommand+" --booted >"+BootReportLog+" 2>&1 &"; last != want {
		t.Errorf("last runcmd = %q; want %q: the boot report in the background", last, want)
	}
}

// TestHeartbeatScript runs the heartbeat script with a curl that prints its
// arguments and fails as often as told, and a sleep that returns at once:
// a heartbeat POSTs to /v1/heartbeat once, whatever the answer; --booted
// POSTs to /v1/booted until it works, up to its bound; anything else is a
// usage error.
func TestHeartbeatScript(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	dir := t.TempDir()
	env := filepath.Join(dir, "heartbeat.env")
	if err := os.WriteFile(env, []byte("AGENTLAB_HEARTBEAT_URL=http://10.77.0.1:8846/\nAGENTLAB_HEARTBEAT_TOKEN=tok_0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// curl logs its arguments to $CALLS and fails while the file
	// "failures" holds a positive count; once it succeeds it answers with
	// $ANSWER.
	fake := map[string]string{
		"curl": "#!/bin/sh\necho \"curl $*\" >>\"$CALLS\"\nn=$(cat \"$FAILS\")\necho $((n - 1)) >\"$FAILS\"\n" +
			"[ \"$n\" -le 0 ] || exit 1\nprintf '%s\\n' \"$ANSWER\"\n",
		"sleep": "#!/bin/sh\n",
	}
	for name, body := range fake {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	script := filepath.Join(dir, "agentlab-heartbeat")
	if err := os.WriteFile(script, []byte(strings.ReplaceAll(heartbeatScript, HeartbeatEnvFile, env)), 0o755); err != nil {
		t.Fatal(err)
	}
	const auth = "--request POST --header Authorization: Bearer tok_0123456789abcdef http://10.77.0.1:8846"
	tries, _ := strconv.Atoi(bootReportTries)
	for _, tc := range []struct {
		args     []string
		failures int
		calls    int    // curl runs
		url      string // the URL every run posts to
		exit     int
		stderr   string
	}{
		{nil, 0, 1, "/v1/heartbeat", 0, ""},
		{nil, 1, 1, "/v1/heartbeat", 1, ""},
		{[]string{"--booted"}, 0, 1, "/v1/booted", 0, ""},
		{[]string{"--booted"}, 3, 4, "/v1/booted", 0, ""},
		{[]string{"--booted"}, tries + 5, tries, "/v1/booted", 1, "the boot report did not reach the reaper"},
		{[]string{"--bogus"}, 0, 0, "", 2, "usage"},
	} {
		fails := filepath.Join(dir, "failures")
		if err := os.WriteFile(fails, []byte(strconv.Itoa(tc.failures)), 0o600); err != nil {
			t.Fatal(err)
		}
		calls := filepath.Join(dir, "calls")
		_ = os.Remove(calls)
		cmd := exec.Command(sh, append([]string{script}, tc.args...)...)
		cmd.Env = []string{"PATH=" + dir + ":/usr/bin:/bin", "FAILS=" + fails, "CALLS=" + calls, `ANSWER={"vmid":101}`}
		var stdout, stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		exit := 0
		if ee, ok := err.(*exec.ExitError); ok {
			exit = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		logged, _ := os.ReadFile(calls)
		runs := strings.Count(string(logged), "curl ")
		if exit != tc.exit || runs != tc.calls || !strings.Contains(stderr.String(), tc.stderr) {
			t.Errorf("agentlab-heartbeat %q with %d failures: exit %d, %d curl runs, stderr %q; want exit %d, %d runs, stderr with %q",
				tc.args, tc.failures, exit, runs, stderr.String(), tc.exit, tc.calls, tc.stderr)
		}
		if tc.calls > 0 && strings.Count(string(logged), auth+tc.url+"\n") != runs {
			t.Errorf("agentlab-heartbeat %q ran:\n%s\nwant every run to post %s%s", tc.args, logged, auth, tc.url)
		}
	}
}

// TestBootReportTakesTheHandedToken: the boot report's answer carries a fresh
// heartbeat token, which replaces the seed's in the env file (same mode), is
// used by the next heartbeat, and is printed nowhere.
func TestBootReportTakesTheHandedToken(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	dir := t.TempDir()
	env := filepath.Join(dir, "heartbeat.env")
	if err := os.WriteFile(env, []byte("AGENTLAB_HEARTBEAT_URL=http://10.77.0.1:8846\nAGENTLAB_HEARTBEAT_TOKEN=seed_0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	curl := "#!/bin/sh\necho \"curl $*\" >>\"$CALLS\"\nprintf '%s\\n' \"$ANSWER\"\n"
	if err := os.WriteFile(filepath.Join(dir, "curl"), []byte(curl), 0o755); err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(dir, "agentlab-heartbeat")
	if err := os.WriteFile(script, []byte(strings.ReplaceAll(heartbeatScript, HeartbeatEnvFile, env)), 0o755); err != nil {
		t.Fatal(err)
	}
	calls := filepath.Join(dir, "calls")
	run := func(answer string, args ...string) string {
		t.Helper()
		cmd := exec.Command(sh, append([]string{script}, args...)...)
		cmd.Env = []string{"PATH=" + dir + ":/usr/bin:/bin", "CALLS=" + calls, "ANSWER=" + answer}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("agentlab-heartbeat %q: %v\n%s", args, err, out)
		}
		return string(out)
	}
	const fresh = "fresh_Tok-0123456789abcdefghij"
	out := run(`{"vmid":101,"heartbeat_token":"`+fresh+`"}`, "--booted")
	if strings.Contains(out, fresh) {
		t.Errorf("the boot report printed the handed token: %q", out)
	}
	b, err := os.ReadFile(env)
	if err != nil {
		t.Fatal(err)
	}
	if want := "AGENTLAB_HEARTBEAT_URL=http://10.77.0.1:8846\nAGENTLAB_HEARTBEAT_TOKEN=" + fresh + "\n"; string(b) != want {
		t.Errorf("env file after the boot report = %q; want %q", b, want)
	}
	if fi, err := os.Stat(env); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("env file mode after the boot report: %v, %v; want 0600", fi.Mode(), err)
	}
	// A report answered without a token keeps the one there is.
	run(`{"vmid":101}`, "--booted")
	run(`{"vmid":101}`)
	logged, _ := os.ReadFile(calls)
	lines := strings.Split(strings.TrimSpace(string(logged)), "\n")
	if len(lines) != 3 || !strings.Contains(lines[0], "Bearer seed_0123456789abcdef") ||
		!strings.Contains(lines[1], "Bearer "+fresh) || !strings.Contains(lines[2], "Bearer "+fresh+" http://10.77.0.1:8846/v1/heartbeat") {
		t.Errorf("curl runs:\n%s\nwant the seed's token for the first report, the handed one after", logged)
	}
}
