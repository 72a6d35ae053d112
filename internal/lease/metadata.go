package lease

import (
	"crypto/rand"
	"encoding/json"
	"time"

	"github.com/agentlab/terraform-provider-agentlab/internal/egressrule"
)

// Version is the metadata format this package writes and the newest it reads.
const Version = 1

// Metadata is the sandbox contract stored in the VM's description. The
// provider writes it atomically with the clone; the reaper trusts nothing else.
type Metadata struct {
	// Version is the format version; Encode writes Version when it is zero.
	Version int
	// Owner is who created the sandbox (e.g. the API token's user).
	Owner string
	// Profile is the AgentLab profile the sandbox was made from, if any.
	Profile string
	// Nonce is a random value chosen at create time, so the provider can
	// recognise its own clone after a failure. Required.
	Nonce string

	// Lease holds the timing: created/expires, ttl, max_ttl and on_expiry.
	Lease

	// JobID is the reaper job this sandbox runs, if any.
	JobID string
	// Workspace is the workspace volume attached to the sandbox, if any.
	Workspace string
	// Egress is the sandbox's egress policy; empty means egressrule.Open.
	Egress egressrule.Policy
	// EgressAllow lists destinations this sandbox may reach beyond its
	// egress policy, in the grammar of package egressrule (CIDRs, ports).
	EgressAllow []string
	// HeartbeatTokenSHA256 is the hex SHA-256 of the guest's heartbeat token.
	// The provider writes the hash of the token the seed ISO carries; the
	// reaper replaces it at the guest's boot report with the hash of a token
	// it hands the guest then (see BootTokenSHA256).
	HeartbeatTokenSHA256 string
	// BootTokenSHA256 is the hex SHA-256 of the token the seed ISO carried,
	// once the reaper has replaced it: until the first heartbeat with the
	// new token it still buys a boot report a fresh token (an answer lost
	// on its way must not leave the guest without one), and nothing else.
	// Empty before the boot report and after that first heartbeat.
	BootTokenSHA256 string
}

// NewNonce returns a fresh random nonce for Metadata.Nonce.
func NewNonce() string { return rand.Text() }

// wire is the JSON form of Metadata: field names and formats are part of the
// contract between provider and reaper versions.
type wire struct {
	Version              int      `json:"version"`
	Owner                string   `json:"owner,omitempty"`
	Profile              string   `json:"profile,omitempty"`
	CreatedAt            string   `json:"created_at"`
	ExpiresAt            string   `json:"expires_at"`
	TTL                  string   `json:"ttl"`
	MaxTTL               string   `json:"max_ttl,omitempty"`
	OnExpiry             Action   `json:"on_expiry"`
	Nonce                string   `json:"nonce"`
	JobID                string   `json:"job_id,omitempty"`
	Workspace            string   `json:"workspace,omitempty"`
	Egress               string   `json:"egress,omitempty"`
	EgressAllow          []string `json:"egress_allow,omitempty"`
	HeartbeatTokenSHA256 string   `json:"heartbeat_token_sha256,omitempty"`
	BootTokenSHA256      string   `json:"boot_token_sha256,omitempty"`
}

// Validate checks the metadata as Encode and Decode require it: a supported
// version, a nonce and a consistent lease.
func (m Metadata) Validate() error {
	if m.Version < 1 {
		return invalid("version", "missing")
	}
	if m.Version > Version {
		return invalid("version", "%d is newer than this build understands (%d); upgrade the provider and the reaper",
			m.Version, Version)
	}
	if m.Nonce == "" {
		return invalid("nonce", "missing")
	}
	if _, err := egressrule.ParsePolicy(string(m.Egress)); err != nil {
		return invalid("egress", "%v", err)
	}
	if _, err := egressrule.ParseList(m.EgressAllow); err != nil {
		return invalid("egress_allow", "%v", err)
	}
	return m.Lease.Validate()
}

// MarshalJSON writes the metadata on one line, times as RFC 3339 UTC and
// durations as Go duration strings. HTML-significant characters are escaped,
// so no value can contain the block's end marker.
func (m Metadata) MarshalJSON() ([]byte, error) {
	w := wire{
		Version:              m.Version,
		Owner:                m.Owner,
		Profile:              m.Profile,
		CreatedAt:            stamp(m.CreatedAt),
		ExpiresAt:            stamp(m.ExpiresAt),
		TTL:                  m.TTL.String(),
		OnExpiry:             m.OnExpiry,
		Nonce:                m.Nonce,
		JobID:                m.JobID,
		Workspace:            m.Workspace,
		Egress:               string(m.Egress),
		EgressAllow:          m.EgressAllow,
		HeartbeatTokenSHA256: m.HeartbeatTokenSHA256,
		BootTokenSHA256:      m.BootTokenSHA256,
	}
	if m.MaxTTL != 0 {
		w.MaxTTL = m.MaxTTL.String()
	}
	return json.Marshal(w)
}

// UnmarshalJSON reads the form MarshalJSON writes. Unknown fields are ignored
// so that an older reader tolerates additions within the same version.
func (m *Metadata) UnmarshalJSON(b []byte) error {
	var w wire
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	out := Metadata{
		Version:              w.Version,
		Owner:                w.Owner,
		Profile:              w.Profile,
		Nonce:                w.Nonce,
		JobID:                w.JobID,
		Workspace:            w.Workspace,
		Egress:               egressrule.Policy(w.Egress),
		EgressAllow:          w.EgressAllow,
		HeartbeatTokenSHA256: w.HeartbeatTokenSHA256,
		BootTokenSHA256:      w.BootTokenSHA256,
	}
	out.OnExpiry = w.OnExpiry
	var err error
	if out.CreatedAt, err = parseStamp("created_at", w.CreatedAt); err != nil {
		return err
	}
	if out.ExpiresAt, err = parseStamp("expires_at", w.ExpiresAt); err != nil {
		return err
	}
	if out.TTL, err = parseDuration("ttl", w.TTL); err != nil {
		return err
	}
	if w.MaxTTL != "" {
		if out.MaxTTL, err = parseDuration("max_ttl", w.MaxTTL); err != nil {
			return err
		}
	}
	*m = out
	return nil
}

func parseStamp(field, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, invalid(field, "want an RFC 3339 time, got %q", s)
	}
	return t.UTC(), nil
}

func parseDuration(field, s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, invalid(field, "want a Go duration such as \"2h\", got %q", s)
	}
	return d, nil
}
