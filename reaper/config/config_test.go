package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseDefaults(t *testing.T) {
	cfg, err := Parse(nil)
	if err != nil {
		t.Fatalf("Parse(empty) = %v; want nil", err)
	}
	if got, want := time.Duration(cfg.Interval), 30*time.Second; got != want {
		t.Errorf("interval = %s; want %s", got, want)
	}
	if got, want := cfg.Control.Socket, "/run/agentlab/reaper.sock"; got != want {
		t.Errorf("control.socket = %q; want %q", got, want)
	}
	if got, want := cfg.Artifacts.MaxBytes, ByteSize(10<<30); got != want {
		t.Errorf("artifacts.max_bytes = %s; want %s", got, want)
	}
}

func TestParseExampleFile(t *testing.T) {
	data, err := os.ReadFile("../../deploy/reaper.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := Parse(data)
	if err != nil {
		t.Fatalf("Parse(example) = %v; want nil", err)
	}
	def := Default()
	def.lines = nil
	cfg.lines = nil
	if got, want := cfg.Proxmox, def.Proxmox; got != want {
		t.Errorf("example proxmox = %+v; want the defaults %+v", got, want)
	}
	if cfg.Interval != def.Interval || cfg.Grace != def.Grace || cfg.WarnBefore != def.WarnBefore ||
		cfg.Database != def.Database || cfg.Control != def.Control || cfg.Guest != def.Guest ||
		cfg.Metrics != def.Metrics || cfg.Artifacts != def.Artifacts || cfg.Jobs != def.Jobs || cfg.DryRun != def.DryRun ||
		cfg.Policy != def.Policy || cfg.Prune != def.Prune || cfg.Events != def.Events {
		t.Errorf("example file = %+v; want the defaults %+v", cfg, def)
	}
}

func TestParseValues(t *testing.T) {
	cfg, err := Parse([]byte(`
proxmox:
  endpoint: http://127.0.0.1:8006/api2/json
  insecure: true
interval: 2s
grace: 1m
warn_before: 0
dry_run: true
control:
  listen: 127.0.0.1:8847
guest:
  listen: ""
artifacts:
  max_bytes: 512MiB
`))
	if err != nil {
		t.Fatalf("Parse = %v; want nil", err)
	}
	if !cfg.Proxmox.Insecure || !cfg.DryRun {
		t.Errorf("insecure, dry_run = %v, %v; want true, true", cfg.Proxmox.Insecure, cfg.DryRun)
	}
	if got, want := time.Duration(cfg.Grace), time.Minute; got != want {
		t.Errorf("grace = %s; want %s", got, want)
	}
	if got := time.Duration(cfg.WarnBefore); got != 0 {
		t.Errorf("warn_before = %s; want 0s", got)
	}
	if got := cfg.Guest.Listen; got != "" {
		t.Errorf("guest.listen = %q; want empty", got)
	}
	if got, want := cfg.Artifacts.MaxBytes, ByteSize(512<<20); got != want {
		t.Errorf("max_bytes = %s; want %s", got, want)
	}
}

func TestParsePolicy(t *testing.T) {
	def, err := Parse(nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := time.Duration(def.Policy.MaxLease), 168*time.Hour; got != want {
		t.Errorf("default policy.max_lease = %s; want %s", got, want)
	}
	if def.Policy.UserKeep || def.Prune {
		t.Errorf("default user_keep, prune = %v, %v; want false, false", def.Policy.UserKeep, def.Prune)
	}
	if got, want := time.Duration(def.Events.Retention), 720*time.Hour; got != want {
		t.Errorf("default events.retention = %s; want %s", got, want)
	}
	if !def.Policy.VMIDRange.Contains(100) || !def.Policy.VMIDRange.Contains(999999999) {
		t.Errorf("default vmid_range %s does not contain every VMID", def.Policy.VMIDRange)
	}
	cfg, err := Parse([]byte("policy:\n  max_lease: 24h\n  user_keep: true\n  vmid_range: 5000-5999\n  orphan_grace: 10m\nprune: true\nevents:\n  retention: 48h\n"))
	if err != nil {
		t.Fatalf("Parse = %v; want nil", err)
	}
	if got, want := time.Duration(cfg.Policy.MaxLease), 24*time.Hour; got != want {
		t.Errorf("policy.max_lease = %s; want %s", got, want)
	}
	if !cfg.Policy.UserKeep || !cfg.Prune {
		t.Errorf("user_keep, prune = %v, %v; want true, true", cfg.Policy.UserKeep, cfg.Prune)
	}
	r := cfg.Policy.VMIDRange
	for _, tt := range []struct {
		vmid int
		want bool
	}{{4999, false}, {5000, true}, {5999, true}, {6000, false}} {
		if got := r.Contains(tt.vmid); got != tt.want {
			t.Errorf("range %s Contains(%d) = %v; want %v", r, tt.vmid, got, tt.want)
		}
	}
	if got, want := r.String(), "5000-5999"; got != want {
		t.Errorf("range String() = %q; want %q", got, want)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string // substrings of the error
	}{
		{"unknown top key", "intervall: 30s\n", []string{"line 1: intervall: unknown key; did you mean interval?"}},
		{"unknown nested key", "control:\n  lisen: 127.0.0.1:1\n", []string{"line 2: control.lisen: unknown key; did you mean listen?"}},
		{"unknown far key", "colour: blue\n", []string{"colour: unknown key; remove it"}},
		{"duration without unit", "interval: 30\n", []string{"line 1: interval:", `"30" has no unit`, "30s"}},
		{"bad duration", "grace: soon\n", []string{"grace:", `"soon" is not a duration`}},
		{"negative grace", "grace: -1s\n", []string{"line 1: grace: -1s is negative"}},
		{"short interval", "interval: 1ms\n", []string{"interval: 1ms is too short"}},
		{"bool", "dry_run: maybe\n", []string{"dry_run: want true or false"}},
		{"mapping wanted", "control: /run/x.sock\n", []string{"control: want a mapping"}},
		{"relative path", "database: reaper.db\n", []string{"database:", "not an absolute path"}},
		{"endpoint", "proxmox:\n  endpoint: pve:8006\n", []string{"line 2: proxmox.endpoint:", "not an http(s) URL"}},
		{"listen", "metrics:\n  listen: 9090\n", []string{"metrics.listen:", "not host:port"}},
		{"listen host name", "metrics:\n  listen: example.com:9090\n", []string{"metrics.listen:", "not an IP address"}},
		{"tcp without token", "control:\n  listen: 127.0.0.1:8847\n  token_file: \"\"\n", []string{"control.token_file: is empty but control.listen is set"}},
		{"size", "artifacts:\n  max_bytes: lots\n", []string{"artifacts.max_bytes:", "is not a number followed by K, M, G or T"}},
		{"heartbeat grace", "jobs:\n  heartbeat_grace: 10ms\n", []string{"line 2: jobs.heartbeat_grace:", "too short"}},
		{"boot timeout", "jobs:\n  boot_timeout: 0s\n", []string{"jobs.boot_timeout:", "too short"}},
		{"retention", "jobs:\n  retention: -1h\n", []string{"jobs.retention:", "negative"}},
		{"log size", "jobs:\n  max_log_bytes: 0\n", []string{"jobs.max_log_bytes:", "not a positive size"}},
		{"jobs typo", "jobs:\n  retension: 1h\n", []string{"jobs.retension: unknown key; did you mean retention?"}},
		{"tls half", "control:\n  tls_cert_file: /etc/agentlab/c.crt\n", []string{"control.tls_cert_file:", "set both"}},
		{"tls relative", "control:\n  tls_cert_file: c.crt\n  tls_key_file: c.key\n", []string{"control.tls_key_file:", "not an absolute path"}},
		{"egress without bridge", "egress:\n  enabled: true\n  bridge: \"\"\n", []string{"line 3: egress.bridge: is empty"}},
		{"egress bridge name", "egress:\n  bridge: \"vmbr1; drop\"\n", []string{"line 2: egress.bridge:", "not a network interface name"}},
		{"egress subnet v6", "egress:\n  subnet: fd77::/64\n", []string{"egress.subnet:", "not an IPv4 CIDR"}},
		{"egress subnet host bits", "egress:\n  subnet: 10.77.0.1/16\n", []string{"egress.subnet:", "write 10.77.0.0/16"}},
		{"egress no resolver", "egress:\n  enabled: true\n  resolver: \"\"\n", []string{"egress.resolver: is empty"}},
		{"egress relative nft", "egress:\n  nft: sbin/nft\n", []string{"egress.nft:", "relative path"}},
		{"cidr", "egress:\n  allow: [10.0.0.0/33]\n", []string{"egress.allow: item 1"}},
		{"allow port", "egress:\n  allow: [\"10.0.0.0/8:0\"]\n", []string{"egress.allow: item 1", "from 1 to 65535"}},
		{"duplicate", "grace: 1s\ngrace: 2s\n", []string{"line 2: grace: set twice (first on line 1)"}},
		{"not a mapping", "- a\n- b\n", []string{"want a mapping"}},
		{"yaml syntax", "a: [\n", []string{"not valid YAML"}},
		{"several at once", "interval: x\ngrace: y\n", []string{"interval:", "grace:"}},
		{"port out of range", "metrics:\n  listen: 127.0.0.1:99999\n", []string{"line 2: metrics.listen:", `port "99999" is not a number from 0 to 65535`}},
		{"port not a number", "guest:\n  listen: 127.0.0.1:http\n", []string{"guest.listen:", "port \"http\""}},
		{"short max_lease", "policy:\n  max_lease: 1m\n", []string{"line 2: policy.max_lease: 1m0s is too short", "168h"}},
		{"max_lease no unit", "policy:\n  max_lease: 168\n", []string{"policy.max_lease:", "has no unit"}},
		{"user_keep", "policy:\n  user_keep: yes please\n", []string{"policy.user_keep: want true or false"}},
		{"vmid range syntax", "policy:\n  vmid_range: 100..200\n", []string{"line 2: policy.vmid_range:", "100-999"}},
		{"vmid range reversed", "policy:\n  vmid_range: 900-200\n", []string{"policy.vmid_range:", "write the smaller VMID first, e.g. 200-900"}},
		{"vmid range too low", "policy:\n  vmid_range: 1-200\n", []string{"policy.vmid_range:", "100-999999999"}},
		{"negative orphan grace", "policy:\n  orphan_grace: -1h\n", []string{"policy.orphan_grace: -1h0m0s is negative"}},
		{"short retention", "events:\n  retention: 1m\n", []string{"line 2: events.retention: 1m0s is too short"}},
		{"prune", "prune: sometimes\n", []string{"prune: want true or false"}},
		{"policy key typo", "policy:\n  max_leas: 1h\n", []string{"policy.max_leas: unknown key; did you mean max_lease?"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml))
			if err == nil {
				t.Fatalf("Parse(%q) = nil; want an error containing %q", tt.yaml, tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Parse(%q) = %q; want it to contain %q", tt.yaml, err, w)
				}
			}
		})
	}
}

func TestErrorsAreTyped(t *testing.T) {
	_, err := Parse([]byte("egress:\n  subnet: nope\n"))
	var cerr *Error
	if !errors.As(err, &cerr) {
		t.Fatalf("Parse error %v is not a *config.Error", err)
	}
	if got, want := cerr.Key, "egress.subnet"; got != want {
		t.Errorf("Key = %q; want %q", got, want)
	}
	if got, want := cerr.Line, 2; got != want {
		t.Errorf("Line = %d; want %d", got, want)
	}
}

func TestEgressEnabled(t *testing.T) {
	cfg, err := Parse([]byte("egress:\n  enabled: true\n  allow: [\"192.168.5.0/24:443/tcp\"]\n"))
	if err != nil {
		t.Fatalf("Parse(egress enabled with defaults) = %v", err)
	}
	if !cfg.Egress.Enabled || cfg.Egress.Bridge != "vmbr1" || cfg.Egress.Nft != "nft" {
		t.Errorf("Egress = %+v; want enabled with the default bridge and nft", cfg.Egress)
	}
}

func writeFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func TestCheckFiles(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	writeFile(t, good, "root@pam!reaper=0b3c5a6e-1111-2222-3333-444455556666\n", 0o600)
	open := filepath.Join(dir, "open")
	writeFile(t, open, "root@pam!reaper=x\n", 0o644)
	bad := filepath.Join(dir, "bad")
	writeFile(t, bad, "not a token\n", 0o600)
	empty := filepath.Join(dir, "empty")
	writeFile(t, empty, "", 0o600)
	ctl := filepath.Join(dir, "ctl")
	writeFile(t, ctl, "s3cret\n", 0o400)

	tests := []struct {
		name       string
		apiToken   string
		listen     string
		tokenFile  string
		wantErr    string
		wantAPITok string
	}{
		{"good", good, "", "", "", "root@pam!reaper=0b3c5a6e-1111-2222-3333-444455556666"},
		{"group readable", open, "", "", "has mode 0644, readable by others; it holds a secret: chmod 600", ""},
		{"missing", filepath.Join(dir, "nope"), "", "", "does not exist; create it with mode 0600", ""},
		{"malformed", bad, "", "", "user@realm!id=secret", ""},
		{"empty", empty, "", "", "is empty", ""},
		{"control token checked when listening", good, "127.0.0.1:8847", open, "control.token_file: " + open + " has mode 0644", ""},
		{"control token ignored without listen", good, "", open, "", "root@pam!reaper=0b3c5a6e-1111-2222-3333-444455556666"},
		{"control token 0400", good, "127.0.0.1:8847", ctl, "", "root@pam!reaper=0b3c5a6e-1111-2222-3333-444455556666"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Default()
			cfg.Proxmox.APITokenFile = tt.apiToken
			cfg.Control.Listen = tt.listen
			cfg.Control.TokenFile = tt.tokenFile
			err := cfg.CheckFiles()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("CheckFiles = %v; want nil", err)
				}
				tok, err := cfg.APIToken()
				if err != nil || tok != tt.wantAPITok {
					t.Errorf("APIToken = %q, %v; want %q, nil", tok, err, tt.wantAPITok)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("CheckFiles = %v; want an error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestByteSize(t *testing.T) {
	tests := []struct {
		in   string
		want ByteSize
		str  string
	}{
		{"10GiB", 10 << 30, "10GiB"},
		{"1G", 1 << 30, "1GiB"},
		{"512M", 512 << 20, "512MiB"},
		{"1000", 1000, "1000B"},
		{"1048576", 1 << 20, "1MiB"},
		{"1.5KiB", 1536, "1536B"},
	}
	for _, tt := range tests {
		got, err := ParseByteSize(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d, nil", tt.in, got, err, tt.want)
		}
		if s := got.String(); s != tt.str {
			t.Errorf("ByteSize(%d).String() = %q; want %q", got, s, tt.str)
		}
	}
	for _, bad := range []string{"", "GiB", "10 parsecs", "1e3", "512MB", "10GB"} {
		if _, err := ParseByteSize(bad); err == nil {
			t.Errorf("ParseByteSize(%q) = nil error; want one", bad)
		}
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "reaper.yaml"))
	if err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("Load(missing) = %v; want a 'does not exist' error", err)
	}
}
