// Package config reads and validates the agentlab-reaper configuration file.
//
// The file is YAML. Every key is optional and has a default (see Default);
// unknown keys, values of the wrong type and impossible settings are errors
// that name the key, its line and the fix. Secrets are never inline: the
// Proxmox API token and the control-API bearer token are read from files that
// only their owner may read (mode 0600), checked by CheckFiles.
package config

import (
	"errors"
	"fmt"
	"os"
	"time"
)

// DefaultPath is where the operator subcommands look for the file when
// --config is not given.
const DefaultPath = "/etc/agentlab/reaper.yaml"

// Config is the whole configuration file.
type Config struct {
	// Proxmox says how to reach the Proxmox VE API.
	Proxmox Proxmox `yaml:"proxmox"`
	// Database is the SQLite file holding leases as last seen and the event log.
	Database string `yaml:"database"`
	// Interval is the time between two reconcile ticks.
	Interval Duration `yaml:"interval"`
	// Grace is extra time after a lease expires before the reaper acts.
	Grace Duration `yaml:"grace"`
	// WarnBefore is how long before expiry a warning event is recorded.
	WarnBefore Duration `yaml:"warn_before"`
	// DryRun makes the reaper decide and log everything but change nothing.
	DryRun bool `yaml:"dry_run"`
	// Policy holds the operator's rules over every lease.
	Policy Policy `yaml:"policy"`
	// Prune makes the reaper remove the orphans whose ownership it can prove
	// (metadata without tag, seed ISOs without VM) once they are older than
	// policy.orphan_grace.
	Prune bool `yaml:"prune"`
	// Events configures the audit log.
	Events Events `yaml:"events"`
	// Control configures the operator and provider API.
	Control Control `yaml:"control"`
	// Guest configures the listener sandboxes reach (heartbeats).
	Guest Guest `yaml:"guest"`
	// Metrics configures the Prometheus endpoint.
	Metrics Metrics `yaml:"metrics"`
	// Artifacts configures artifact storage.
	Artifacts Artifacts `yaml:"artifacts"`
	// Jobs configures the job registry.
	Jobs Jobs `yaml:"jobs"`
	// Egress configures the nftables egress filter.
	Egress Egress `yaml:"egress"`

	// lines maps each key set in the file to its line, for error messages.
	lines map[string]int
}

// Policy holds the operator's rules over every lease.
type Policy struct {
	// MaxLease caps every lease, whatever its metadata says.
	MaxLease Duration `yaml:"max_lease"`
	// UserKeep makes the reaper honour an agentlab-keep tag set outside
	// agentlab-reaper keep (by a Terraform user, say).
	UserKeep bool `yaml:"user_keep"`
	// VMIDRange is the range of VMIDs in which clone placeholders are
	// reported as orphans; the zero value means every VMID.
	VMIDRange VMIDRange `yaml:"vmid_range"`
	// OrphanGrace is how long an orphan must have been seen before prune
	// removes it.
	OrphanGrace Duration `yaml:"orphan_grace"`
}

// Events configures the audit log.
type Events struct {
	// Retention is how long events are kept.
	Retention Duration `yaml:"retention"`
}

// Proxmox says how to reach the Proxmox VE API.
type Proxmox struct {
	// Endpoint is the API URL, with or without /api2/json.
	Endpoint string `yaml:"endpoint"`
	// APITokenFile holds one line, user@realm!id=secret; it must be mode 0600.
	APITokenFile string `yaml:"api_token_file"`
	// Insecure skips TLS certificate verification.
	Insecure bool `yaml:"insecure"`
}

// Control configures the control API.
type Control struct {
	// Socket is the Unix socket, always on, created with mode 0600.
	Socket string `yaml:"socket"`
	// Listen is an optional TCP address; requests there need the bearer token.
	Listen string `yaml:"listen"`
	// TokenFile holds the bearer token for Listen; it must be mode 0600.
	TokenFile string `yaml:"token_file"`
	// TLSCertFile and TLSKeyFile are the PEM certificate and key served on
	// Listen. Both empty: a non-loopback Listen gets a self-signed pair
	// generated once next to the database (control-tls.crt, control-tls.key).
	TLSCertFile string `yaml:"tls_cert_file"`
	TLSKeyFile  string `yaml:"tls_key_file"`
}

// Guest configures the listener sandboxes reach.
type Guest struct {
	// Listen is the TCP address; empty disables the listener.
	Listen string `yaml:"listen"`
}

// Metrics configures the Prometheus endpoint.
type Metrics struct {
	// Listen is the TCP address serving /metrics; empty disables it.
	Listen string `yaml:"listen"`
}

// Artifacts configures artifact storage.
type Artifacts struct {
	// Dir is where uploaded artifacts are kept.
	Dir string `yaml:"dir"`
	// MaxBytes limits one upload.
	MaxBytes ByteSize `yaml:"max_bytes"`
}

// Jobs configures the job registry.
type Jobs struct {
	// HeartbeatGrace is how long a job's runner may stay silent before the
	// job is lost.
	HeartbeatGrace Duration `yaml:"heartbeat_grace"`
	// BootTimeout is how long a job may wait for its sandbox and for its
	// runner's first request before it is lost.
	BootTimeout Duration `yaml:"boot_timeout"`
	// Retention is how long an ended job's rows, log and artifact files are
	// kept; 0 keeps them forever.
	Retention Duration `yaml:"retention"`
	// MaxLogBytes bounds one job's log; the rest is dropped.
	MaxLogBytes ByteSize `yaml:"max_log_bytes"`
}

// Egress configures the egress filter: one nftables table (inet agentlab)
// on the agent bridge.
type Egress struct {
	// Enabled turns the filter on; the daemon then needs CAP_NET_ADMIN.
	Enabled bool `yaml:"enabled"`
	// Bridge is the sandboxes' Linux bridge.
	Bridge string `yaml:"bridge"`
	// Subnet is the sandboxes' IPv4 address range.
	Subnet string `yaml:"subnet"`
	// Resolver is the only DNS server sandboxes may query.
	Resolver string `yaml:"resolver"`
	// Allow lists entries (CIDRs, optionally with ports; see package
	// egressrule) every sandbox whose policy is not none may reach despite
	// the private-range rule.
	Allow []string `yaml:"allow"`
	// Nft is the nft command: a name looked up on PATH or an absolute path.
	Nft string `yaml:"nft"`
}

// Default returns the configuration used for every key the file leaves out.
func Default() Config {
	return Config{
		Proxmox: Proxmox{
			Endpoint:     "https://127.0.0.1:8006",
			APITokenFile: "/etc/agentlab/pve-token",
		},
		Database:   "/var/lib/agentlab/reaper.db",
		Interval:   Duration(30 * time.Second),
		Grace:      0,
		WarnBefore: Duration(5 * time.Minute),
		Policy: Policy{
			MaxLease:    Duration(168 * time.Hour),
			OrphanGrace: Duration(time.Hour),
		},
		Events: Events{Retention: Duration(720 * time.Hour)},
		Control: Control{
			Socket:    "/run/agentlab/reaper.sock",
			TokenFile: "/etc/agentlab/control-token",
		},
		Guest:     Guest{Listen: "10.77.0.1:8846"},
		Metrics:   Metrics{Listen: "127.0.0.1:9090"},
		Artifacts: Artifacts{Dir: "/var/lib/agentlab/artifacts", MaxBytes: 10 << 30},
		Jobs: Jobs{
			HeartbeatGrace: Duration(90 * time.Second),
			BootTimeout:    Duration(15 * time.Minute),
			Retention:      Duration(720 * time.Hour),
			MaxLogBytes:    64 << 20,
		},
		Egress: Egress{
			Bridge:   "vmbr1",
			Subnet:   "10.77.0.0/16",
			Resolver: "10.77.0.1",
			Allow:    []string{},
			Nft:      "nft",
		},
	}
}

// Load reads, parses and validates the file at path. It does not look at the
// token files; serve calls CheckFiles for that, the operator subcommands do not.
func Load(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return Config{}, fmt.Errorf("config file %s does not exist; copy deploy/reaper.example.yaml there or pass --config FILE", path)
	}
	if err != nil {
		return Config{}, fmt.Errorf("read config: %w", err)
	}
	cfg, err := Parse(data)
	if err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, nil
}

// Parse decodes data over Default and validates the result. All problems are
// reported at once, joined; each is an *Error.
func Parse(data []byte) (Config, error) {
	cfg := Default()
	if err := decode(data, &cfg); err != nil {
		return Config{}, err
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}
