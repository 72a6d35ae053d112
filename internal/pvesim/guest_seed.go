package pvesim

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/kdomanski/iso9660"
	"gopkg.in/yaml.v3"
)

// The guest's cloud-init, as --guest-exec runs it.
//
// A NoCloud seed (an ISO labelled cidata on a CD-ROM) is read when the VM
// starts and its user-data is checked against what the simulator knows how
// to do. Only the keys AgentLab's provider emits are understood; any other
// key, or a value the simulator cannot honour, fails the start task with an
// error naming it, so that a seed that would behave differently in a real VM
// is never half-run.

// ErrGuestSeed is wrapped by every error about a seed the simulator cannot run.
var ErrGuestSeed = errors.New("guest-exec")

// seedKeys are the top-level user-data keys the simulator understands.
var seedKeys = []string{"hostname", "manage_etc_hosts", "users", "disable_root", "ssh_pwauth",
	"write_files", "fs_setup", "mounts", "runcmd"}

// seedError is a seed the simulator refuses to run.
func seedError(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrGuestSeed, fmt.Sprintf(format, args...))
}

// guestSeed is a parsed NoCloud seed.
type guestSeed struct {
	// Drive is the VM's disk key holding the seed, e.g. "ide2".
	Drive          string
	InstanceID     string
	Hostname       string
	ManageEtcHosts bool
	Users          []guestUser
	WriteFiles     []guestFile
	FSSetup        []guestFS
	Mounts         []guestMount
	// Runcmd is the runcmd script ("" when there is none), written as
	// cloud-init writes it: a #!/bin/sh script with one line per entry.
	Runcmd string
}

type guestUser struct {
	Name              string   `yaml:"name" json:"name"`
	Shell             string   `yaml:"shell" json:"shell,omitempty"`
	LockPasswd        *bool    `yaml:"lock_passwd" json:"-"`
	Sudo              string   `yaml:"sudo" json:"sudo,omitempty"`
	SSHAuthorizedKeys []string `yaml:"ssh_authorized_keys" json:"ssh_authorized_keys,omitempty"`
}

type guestFile struct {
	Path        string `yaml:"path" json:"path"`
	Owner       string `yaml:"owner" json:"owner,omitempty"`
	Permissions string `yaml:"permissions" json:"permissions,omitempty"`
	Content     string `yaml:"content" json:"content"`
	Encoding    string `yaml:"encoding" json:"-"`
	Append      bool   `yaml:"append" json:"append,omitempty"`
	Defer       bool   `yaml:"defer" json:"defer,omitempty"`
}

type guestFS struct {
	Label      string `yaml:"label"`
	Filesystem string `yaml:"filesystem"`
	Device     string `yaml:"device"`
	Partition  string `yaml:"partition"`
	Overwrite  bool   `yaml:"overwrite"`
	// Disk is the VM's disk key Device names, e.g. "scsi1".
	Disk string `yaml:"-"`
}

// guestMount is one mounts entry: a file system found by label, mounted at Target.
type guestMount struct {
	Label, Target string
}

// seedISO is the NoCloud seed's volume label (cloud-init accepts both cases).
const seedISO = "cidata"

// readSeedISO returns the files in the root of a cidata ISO image, by name.
func readSeedISO(img []byte) (map[string][]byte, error) {
	image, err := iso9660.OpenImage(bytes.NewReader(img))
	if err != nil {
		return nil, fmt.Errorf("not an ISO 9660 image: %w", err)
	}
	label, err := image.Label()
	if err != nil {
		return nil, fmt.Errorf("read the volume label: %w", err)
	}
	if !strings.EqualFold(strings.TrimSpace(label), seedISO) {
		return nil, fmt.Errorf("volume label %q is not %q", label, seedISO)
	}
	root, err := image.RootDir()
	if err != nil {
		return nil, fmt.Errorf("read the root directory: %w", err)
	}
	children, err := root.GetChildren()
	if err != nil {
		return nil, fmt.Errorf("read the root directory: %w", err)
	}
	files := map[string][]byte{}
	for _, c := range children {
		if c.IsDir() {
			continue
		}
		b, err := io.ReadAll(c.Reader())
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", c.Name(), err)
		}
		files[c.Name()] = b
	}
	return files, nil
}

// parseSeed parses a seed's files; drive is the CD-ROM it came from.
func parseSeed(drive string, files map[string][]byte) (*guestSeed, error) {
	ud, ok := files["user-data"]
	if !ok {
		return nil, seedError("the cidata ISO on %s has no user-data file", drive)
	}
	seed := &guestSeed{Drive: drive}
	if md, ok := files["meta-data"]; ok {
		var m struct {
			InstanceID    string `yaml:"instance-id"`
			LocalHostname string `yaml:"local-hostname"`
		}
		if err := yaml.Unmarshal(md, &m); err != nil {
			return nil, seedError("meta-data on %s is not YAML: %v", drive, err)
		}
		seed.InstanceID, seed.Hostname = m.InstanceID, m.LocalHostname
	}
	if nc, ok := files["network-config"]; ok {
		var n struct {
			Version int `yaml:"version"`
		}
		if err := yaml.Unmarshal(nc, &n); err != nil || (n.Version != 1 && n.Version != 2) {
			return nil, seedError("network-config on %s: want a version 1 or 2 network configuration", drive)
		}
	}
	if err := parseUserData(seed, ud); err != nil {
		return nil, err
	}
	return seed, nil
}

// parseUserData checks and reads a #cloud-config document into seed.
func parseUserData(seed *guestSeed, ud []byte) error {
	if !bytes.HasPrefix(ud, []byte("#cloud-config\n")) {
		return seedError("user-data is not a #cloud-config document (scripts, MIME multipart and include files are not supported)")
	}
	var doc map[string]yaml.Node
	if err := yaml.Unmarshal(ud, &doc); err != nil {
		return seedError("user-data is not YAML: %v", err)
	}
	var unknown []string
	for k := range doc {
		if !contains(seedKeys, k) {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return seedError("user-data key %s is not supported by agentlab-pvesim --guest-exec (it runs only %s)",
			strings.Join(quoteAll(unknown), ", "), strings.Join(seedKeys, ", "))
	}
	decode := func(key string, out any) error {
		n, ok := doc[key]
		if !ok {
			return nil
		}
		var b bytes.Buffer
		enc := yaml.NewEncoder(&b)
		if err := enc.Encode(&n); err != nil {
			return seedError("user-data %s: %v", key, err)
		}
		dec := yaml.NewDecoder(&b)
		dec.KnownFields(true)
		if err := dec.Decode(out); err != nil {
			return seedError("user-data %s (line %d): %v", key, n.Line, unwrapYAML(err))
		}
		return nil
	}
	var hostname string
	var disableRoot, sshPwauth bool
	var runcmd []yaml.Node
	var mounts [][]string
	for _, d := range []struct {
		key string
		out any
	}{
		{"hostname", &hostname}, {"manage_etc_hosts", &seed.ManageEtcHosts}, {"users", &seed.Users},
		{"disable_root", &disableRoot}, {"ssh_pwauth", &sshPwauth}, {"write_files", &seed.WriteFiles},
		{"fs_setup", &seed.FSSetup}, {"mounts", &mounts}, {"runcmd", &runcmd},
	} {
		if err := decode(d.key, d.out); err != nil {
			return err
		}
	}
	if hostname != "" {
		seed.Hostname = hostname
	}
	for i, u := range seed.Users {
		if !guestUserRE.MatchString(u.Name) || u.Name == "root" {
			return seedError("user-data users[%d]: name %q is not an account name the simulator can create", i, u.Name)
		}
	}
	for i := range seed.WriteFiles {
		if err := checkWriteFile(&seed.WriteFiles[i]); err != nil {
			return seedError("user-data write_files[%d]: %v", i, err)
		}
	}
	for i := range seed.FSSetup {
		if err := checkFSSetup(&seed.FSSetup[i]); err != nil {
			return seedError("user-data fs_setup[%d]: %v", i, err)
		}
	}
	for i, m := range mounts {
		gm, err := parseMount(m, seed.FSSetup)
		if err != nil {
			return seedError("user-data mounts[%d]: %v", i, err)
		}
		seed.Mounts = append(seed.Mounts, gm)
	}
	script, err := runcmdScript(runcmd)
	if err != nil {
		return err
	}
	seed.Runcmd = script
	return nil
}

var (
	guestUserRE = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`)
	ownerRE     = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}(:[a-z_][a-z0-9_-]{0,31})?$`)
	permRE      = regexp.MustCompile(`^0?[0-7]{3,4}$`)
	// scsiByID is the path a guest on a VirtIO SCSI controller sees a PVE
	// disk under (QEMU's drive id is "drive-<key>").
	scsiByID = regexp.MustCompile(`^/dev/disk/by-id/scsi-0QEMU_QEMU_HARDDISK_drive-(scsi([0-9]|[12][0-9]|30))$`)
)

func checkWriteFile(f *guestFile) error {
	if !path.IsAbs(f.Path) || path.Clean(f.Path) != f.Path || f.Path == "/" {
		return fmt.Errorf("path %q: want an absolute, clean file path", f.Path)
	}
	if f.Owner != "" && !ownerRE.MatchString(f.Owner) {
		return fmt.Errorf("owner %q: want USER or USER:GROUP", f.Owner)
	}
	if f.Permissions != "" && !permRE.MatchString(f.Permissions) {
		return fmt.Errorf("permissions %q: want an octal mode such as \"0644\"", f.Permissions)
	}
	switch strings.ToLower(f.Encoding) {
	case "", "text/plain":
	case "b64", "base64":
		b, err := base64.StdEncoding.DecodeString(f.Content)
		if err != nil {
			return fmt.Errorf("content: encoding %s but not base64: %v", f.Encoding, err)
		}
		f.Content = string(b)
	default:
		return fmt.Errorf("encoding %q is not supported (want b64 or none)", f.Encoding)
	}
	f.Encoding = ""
	return nil
}

func checkFSSetup(fs *guestFS) error {
	m := scsiByID.FindStringSubmatch(fs.Device)
	switch {
	case m == nil:
		return fmt.Errorf("device %q: the simulator maps only /dev/disk/by-id/scsi-0QEMU_QEMU_HARDDISK_drive-scsiN to a VM disk", fs.Device)
	case fs.Label == "":
		return fmt.Errorf("label: required, mounts find the file system by it")
	case fs.Filesystem != "ext4":
		return fmt.Errorf("filesystem %q: the simulator models ext4 only", fs.Filesystem)
	case fs.Partition != "auto":
		return fmt.Errorf("partition %q: the simulator models only \"auto\" (format a blank disk once, reuse a labelled one)", fs.Partition)
	case fs.Overwrite:
		return fmt.Errorf("overwrite: true would wipe the disk on every boot; the simulator refuses it")
	}
	fs.Disk = m[1]
	return nil
}

// parseMount reads a mounts entry [LABEL=x, target, ...] whose label one of
// fss formats.
func parseMount(m []string, fss []guestFS) (guestMount, error) {
	if len(m) < 2 {
		return guestMount{}, fmt.Errorf("want [SPEC, MOUNTPOINT, ...]")
	}
	label, ok := strings.CutPrefix(m[0], "LABEL=")
	if !ok {
		return guestMount{}, fmt.Errorf("spec %q: the simulator mounts file systems by LABEL= only", m[0])
	}
	target := m[1]
	if !path.IsAbs(target) || path.Clean(target) != target || target == "/" {
		return guestMount{}, fmt.Errorf("mount point %q: want an absolute, clean path other than /", target)
	}
	if len(m) > 2 && m[2] != "ext4" && m[2] != "auto" {
		return guestMount{}, fmt.Errorf("file system type %q: want ext4", m[2])
	}
	for _, fs := range fss {
		if fs.Label == label {
			return guestMount{Label: label, Target: target}, nil
		}
	}
	return guestMount{}, fmt.Errorf("LABEL=%s: no fs_setup entry makes a file system with this label", label)
}

// runcmdScript renders runcmd as cloud-init does: one line per entry, a
// string as it is, a list as its words quoted for the shell.
func runcmdScript(entries []yaml.Node) (string, error) {
	if len(entries) == 0 {
		return "", nil
	}
	var b strings.Builder
	b.WriteString("#!/bin/sh\n")
	for i, n := range entries {
		switch n.Kind {
		case yaml.ScalarNode:
			b.WriteString(n.Value)
		case yaml.SequenceNode:
			var words []string
			if err := n.Decode(&words); err != nil {
				return "", seedError("user-data runcmd[%d]: want a string or a list of strings", i)
			}
			for j, w := range words {
				if j > 0 {
					b.WriteByte(' ')
				}
				b.WriteString(shellQuote(w))
			}
		default:
			return "", seedError("user-data runcmd[%d]: want a string or a list of strings", i)
		}
		b.WriteByte('\n')
	}
	return b.String(), nil
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'"'"'`) + "'"
}

// yamlNoise is what yaml.v3 says that means nothing to a seed's author: the
// line within the re-encoded value and the simulator's Go type names.
var yamlNoise = regexp.MustCompile(`line \d+: | in type pvesim\.\w+| into \S*pvesim\.\w+|yaml: `)

// unwrapYAML drops yaml.v3's "yaml: unmarshal errors:" preamble.
func unwrapYAML(err error) string {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		return yamlNoise.ReplaceAllString(strings.Join(te.Errors, "; "), "")
	}
	return yamlNoise.ReplaceAllString(err.Error(), "")
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func quoteAll(list []string) []string {
	out := make([]string, len(list))
	for i, s := range list {
		out[i] = strconv.Quote(s)
	}
	return out
}
