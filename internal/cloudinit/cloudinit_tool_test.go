package cloudinit

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// cloudInit returns the path of the cloud-init command. Without it the test
// is skipped, except in CI (CI set), which must install the Debian package
// cloud-init.
func cloudInit(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("cloud-init")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("cloud-init is not installed but CI is set: CI must install it (apt-get install -y cloud-init)")
		}
		t.Skip("cloud-init is not installed (apt-get install -y cloud-init); skipping the schema check")
	}
	return path
}

// TestUserDataSchema validates rendered user-data with cloud-init's own
// schema. cloud-init schema exits 0 and prints "Valid cloud-config: FILE" on
// success, exits 1 with "Cloud config schema errors: ..." on failure, and
// lists deprecated keys on a "Cloud config schema deprecations:" line.
func TestUserDataSchema(t *testing.T) {
	bin := cloudInit(t)
	configs := map[string]Config{"default": testConfig()}
	noSudo := testConfig()
	noSudo.User = User{Name: "dev"}
	noSudo.Hostname = "sbx-2.lab.example"
	configs["minimal"] = noSudo
	withHeartbeat := testConfig()
	withHeartbeat.Heartbeat = &Heartbeat{URL: "http://10.77.0.1:8846", Token: "Zm9vYmFyYmF6cXV4MTIzNDU2"}
	configs["heartbeat"] = withHeartbeat
	withWorkspace := withHeartbeat
	withWorkspace.Workspace = &Workspace{Disk: "scsi1"}
	configs["workspace"] = withWorkspace
	withJob := testConfig()
	withJob.Job = &Job{URL: "http://10.77.0.1:8846", BootstrapToken: "0123456789abcdef0123456789abcdef"}
	configs["job"] = withJob
	// What the provider renders: the boot report last in runcmd.
	withBootReport := withJob
	withBootReport.Heartbeat = &Heartbeat{URL: "http://10.77.0.1:8846", Token: "Zm9vYmFyYmF6cXV4MTIzNDU2", ReportBoot: true}
	configs["boot report"] = withBootReport
	for name, c := range configs {
		t.Run(name, func(t *testing.T) {
			seed, err := c.Render()
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(t.TempDir(), "user-data")
			if err := os.WriteFile(path, seed.UserData, 0o600); err != nil {
				t.Fatal(err)
			}
			out, err := exec.CommandContext(t.Context(), bin, "schema", "--config-file", path).CombinedOutput()
			if err != nil {
				t.Fatalf("cloud-init schema failed: %v\n%s\nuser-data:\n%s", err, out, seed.UserData)
			}
			if !strings.Contains(string(out), "Valid cloud-config") {
				t.Errorf("cloud-init schema did not report a valid config:\n%s", out)
			}
			if strings.Contains(string(out), "DEPRECATED") {
				t.Errorf("user-data uses deprecated keys:\n%s", out)
			}
		})
	}
}

// TestUserDataSchemaCatchesErrors makes sure the check above can fail.
func TestUserDataSchemaCatchesErrors(t *testing.T) {
	bin := cloudInit(t)
	path := filepath.Join(t.TempDir(), "user-data")
	if err := os.WriteFile(path, []byte("#cloud-config\nusers: 7\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(t.Context(), bin, "schema", "--config-file", path).CombinedOutput()
	if err == nil || strings.Contains(string(out), "Valid cloud-config") {
		t.Errorf("cloud-init schema accepted an invalid config: %v\n%s", err, out)
	}
}

// TestNetworkConfigConverts feeds network-config to cloud-init's own network
// renderers and checks the result: DHCP on the interface matched by MAC.
func TestNetworkConfigConverts(t *testing.T) {
	bin := cloudInit(t)
	seed, err := testConfig().Render()
	if err != nil {
		t.Fatal(err)
	}
	in := filepath.Join(t.TempDir(), "network-config")
	if err := os.WriteFile(in, seed.NetworkConfig, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		distro, kind, file string
		want               []string
	}{
		{"debian", "eni", "etc/network/interfaces.d/50-cloud-init", []string{"auto eth0\n", "iface eth0 inet dhcp\n"}},
		{"debian", "eni", "etc/udev/rules.d/70-persistent-net.rules", []string{`ATTR{address}=="bc:24:11:2a:3b:4c", NAME="eth0"`}},
		{"ubuntu", "netplan", "etc/netplan/50-cloud-init.yaml", []string{"dhcp4: true", "macaddress: bc:24:11:2a:3b:4c", "set-name: eth0"}},
	}
	for _, tt := range tests {
		t.Run(tt.kind+"/"+filepath.Base(tt.file), func(t *testing.T) {
			dir := t.TempDir()
			out, err := exec.CommandContext(t.Context(), bin, "devel", "net-convert",
				"-p", in, "-k", "yaml", "-d", dir, "-D", tt.distro, "-O", tt.kind).CombinedOutput()
			if err != nil {
				t.Fatalf("cloud-init devel net-convert: %v\n%s", err, out)
			}
			got, err := os.ReadFile(filepath.Join(dir, tt.file))
			if err != nil {
				t.Fatalf("net-convert wrote no %s: %v\n%s", tt.file, err, out)
			}
			for _, w := range tt.want {
				if !strings.Contains(string(got), w) {
					t.Errorf("%s lacks %q:\n%s", tt.file, w, got)
				}
			}
		})
	}
}
