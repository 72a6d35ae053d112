package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/agentlab/terraform-provider-agentlab/internal/cloudinit"
	"github.com/agentlab/terraform-provider-agentlab/internal/lease"
	"github.com/agentlab/terraform-provider-agentlab/internal/pve"
	"github.com/agentlab/terraform-provider-agentlab/internal/secrets"
	"github.com/agentlab/terraform-provider-agentlab/internal/volume"
)

// TestE2ESecrets delivers secrets to a sandbox and to a job through the
// real binaries: the guest (the simulator's --guest-exec, whose template
// holds the age identity) opens them into its tmpfs, one 0600 file per key,
// the job's task sees them in its environment, and the seed ISO is gone
// after first boot. No value appears in any file of the whole setup
// (terraform.tfstate, the saved plan and its `show -json`, the simulator's
// state with the VM configs, the guests' disks and consoles, the reaper's
// database), nor in the output of terraform, the simulator or the reaper.
// A new secrets_version replaces the sandbox. It runs with terraform (or
// TF_ACC_TERRAFORM_PATH) and, when AGENTLAB_E2E_TOFU names an OpenTofu
// binary (>= 1.11), with OpenTofu too.
func TestE2ESecrets(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("age"); err != nil {
		t.Skip("end-to-end secrets test: the guests need the age command on the host (Debian package age)")
	}
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "age.key")
	if err := os.WriteFile(keyFile, []byte(id.String()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	w := newWorld(t, "--guest-age-identity", keyFile)
	values := map[string]string{"API_TOKEN": "tok-" + randHex(t), "DB_PASSWORD": "pw " + randHex(t) + " with spaces"}
	w.env = append(w.env, "TF_VAR_api_token="+values["API_TOKEN"], "TF_VAR_db_password="+values["DB_PASSWORD"])

	binaries := []string{w.tf}
	if tofu := os.Getenv("AGENTLAB_E2E_TOFU"); tofu != "" {
		binaries = append(binaries, tofu)
	}
	var seen bytes.Buffer // everything terraform printed
	for _, bin := range binaries {
		t.Run(filepath.Base(bin), func(t *testing.T) {
			w.tf = bin
			w.secretsRun(t, &seen, id.Recipient().String(), values)
		})
	}

	// Nothing at rest or in a log holds a value.
	for k, v := range values {
		if bytes.Contains(seen.Bytes(), []byte(v)) {
			t.Errorf("terraform printed secret %s", k)
		}
		if strings.Contains(w.sim.Output(), v) {
			t.Errorf("the simulator's log holds secret %s", k)
		}
		if strings.Contains(w.reaper.Output(), v) {
			t.Errorf("the reaper's log holds secret %s", k)
		}
	}
	// The scan reads what it should: the state (after the destroy, its
	// backup) holds the (public) recipient.
	recipient := []byte(id.Recipient().String())
	scanned, sawRecipient := 0, false
	err = filepath.WalkDir(w.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil // sockets, and guests' files removed while walking
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil
		}
		scanned++
		if strings.HasPrefix(filepath.Base(p), "terraform.tfstate") && bytes.Contains(b, recipient) {
			sawRecipient = true
		}
		for k, v := range values {
			if bytes.Contains(b, []byte(v)) {
				t.Errorf("%s holds secret %s in plain text", p, k)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !sawRecipient {
		t.Errorf("no terraform.tfstate* under %s holds secrets_recipient: the scan missed the state", w.dir)
	}
	t.Logf("scanned %d files under %s", scanned, w.dir)
}

// secretsRun plans, applies and checks one sandbox and one job with
// secrets using w.tf.
func (w *world) secretsRun(t *testing.T, seen *bytes.Buffer, recipient string, values map[string]string) {
	dir := filepath.Join(w.dir, "tf-secrets-"+filepath.Base(w.tf))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(version string) {
		main := fmt.Sprintf(`
terraform {
  required_providers {
    agentlab = { source = %[1]q }
  }
}

provider "agentlab" {}

variable "api_token" {
  type      = string
  ephemeral = true
}

variable "db_password" {
  type      = string
  ephemeral = true
}

resource "agentlab_sandbox" "box" {
  template_vmid     = 9000
  secrets_recipient = %[3]q
  secrets           = { API_TOKEN = var.api_token, DB_PASSWORD = var.db_password }
  secrets_version   = %[4]q
}

resource "agentlab_job" "job" {
  repo              = %[2]q
  ref               = "main"
  template_vmid     = 9000
  timeout           = "5m"
  artifacts         = ["out/**"]
  secrets_recipient = %[3]q
  secrets           = { API_TOKEN = var.api_token }
  task              = <<-EOT
    mkdir -p out
    [ "$API_TOKEN" = "$(cat /run/agentlab/secrets/API_TOKEN)" ] && echo token-in-env
    [ ! -e /run/agentlab/secrets.age ] && echo ciphertext-gone
    printf %%s "$API_TOKEN" | sha256sum | cut -d' ' -f1 > out/token.sha
  EOT
}

# No secrets and no wait for an address: the provider never sees the guest
# boot, and the reaper deletes the seed on the guest's boot report.
resource "agentlab_sandbox" "quiet" {
  template_vmid = 9000
  wait_for_ip   = false
}

output "box_vmid"   { value = agentlab_sandbox.box.vmid }
output "quiet_vmid" { value = agentlab_sandbox.quiet.vmid }
output "job_status" { value = agentlab_job.job.status }
output "job_log"    { value = agentlab_job.job.log_tail }
output "job_sha"    { value = [for a in agentlab_job.job.artifact_list : a.sha256 if a.name == "out/token.sha"] }
`, w.providerAddr, w.repoURL, recipient, version)
		if err := os.WriteFile(filepath.Join(dir, "main.tf"), []byte(main), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tf := func(args ...string) string {
		t.Helper()
		out, err := w.terraform(dir, args...)
		seen.WriteString(out)
		if err != nil {
			seen.WriteString(err.Error())
			t.Fatal(err)
		}
		return out
	}
	write("1")
	tf("plan", "-out=tfplan", "-input=false", "-no-color")
	planJSON := tf("show", "-json", "tfplan")
	if err := os.WriteFile(filepath.Join(dir, "plan.json"), []byte(planJSON), 0o600); err != nil {
		t.Fatal(err) // kept for the scan of every file
	}
	// The reaper's log from here on is this run's: a VMID of an earlier
	// run's sandbox (destroyed since) may be this run's too.
	logFrom := len(w.reaper.Lines())
	tf("apply", "-input=false", "-no-color", "tfplan")
	t.Cleanup(func() {
		if out, err := w.terraform(dir, "destroy", "-auto-approve", "-input=false", "-no-color"); err != nil {
			t.Errorf("destroy: %v", err)
		} else {
			seen.WriteString(out)
		}
	})
	out := w.outputs(dir)

	// The job's task saw the secret in its environment, as in its file.
	if out["job_status"] != "succeeded" {
		t.Fatalf("job: status %v; want succeeded (log %v)", out["job_status"], out["job_log"])
	}
	log, _ := out["job_log"].(string)
	for _, want := range []string{"token-in-env", "ciphertext-gone"} {
		if !strings.Contains(log, want) {
			t.Errorf("job log lacks %q:\n%s", want, log)
		}
	}
	if shas, _ := out["job_sha"].([]any); len(shas) != 1 || shas[0] != sha(sha(values["API_TOKEN"])+"\n") {
		t.Errorf("the task's sha256 of $API_TOKEN (artifact sha %v) is not the secret's", shas)
	}

	// The sandbox's guest holds each secret in its tmpfs, and no more seed.
	vmid := int(out["box_vmid"].(float64))
	w.checkGuestSecrets(t, vmid, values)
	w.checkSeedGone(t, vmid)
	w.checkSeedRetiredByReaper(t, logFrom, int(out["quiet_vmid"].(float64)))
	w.emptyPlan(dir)

	// A new secrets_version delivers them again, to a new sandbox.
	write("2")
	plan := tf("plan", "-input=false", "-no-color")
	if !strings.Contains(plan, "agentlab_sandbox.box must be replaced") || !strings.Contains(plan, "secrets_version") {
		t.Errorf("a new secrets_version does not replace the sandbox:\n%s", plan)
	}
	tf("apply", "-auto-approve", "-input=false", "-no-color")
	vmid2 := int(w.outputs(dir)["box_vmid"].(float64))
	w.checkGuestSecrets(t, vmid2, values)
	w.checkSeedGone(t, vmid2)
}

// checkGuestSecrets reads the secrets directory of VM vmid's guest through
// the /proc root of one of its processes (it is a tmpfs in the guest's
// mount namespace).
func (w *world) checkGuestSecrets(t *testing.T, vmid int, values map[string]string) {
	t.Helper()
	root := w.guestRoot(t, vmid)
	dir := filepath.Join(root, secrets.Dir)
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatalf("guest %d: %v", vmid, err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("guest %d: %s has mode %04o; want 0700", vmid, secrets.Dir, fi.Mode().Perm())
	}
	for k, v := range values {
		p := filepath.Join(dir, k)
		b, err := os.ReadFile(p)
		if err != nil || string(b) != v {
			t.Errorf("guest %d: %s/%s = %q, %v; want the secret", vmid, secrets.Dir, k, b, err)
			continue
		}
		if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
			t.Errorf("guest %d: %s/%s has mode %04o; want 0600", vmid, secrets.Dir, k, fi.Mode().Perm())
		}
	}
	if _, err := os.Stat(filepath.Join(root, secrets.CiphertextPath)); !os.IsNotExist(err) {
		t.Errorf("guest %d: the ciphertext %s is still there (%v)", vmid, secrets.CiphertextPath, err)
	}
}

// guestRoot is /proc/PID/root of a process of VM vmid's guest.
func (w *world) guestRoot(t *testing.T, vmid int) string {
	t.Helper()
	suffix := "/guests/" + strconv.Itoa(vmid) + "/root"
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		root, err := os.Readlink(filepath.Join(p, "root"))
		if err == nil && strings.HasPrefix(root, w.dir+"/") && strings.HasSuffix(root, suffix) {
			return filepath.Join(p, "root")
		}
	}
	t.Fatalf("no process of VM %d's guest", vmid)
	return ""
}

// checkSeedGone checks that VM vmid's CD-ROM is empty and its seed ISO is
// no longer in storage.
func (w *world) checkSeedGone(t *testing.T, vmid int) {
	t.Helper()
	ctx := context.Background()
	c, err := pve.New(ctx, pve.Config{Endpoint: w.endpoint, APIToken: w.token})
	if err != nil {
		t.Fatal(err)
	}
	ref := pve.VMRef{Node: "pve", VMID: vmid}
	cfg, err := c.Config(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if d, ok := cfg.Drive("ide2"); ok && strings.Contains(d.Volume, volume.SeedISOName(vmid)) {
		t.Errorf("VM %d still has its seed ISO in ide2 (%s)", vmid, d.Volume)
	}
	vols, err := c.StorageContent(ctx, "pve", "local", "iso", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vols {
		if v.VolID == volume.SeedISOVolid("local", vmid) {
			t.Errorf("the seed ISO %s outlived VM %d's first boot", v.VolID, vmid)
		}
	}
}

// checkSeedRetiredByReaper waits until the reaper has retired the seed of
// VM vmid, a sandbox whose apply did not wait for its guest, on the guest's
// first contact (the boot report its cloud-init sends), and checks that it
// is gone from the VM and the storage. The reaper's log is read from line
// from on.
func (w *world) checkSeedRetiredByReaper(t *testing.T, from, vmid int) {
	t.Helper()
	id := strconv.Itoa(vmid)
	w.reaper.WaitFor(t, from, 2*time.Minute, "the reaper retiring the seed ISO of VM "+id, func(l string) bool {
		return strings.Contains(l, "seed ISO retired") && strings.Contains(l, "vmid="+id+" ")
	})
	w.checkSeedGone(t, vmid)
	events, err := exec.Command(w.reaperBin, "events", "--socket", w.socket, "--vmid", id, "--json").CombinedOutput()
	if err != nil {
		t.Fatalf("agentlab-reaper events: %v\n%s", err, events)
	}
	if !strings.Contains(string(events), "first boot report") {
		t.Errorf("the reaper's events of VM %d do not show the retirement on its boot report:\n%s", vmid, events)
	}
	w.checkTokenSwapped(t, vmid)
}

// checkTokenSwapped checks that the boot report of VM vmid's guest swapped
// the token its seed carried for one the reaper handed it: the guest's
// heartbeat.env holds a token whose hash is the metadata's heartbeat hash,
// the seed's hash is kept as the boot token's, and a heartbeat with the
// handed token extends the lease and retires the seed's for good.
func (w *world) checkTokenSwapped(t *testing.T, vmid int) {
	t.Helper()
	ctx := context.Background()
	c, err := pve.New(ctx, pve.Config{Endpoint: w.endpoint, APIToken: w.token})
	if err != nil {
		t.Fatal(err)
	}
	ref := pve.VMRef{Node: "pve", VMID: vmid}
	meta := func() lease.Metadata {
		cfg, err := c.Config(ctx, ref)
		if err != nil {
			t.Fatal(err)
		}
		m, err := lease.Decode(cfg.Description())
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	m := meta()
	if m.BootTokenSHA256 == "" {
		t.Fatalf("VM %d's metadata has no boot token hash: the boot report swapped no token", vmid)
	}
	// The guest writes the handed token once the answer is in: wait for it.
	envFile := filepath.Join(w.guestRoot(t, vmid), cloudinit.HeartbeatEnvFile)
	token := ""
	for deadline := time.Now().Add(30 * time.Second); ; {
		b, _ := os.ReadFile(envFile)
		if _, v, ok := strings.Cut(string(b), "AGENTLAB_HEARTBEAT_TOKEN="); ok {
			token = strings.TrimSpace(v)
		}
		if token != "" && lease.TokenSHA256(token) == m.HeartbeatTokenSHA256 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("VM %d's %s never held the handed token (metadata hash %s)", vmid, cloudinit.HeartbeatEnvFile, m.HeartbeatTokenSHA256)
		}
		time.Sleep(100 * time.Millisecond) // polling a file the guest writes
	}
	if lease.TokenSHA256(token) == m.BootTokenSHA256 {
		t.Fatalf("VM %d's guest still holds the seed's token", vmid)
	}
	out, err := exec.Command("curl", "--silent", "--show-error", "--fail-with-body", "--request", "POST",
		"--header", "Authorization: Bearer "+token, w.guestURL+"/v1/heartbeat").CombinedOutput()
	if err != nil {
		t.Fatalf("heartbeat with the handed token: %v\n%s", err, out)
	}
	if m := meta(); m.BootTokenSHA256 != "" {
		t.Errorf("VM %d's boot token hash outlived a heartbeat with the handed token", vmid)
	}
}

func randHex(t *testing.T) string {
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
