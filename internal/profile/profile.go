// Package profile reads AgentLab profiles: named sets of sandbox defaults
// (template, network, sizing, lease) kept as one YAML file per profile,
// <dir>/<name>.yaml, in the format users of the original AgentLab daemon
// already write.
//
// Every setting is a pointer that is nil when the file does not set it, so a
// caller can let attributes set on a resource override the profile and still
// tell what the profile itself said.
//
// # File format
//
//	name: yolo-ephemeral      # optional; must equal the file name
//	template_vmid: 9000       # VMID of the template to clone (alias: template_vm)
//	node: pve2                # node to create sandboxes on (default: the provider's node)
//	network:
//	  bridge: vmbr1
//	  model: virtio           # a PVE NIC model: virtio, e1000, vmxnet3, ...
//	  firewall: true
//	  egress: allowlist       # open (default), allowlist or none: see docs/egress.md
//	resources:
//	  cores: 4
//	  memory_mb: 6144         # MiB, or a size such as "6G" (alias: resources.memory)
//	storage:
//	  root_size_gb: 40        # GiB, or a size such as "40G" (alias: resources.storage)
//	behavior:
//	  ttl_minutes_default: 180   # default lease (alias: behavior.ttl_minutes)
//	  keepalive_default: false
//	secrets:
//	  recipient: age1...      # the template's age public key (see agentlab_sandbox secrets)
//
// Sizes are binary: "6G" is 6 GiB, as in Proxmox VE. Keys of the original
// AgentLab daemon that this project does not use (network.mode,
// network.firewall_group, resources.balloon, resources.cpulist,
// storage.workspace, behavior.mode, behavior.idle_stop_minutes_default,
// behavior.inner_sandbox, behavior.inner_sandbox_args, secrets_bundle,
// repo.clone_path, artifacts.upload, artifacts.endpoint) are accepted and
// listed in Profile.Ignored so the caller can warn about them. Any other key
// is an error that names the file, the line and the known keys.
package profile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/agentlab/terraform-provider-agentlab/internal/egressrule"
)

var (
	// ErrNotFound means no file exists for the requested profile name. Load's
	// message reads `profile "x" not found: ...`.
	ErrNotFound = errors.New("not found")
	// ErrInvalidName means a profile name is not of the form
	// [a-z0-9][a-z0-9._-]*; such a name could escape the profile directory.
	ErrInvalidName = errors.New("invalid profile name")
)

// namePattern is what a profile name may look like. It keeps names inside the
// profile directory: no separators, no leading dot.
var namePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]*$`)

// maxNameLen bounds a profile name well below file name limits.
const maxNameLen = 64

// extensions are the file name endings Load and List accept, in the order
// Load tries them.
var extensions = []string{".yaml", ".yml"}

// Profile is one loaded profile. Nil pointers are settings the file leaves
// unset.
type Profile struct {
	// Name is the profile's name: its file name without the extension.
	Name string
	// Path is the file the profile was read from.
	Path string

	// TemplateVMID is the VMID of the template to clone.
	TemplateVMID *int
	// Node is the Proxmox VE node to create sandboxes on.
	Node *string
	// Network configures the sandbox's first NIC.
	Network Network
	// Resources sizes the sandbox.
	Resources Resources
	// Behavior holds lease defaults.
	Behavior Behavior
	// Secrets says how secrets reach the template's guests.
	Secrets Secrets

	// Ignored lists keys of the original AgentLab format that the file sets
	// and that this project does not use, in file order.
	Ignored []IgnoredKey
}

// Network is the profile's network section.
type Network struct {
	// Bridge is the PVE bridge for net0, e.g. "vmbr1".
	Bridge *string
	// Model is the NIC model, e.g. "virtio".
	Model *string
	// Firewall turns the PVE firewall on for net0.
	Firewall *bool
	// Egress is the sandboxes' egress policy, which the reaper's egress
	// filter enforces.
	Egress *egressrule.Policy
}

// Resources is the profile's sizing.
type Resources struct {
	// Cores is the number of CPU cores.
	Cores *int
	// MemoryMiB is the memory size in MiB.
	MemoryMiB *int
	// DiskSize is the root disk size as PVE writes sizes, e.g. "40G": a whole
	// number with the largest binary unit (K, M, G, T) that represents it
	// exactly.
	DiskSize *string
}

// Behavior is the profile's lease defaults.
type Behavior struct {
	// TTL is the default lease duration.
	TTL *time.Duration
	// KeepaliveDefault is whether sandboxes renew their lease while in use
	// unless told otherwise.
	KeepaliveDefault *bool
}

// Secrets is the profile's secrets section.
type Secrets struct {
	// Recipient is the age X25519 public key ("age1...") of the template's
	// identity; a sandbox's secrets are encrypted to it.
	Recipient *string
}

// IgnoredKey is a key the file sets that this project accepts but does not use.
type IgnoredKey struct {
	// Key is the dotted key path, e.g. "network.firewall_group".
	Key string
	// Line is the key's line in the file.
	Line int
}

// ValidateName checks that name can name a profile file.
func ValidateName(name string) error {
	if len(name) > maxNameLen || !namePattern.MatchString(name) {
		return fmt.Errorf("%w %q: use lower-case letters, digits, '.', '_' and '-', starting with a letter or digit (at most %d characters)",
			ErrInvalidName, name, maxNameLen)
	}
	return nil
}

// Load reads the profile called name from dir: <dir>/<name>.yaml, or
// <dir>/<name>.yml when only that exists.
//
// An unknown name gives an error wrapping ErrNotFound that names the file
// looked for and the profiles dir holds; a bad name one wrapping
// ErrInvalidName. Problems in the file are *ParseError values (joined with
// errors.Join when there are several), each naming the file, the line and the
// key.
func Load(dir, name string) (Profile, error) {
	if err := ValidateName(name); err != nil {
		return Profile{}, err
	}
	var found []string
	var data []byte
	for _, ext := range extensions {
		path := filepath.Join(dir, name+ext)
		b, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return Profile{}, fmt.Errorf("read profile %q: %w", name, err)
		}
		found = append(found, path)
		data = b
	}
	switch len(found) {
	case 0:
		return Profile{}, notFound(dir, name)
	case 1:
	default:
		return Profile{}, fmt.Errorf("profile %q is defined twice, in %s; remove one", name, strings.Join(found, " and "))
	}
	return parse(found[0], name, data)
}

// List returns the names of the profiles in dir, sorted. Files whose names
// are not valid profile names are left out.
func List(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list profiles: %w", err)
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		for _, ext := range extensions {
			if base, ok := strings.CutSuffix(e.Name(), ext); ok && ValidateName(base) == nil {
				names = append(names, base)
			}
		}
	}
	slices.Sort(names)
	return slices.Compact(names), nil
}

func notFound(dir, name string) error {
	want := filepath.Join(dir, name+extensions[0])
	names, err := List(dir)
	switch {
	case err != nil:
		return fmt.Errorf("profile %q %w: %s does not exist (%w)", name, ErrNotFound, want, err)
	case len(names) == 0:
		return fmt.Errorf("profile %q %w: %s does not exist and %s holds no profiles", name, ErrNotFound, want, dir)
	}
	return fmt.Errorf("profile %q %w: %s does not exist; profiles in %s: %s", name, ErrNotFound, want, dir, strings.Join(names, ", "))
}

// ParseError is one problem in a profile file.
type ParseError struct {
	// Path is the profile file.
	Path string
	// Line is the line of the offending key or value; 0 when unknown.
	Line int
	// Key is the dotted key path, when the problem is about one key.
	Key string
	// Msg says what is wrong and, where it can, what is expected.
	Msg string
}

// Error formats the problem as path:line: message, like a compiler.
func (e *ParseError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.Path, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.Path, e.Msg)
}
