package provider

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"

	"github.com/agentlab/terraform-provider-agentlab/internal/egressrule"
	"github.com/agentlab/terraform-provider-agentlab/internal/job"
	"github.com/agentlab/terraform-provider-agentlab/internal/lease"
	"github.com/agentlab/terraform-provider-agentlab/internal/tfcli"
)

// configReaper returns the terraform block (import steps need it), the
// provider block with the fake reaper, then body.
func (e *accEnv) configReaper(f *fakeReaper, body string) string {
	return fmt.Sprintf(`
terraform {
  required_providers {
    agentlab = { source = %q }
  }
}

provider "agentlab" {
  endpoint     = %q
  api_token    = %q
  insecure     = true
  profiles_dir = %q
%s}
`, tfcli.Source, e.sim.URL, e.sim.Token, e.profiles, f.providerBlock()) + body
}

func TestAccJob_waitArtifactsReplace(t *testing.T) {
	e := newAccEnv(t)
	f := newFakeReaper(t)
	f.outcome["https://git.example/ok.git"] = fakeOutcome{status: job.StatusSucceeded, exit: 0,
		files: map[string]string{"out/report.txt": "all good\n", "summary.json": `{"ok":true}`}}
	dir := t.TempDir()
	jobConfig := func(task string) string {
		return fmt.Sprintf(`
resource "agentlab_job" "build" {
  repo          = "https://git.example/ok.git"
  ref           = "main"
  task          = %q
  template_vmid = 9000
  timeout       = "10m"
  artifacts     = ["out/**", "summary.json"]
  env           = { GREETING = "hello" }
}

data "agentlab_job_artifacts" "build" {
  job_id       = agentlab_job.build.id
  download_dir = %q
}
`, task, dir)
	}
	const addr = "agentlab_job.build"
	var firstID string
	resource.ParallelTest(t, resource.TestCase{
		ProtoV6ProviderFactories: e.factories(),
		CheckDestroy:             e.checkNothingLeft(t),
		Steps: []resource.TestStep{
			{
				Config:           e.configReaper(f, jobConfig("make test")),
				ConfigPlanChecks: resource.ConfigPlanChecks{PostApplyPostRefresh: emptyPlanAfterApply()},
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue(addr, tfjsonpath.New("status"), knownvalue.StringExact("succeeded")),
					statecheck.ExpectKnownValue(addr, tfjsonpath.New("exit_code"), knownvalue.Int64Exact(0)),
					statecheck.ExpectKnownValue(addr, tfjsonpath.New("ssh_user"), knownvalue.StringExact("agent")),
					statecheck.ExpectKnownValue(addr, tfjsonpath.New("artifact_list"), knownvalue.ListSizeExact(2)),
					statecheck.ExpectKnownValue(addr, tfjsonpath.New("artifact_list").AtSliceIndex(0).AtMapKey("name"), knownvalue.StringExact("out/report.txt")),
					statecheck.ExpectKnownValue("data.agentlab_job_artifacts.build", tfjsonpath.New("artifacts"), knownvalue.ListSizeExact(2)),
				},
				Check: func(s *terraform.State) error {
					rs := s.RootModule().Resources[addr].Primary
					firstID = rs.ID
					vmid, err := stateVMID(s, addr)
					if err != nil {
						return err
					}
					f.mu.Lock()
					sb := f.sandboxes[firstID]
					f.mu.Unlock()
					if sb.VMID != vmid || sb.Node != "pve" {
						return fmt.Errorf("the reaper was told sandbox %+v; want pve/%d", sb, vmid)
					}
					m, err := lease.Decode(e.vmConfig(t, vmid).Description())
					if err != nil || m.JobID != firstID {
						return fmt.Errorf("sandbox metadata job id = %q (%v); want %s", m.JobID, err, firstID)
					}
					b, err := os.ReadFile(filepath.Join(dir, "out", "report.txt"))
					if err != nil || string(b) != "all good\n" {
						return fmt.Errorf("downloaded report = %q, %v", b, err)
					}
					return nil
				},
			},
			{
				// A new task is a new job; the old one is cancelled and its
				// sandbox removed.
				Config: e.configReaper(f, jobConfig("make check")),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply:             []plancheck.PlanCheck{plancheck.ExpectResourceAction(addr, plancheck.ResourceActionDestroyBeforeCreate)},
					PostApplyPostRefresh: emptyPlanAfterApply(),
				},
				Check: func(s *terraform.State) error {
					if id := s.RootModule().Resources[addr].Primary.ID; id == firstID {
						return fmt.Errorf("job id unchanged (%s); want a new job", id)
					}
					f.mu.Lock()
					defer f.mu.Unlock()
					if len(f.cancelled) != 1 || f.cancelled[0] != firstID {
						return fmt.Errorf("cancelled = %v; want [%s]", f.cancelled, firstID)
					}
					if why := f.cancelWhy[firstID]; why != "the agentlab_job was destroyed or replaced" {
						return fmt.Errorf("the replaced job was cancelled for %q; want the provider to say it was replaced", why)
					}
					if n := len(e.sandboxes(t)); n != 1 {
						return fmt.Errorf("%d VMs in the simulator; want the new job's only", n)
					}
					return nil
				},
			},
		},
	})
}

func TestAccJob_noWaitThenRefresh(t *testing.T) {
	e := newAccEnv(t)
	f := newFakeReaper(t)
	const repo = "https://git.example/slow.git"
	config := e.configReaper(f, `
resource "agentlab_job" "slow" {
  repo          = "`+repo+`"
  ref           = "v1.2.0"
  task          = "exit 3"
  template_vmid = 9000
  wait          = false
}
`)
	const addr = "agentlab_job.slow"
	resource.ParallelTest(t, resource.TestCase{
		ProtoV6ProviderFactories: e.factories(),
		CheckDestroy:             e.checkNothingLeft(t),
		Steps: []resource.TestStep{
			{
				Config: config,
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue(addr, tfjsonpath.New("status"), knownvalue.StringExact("booting")),
					statecheck.ExpectKnownValue(addr, tfjsonpath.New("exit_code"), knownvalue.Null()),
					statecheck.ExpectKnownValue(addr, tfjsonpath.New("ssh_command"),
						knownvalue.StringRegexp(regexp.MustCompile(`^ssh agent@\d+\.\d+\.\d+\.\d+$`))),
				},
				Check: func(*terraform.State) error {
					f.finish(repo, fakeOutcome{status: job.StatusFailed, exit: 3})
					return nil
				},
			},
			{
				// The refresh reads the outcome; nothing is to be done.
				Config:           config,
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: emptyPlanAfterApply()},
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue(addr, tfjsonpath.New("status"), knownvalue.StringExact("failed")),
					statecheck.ExpectKnownValue(addr, tfjsonpath.New("exit_code"), knownvalue.Int64Exact(3)),
					// An ended job's sandbox is the reaper's to destroy: no
					// command to reach it.
					statecheck.ExpectKnownValue(addr, tfjsonpath.New("ssh_command"), knownvalue.Null()),
				},
			},
		},
	})
}

func TestAccJob_badInput(t *testing.T) {
	e := newAccEnv(t)
	f := newFakeReaper(t)
	resource.ParallelTest(t, resource.TestCase{
		ProtoV6ProviderFactories: e.factories(),
		Steps: []resource.TestStep{
			{
				Config: e.configReaper(f, `
resource "agentlab_job" "bad" {
  repo          = "https://git.example/x.git"
  ref           = "main"
  task          = "true"
  template_vmid = 9000
  env           = { AGENTLAB_TOKEN = "x" }
}
`),
				ExpectError: regexp.MustCompile(`(?s)env.AGENTLAB_TOKEN.*reserved`),
			},
			{
				Config: e.config(`
resource "agentlab_job" "noreaper" {
  repo          = "https://git.example/x.git"
  ref           = "main"
  task          = "true"
  template_vmid = 9000
}
`),
				ExpectError: regexp.MustCompile(`The reaper is not configured`),
			},
			{
				Config: e.configReaper(f, `
resource "agentlab_job" "notemplate" {
  repo = "https://git.example/x.git"
  ref  = "main"
  task = "true"
}
`),
				ExpectError: regexp.MustCompile(`Missing template_vmid`),
			},
			{
				Config: e.configReaper(f, `
resource "agentlab_job" "badglob" {
  repo          = "https://git.example/x.git"
  ref           = "main"
  task          = "true"
  template_vmid = 9000
  artifacts     = ["../secrets"]
}
`),
				ExpectError: regexp.MustCompile(`(?s)Invalid job.*artifacts\[0\]`),
			},
			{
				// Every mistake at once, each at its attribute; a timeout
				// that is no duration only once (its own validator).
				Config: e.configReaper(f, `
resource "agentlab_job" "bad" {
  repo          = "-x"
  ref           = "a..b"
  task          = "true"
  template_vmid = 9000
  timeout       = "5 minutes"
  artifacts     = ["../secrets"]
  env           = { "1BAD" = "x" }
}
`),
				ExpectError: regexp.MustCompile(`(?s)repo: must not start.*ref: "a\.\.b" is not.*Invalid duration.*artifacts\[0\].*env\.1BAD`),
			},
			{
				// Registered, then its sandbox fails: the job is cancelled,
				// saying why.
				Config: e.configReaper(f, `
resource "agentlab_job" "bad" {
  repo          = "https://git.example/x.git"
  ref           = "main"
  task          = "true"
  template_vmid = 4242
}
`),
				ExpectError: regexp.MustCompile(`Template not found`),
			},
		},
	})
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.cancelled) != 1 || f.cancelWhy[f.cancelled[0]] != "its sandbox could not be made: Template not found" {
		t.Errorf("cancelled %v for %v; want one job, cancelled because its sandbox could not be made", f.cancelled, f.cancelWhy)
	}
}

// okJobDownloadedTo is a job on the fake's ok repository whose artifacts
// the data source downloads into dir.
func okJobDownloadedTo(dir string) string {
	return fmt.Sprintf(`
resource "agentlab_job" "build" {
  repo          = "https://git.example/ok.git"
  ref           = "main"
  task          = "true"
  template_vmid = 9000
}

data "agentlab_job_artifacts" "build" {
  job_id       = agentlab_job.build.id
  download_dir = %q
}
`, dir)
}

// TestAccJobArtifacts_downloadsOnce: every plan reads the data source, and
// only a file that is missing or differs from the artifact is fetched again.
func TestAccJobArtifacts_downloadsOnce(t *testing.T) {
	e := newAccEnv(t)
	f := newFakeReaper(t)
	f.outcome["https://git.example/ok.git"] = fakeOutcome{status: job.StatusSucceeded,
		files: map[string]string{"a.txt": "alpha", "out/b.txt": "beta"}}
	dir := t.TempDir()
	config := e.configReaper(f, okJobDownloadedTo(dir))
	downloads := func(want int) error {
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.downloads != want {
			return fmt.Errorf("%d artifact downloads; want %d", f.downloads, want)
		}
		return nil
	}
	resource.ParallelTest(t, resource.TestCase{
		ProtoV6ProviderFactories: e.factories(),
		CheckDestroy:             e.checkNothingLeft(t),
		Steps: []resource.TestStep{
			{
				Config: config,
				Check:  func(*terraform.State) error { return downloads(2) },
			},
			{
				// The plans and refreshes since fetched nothing; a file
				// changed on disk is fetched again, the other is not.
				PreConfig: func() {
					if err := downloads(2); err != nil {
						t.Error(err)
					}
					if err := os.WriteFile(filepath.Join(dir, "a.txt"), []byte("tampered"), 0o644); err != nil {
						t.Fatal(err)
					}
				},
				Config: config,
				Check: func(*terraform.State) error {
					if b, err := os.ReadFile(filepath.Join(dir, "a.txt")); err != nil || string(b) != "alpha" {
						return fmt.Errorf("a.txt = %q, %v; want the artifact's bytes again", b, err)
					}
					return downloads(3)
				},
			},
		},
	})
}

func TestAccJobArtifacts_checksumMismatchLeavesNothing(t *testing.T) {
	e := newAccEnv(t)
	f := newFakeReaper(t)
	f.outcome["https://git.example/ok.git"] = fakeOutcome{status: job.StatusSucceeded,
		files: map[string]string{"a.txt": "alpha"}}
	dir := t.TempDir()
	resource.ParallelTest(t, resource.TestCase{
		ProtoV6ProviderFactories: e.factories(),
		CheckDestroy:             e.checkNothingLeft(t),
		Steps: []resource.TestStep{
			{
				Config: e.configReaper(f, `
resource "agentlab_job" "build" {
  repo          = "https://git.example/ok.git"
  ref           = "main"
  task          = "true"
  template_vmid = 9000
}
`),
				Check: func(*terraform.State) error {
					f.mu.Lock()
					f.corrupt = true
					f.mu.Unlock()
					return nil
				},
			},
			{
				Config:      e.configReaper(f, okJobDownloadedTo(dir)),
				ExpectError: regexp.MustCompile(`(?s)Downloading an artifact failed.*checksum mismatch`),
			},
			{
				Config: e.configReaper(f, `
resource "agentlab_job" "build" {
  repo          = "https://git.example/ok.git"
  ref           = "main"
  task          = "true"
  template_vmid = 9000
}
`),
				Check: func(*terraform.State) error {
					entries, err := os.ReadDir(dir)
					if err != nil || len(entries) != 0 {
						return fmt.Errorf("download dir holds %v (%v); want nothing after a checksum mismatch", entries, err)
					}
					return nil
				},
			},
		},
	})
}

// TestAccJob_egress: a job's sandbox carries its egress policy (attribute,
// else the profile's network.egress) and allow list in its metadata, where
// the reaper's egress filter reads them, exactly as a sandbox's; changing
// either runs a new job, and a bad entry is a plan-time error.
func TestAccJob_egress(t *testing.T) {
	e := newAccEnv(t)
	f := newFakeReaper(t)
	e.writeProfile(t, "locked", "template_vmid: 9000\nnetwork:\n  egress: allowlist\n")
	const repo = "https://git.example/egress.git"
	f.outcome[repo] = fakeOutcome{status: job.StatusSucceeded}
	const addr = "agentlab_job.e"
	jobConfig := func(extra string) string {
		return e.configReaper(f, `
resource "agentlab_job" "e" {
  repo    = "`+repo+`"
  ref     = "main"
  task    = "true"
  profile = "locked"
`+extra+`
}
`)
	}
	metadata := func(policy egressrule.Policy, allow ...string) resource.TestCheckFunc {
		return e.checkEgressMetadata(t, addr, policy, allow...)
	}
	resource.ParallelTest(t, resource.TestCase{
		ProtoV6ProviderFactories: e.factories(),
		CheckDestroy:             e.checkNothingLeft(t),
		Steps: []resource.TestStep{
			{
				Config:      jobConfig(`  egress_allow = ["10.1.2.3/16"]`),
				PlanOnly:    true,
				ExpectError: regexp.MustCompile(`(?s)Invalid egress_allow entry.*write 10\.1\.0\.0/16`),
			},
			{
				Config:      jobConfig(`  egress = "closed"`),
				PlanOnly:    true,
				ExpectError: regexp.MustCompile(`(?s)egress.*value must be one of`),
			},
			{
				Config: jobConfig(`  egress_allow = ["192.168.5.0/24:443/tcp", "[2001:db8::/32]:22"]`),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply: []plancheck.PlanCheck{
						plancheck.ExpectKnownValue(addr, tfjsonpath.New("egress"), knownvalue.StringExact("allowlist")),
					},
					PostApplyPostRefresh: emptyPlanAfterApply(),
				},
				Check: metadata(egressrule.Allowlist, "192.168.5.0/24:443/tcp", "[2001:db8::/32]:22"),
			},
			{
				Config: jobConfig(`  egress = "none"`),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply:             []plancheck.PlanCheck{plancheck.ExpectResourceAction(addr, plancheck.ResourceActionDestroyBeforeCreate)},
					PostApplyPostRefresh: emptyPlanAfterApply(),
				},
				Check: metadata(egressrule.None),
			},
		},
	})
}

// TestAccJob_import: a job imported by its ID reads what the reaper
// records (status, exit code, artifacts, repo, ref, task, timeout, globs);
// the first apply with a matching configuration records the rest in place
// without a new job, and the plan after it is empty.
func TestAccJob_import(t *testing.T) {
	e := newAccEnv(t)
	f := newFakeReaper(t)
	const repo = "https://git.example/imported.git"
	id := f.addJob(t, job.RegisterRequest{Repo: repo, Ref: "v2", Task: "make test", Timeout: "45m",
		Artifacts: []string{"out/**"}, Env: map[string]string{"GREETING": "hello"}},
		fakeOutcome{status: job.StatusFailed, exit: 2, files: map[string]string{"out/report.txt": "2 failed\n"}})
	config := e.configReaper(f, `
resource "agentlab_job" "imp" {
  repo          = "`+repo+`"
  ref           = "v2"
  task          = "make test"
  template_vmid = 9000
  cores         = 2
  timeout       = "45m"
  artifacts     = ["out/**"]
  env           = { GREETING = "hello" }
}
`)
	const addr = "agentlab_job.imp"
	resource.ParallelTest(t, resource.TestCase{
		ProtoV6ProviderFactories: e.factories(),
		CheckDestroy:             e.checkNothingLeft(t),
		Steps: []resource.TestStep{
			{
				Config:             config,
				ResourceName:       addr,
				ImportState:        true,
				ImportStateId:      id,
				ImportStatePersist: true,
				ImportStateCheck: func(is []*terraform.InstanceState) error {
					if len(is) != 1 {
						return fmt.Errorf("%d instances imported; want 1", len(is))
					}
					a := is[0].Attributes
					for k, want := range map[string]string{"id": id, "repo": repo, "ref": "v2", "task": "make test",
						"timeout": "45m", "artifacts.0": "out/**", "status": "failed", "exit_code": "2", "keep_sandbox": "false",
						"artifact_list.0.name": "out/report.txt", "artifact_list.#": "1"} {
						if a[k] != want {
							return fmt.Errorf("imported %s = %q; want %q", k, a[k], want)
						}
					}
					return nil
				},
			},
			{
				Config: config,
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply:             []plancheck.PlanCheck{plancheck.ExpectResourceAction(addr, plancheck.ResourceActionUpdate)},
					PostApplyPostRefresh: emptyPlanAfterApply(),
				},
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue(addr, tfjsonpath.New("id"), knownvalue.StringExact(id)),
					statecheck.ExpectKnownValue(addr, tfjsonpath.New("template_vmid"), knownvalue.Int64Exact(9000)),
					statecheck.ExpectKnownValue(addr, tfjsonpath.New("env").AtMapKey("GREETING"), knownvalue.StringExact("hello")),
					statecheck.ExpectKnownValue(addr, tfjsonpath.New("egress"), knownvalue.StringExact("open")),
					statecheck.ExpectKnownValue(addr, tfjsonpath.New("status"), knownvalue.StringExact("failed")),
				},
				Check: func(*terraform.State) error {
					f.mu.Lock()
					defer f.mu.Unlock()
					if len(f.jobs) != 1 {
						return fmt.Errorf("the reaper holds %d jobs; want the imported one only", len(f.jobs))
					}
					return nil
				},
			},
			{
				// The same timeout spelled otherwise is recorded in place.
				Config: strings.Replace(config, `"45m"`, `"2700s"`, 1),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply:             []plancheck.PlanCheck{plancheck.ExpectResourceAction(addr, plancheck.ResourceActionUpdate)},
					PostApplyPostRefresh: emptyPlanAfterApply(),
				},
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue(addr, tfjsonpath.New("id"), knownvalue.StringExact(id)),
					statecheck.ExpectKnownValue(addr, tfjsonpath.New("timeout"), knownvalue.StringExact("2700s")),
				},
			},
		},
	})
}

// TestAccJob_importMismatch: an imported job whose recorded arguments or env
// names differ from the configuration is replaced by a new job, and a bad
// or unknown ID is a clear error.
func TestAccJob_importMismatch(t *testing.T) {
	e := newAccEnv(t)
	f := newFakeReaper(t)
	const repo = "https://git.example/other.git"
	f.outcome[repo] = fakeOutcome{status: job.StatusSucceeded}
	id := f.addJob(t, job.RegisterRequest{Repo: repo, Ref: "main", Task: "true", Env: map[string]string{"A": "1"}},
		fakeOutcome{status: job.StatusSucceeded})
	jobConfig := func(env string) string {
		return e.configReaper(f, `
resource "agentlab_job" "imp" {
  repo          = "`+repo+`"
  ref           = "main"
  task          = "true"
  template_vmid = 9000
  env           = `+env+`
}
`)
	}
	const addr = "agentlab_job.imp"
	resource.ParallelTest(t, resource.TestCase{
		ProtoV6ProviderFactories: e.factories(),
		CheckDestroy:             e.checkNothingLeft(t),
		Steps: []resource.TestStep{
			{
				Config:        jobConfig(`{ A = "1" }`),
				ResourceName:  addr,
				ImportState:   true,
				ImportStateId: "job-12",
				ExpectError:   regexp.MustCompile(`(?s)Invalid import ID.*job-5f0c2a9e41d87b36`),
			},
			{
				Config:        jobConfig(`{ A = "1" }`),
				ResourceName:  addr,
				ImportState:   true,
				ImportStateId: "job-00000000000000ff",
				ExpectError:   regexp.MustCompile(`(?s)Cannot import: no such job`),
			},
			{
				Config:             jobConfig(`{ B = "1" }`),
				ResourceName:       addr,
				ImportState:        true,
				ImportStateId:      id,
				ImportStatePersist: true,
			},
			{
				Config: jobConfig(`{ B = "1" }`),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply:             []plancheck.PlanCheck{plancheck.ExpectResourceAction(addr, plancheck.ResourceActionDestroyBeforeCreate)},
					PostApplyPostRefresh: emptyPlanAfterApply(),
				},
				Check: func(s *terraform.State) error {
					if got := s.RootModule().Resources[addr].Primary.ID; got == id {
						return fmt.Errorf("job id still %s; want a new job", got)
					}
					return nil
				},
			},
		},
	})
}
