package pve

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/agentlab/terraform-provider-agentlab/internal/size"
)

// VMConfig is a guest's configuration as GET /nodes/{node}/qemu/{vmid}/config
// returns it (pending changes applied), with typed helpers.
type VMConfig struct {
	// Raw holds the config as PVE sent it; values are strings or json.Number.
	Raw map[string]any
}

// Config reads a guest's configuration.
func (c *Client) Config(ctx context.Context, ref VMRef) (VMConfig, error) {
	if err := ref.validate(); err != nil {
		return VMConfig{}, err
	}
	var raw map[string]any
	if err := c.get(ctx, pathf("/nodes/%s/qemu/%s/config", ref.Node, ref.VMID), nil, &raw); err != nil {
		return VMConfig{}, err
	}
	if raw == nil {
		raw = map[string]any{}
	}
	return VMConfig{Raw: raw}, nil
}

// Get returns the value of key as a string and whether it is set.
func (c VMConfig) Get(key string) (string, bool) {
	v, ok := c.Raw[key]
	if !ok || v == nil {
		return "", false
	}
	switch v := v.(type) {
	case string:
		return v, true
	case json.Number:
		return v.String(), true
	case bool:
		if v {
			return "1", true
		}
		return "0", true
	default:
		return fmt.Sprint(v), true
	}
}

// Value returns the value of key as a string, "" when unset.
func (c VMConfig) Value(key string) string {
	v, _ := c.Get(key)
	return v
}

// Int returns the value of key as an integer, 0 when unset or not a number.
func (c VMConfig) Int(key string) int64 {
	n, _ := strconv.ParseInt(c.Value(key), 10, 64)
	return n
}

// Digest is the config's SHA1 digest, for optimistic locking in UpdateConfig.
func (c VMConfig) Digest() string { return c.Value("digest") }

// Name is the guest's name.
func (c VMConfig) Name() string { return c.Value("name") }

// Description is the guest's notes (PVE strips trailing white space).
func (c VMConfig) Description() string { return c.Value("description") }

// Lock is the guest's lock ("clone", "backup", "create", ...), "" if none.
func (c VMConfig) Lock() string { return c.Value("lock") }

// Template reports whether the guest is a template.
func (c VMConfig) Template() bool { return c.Int("template") == 1 }

// Tags returns the guest's tags.
func (c VMConfig) Tags() []string { return SplitTags(c.Value("tags")) }

// SplitTags splits a PVE tag list ("a;b", "a,b" or "a b").
func SplitTags(s string) []string { return splitTags(s) }

// JoinTags joins tags the way PVE stores them: lower-cased, sorted,
// de-duplicated, separated by ';'.
func JoinTags(tags []string) string {
	seen := map[string]bool{}
	var out []string
	for _, t := range tags {
		for _, s := range SplitTags(strings.ToLower(t)) {
			if !seen[s] {
				seen[s] = true
				out = append(out, s)
			}
		}
	}
	sort.Strings(out)
	return strings.Join(out, ";")
}

// Drive is one disk or CD-ROM entry (ideN, sataN, scsiN, virtioN, efidisk0,
// tpmstate0) of a guest's config.
type Drive struct {
	Key     string // e.g. "scsi0"
	Volume  string // e.g. "local-lvm:vm-100-disk-0", "none", "cdrom"
	Storage string // the volume's storage, "" for "none"/"cdrom"
	Media   string // "cdrom" for CD-ROMs (cloud-init drives included), else ""
	Size    string // as configured, e.g. "32G"; "" if unknown
	// SizeBytes is Size in bytes, 0 if unknown.
	SizeBytes int64
	// Options holds every key=value option of the entry.
	Options map[string]string
}

// CDROM reports whether the drive is a CD-ROM (including cloud-init drives).
func (d Drive) CDROM() bool { return d.Media == "cdrom" }

var reDriveKey = regexp.MustCompile(`^(ide|sata|scsi|virtio)(\d+)$|^efidisk0$|^tpmstate0$`)

// IsDriveKey reports whether key names a drive in a qemu config.
func IsDriveKey(key string) bool { return reDriveKey.MatchString(key) }

// ParseDrive parses a drive entry such as
// "local-lvm:vm-100-disk-0,iothread=1,size=32G".
func ParseDrive(key, value string) (Drive, error) {
	d := Drive{Key: key, Options: map[string]string{}}
	for i, item := range strings.Split(value, ",") {
		k, v, hasEq := strings.Cut(item, "=")
		switch {
		case !hasEq && i == 0:
			d.Volume = item
		case !hasEq:
			return Drive{}, fmt.Errorf("drive %s: invalid option %q in %q", key, item, value)
		case k == "file" || k == "volume":
			d.Volume = v
		default:
			d.Options[k] = v
		}
	}
	if d.Volume == "" {
		return Drive{}, fmt.Errorf("drive %s: no volume in %q", key, value)
	}
	if st, _, ok := strings.Cut(d.Volume, ":"); ok && !strings.HasPrefix(d.Volume, "/") {
		d.Storage = st
	}
	d.Media = d.Options["media"]
	if s := d.Options["size"]; s != "" {
		d.Size = s
		if n, err := ParseSize(s); err == nil {
			d.SizeBytes = n
		}
	}
	return d, nil
}

// Drives returns every drive of the config, sorted by key.
func (c VMConfig) Drives() []Drive {
	var out []Drive
	for k := range c.Raw {
		if !IsDriveKey(k) {
			continue
		}
		if d, err := ParseDrive(k, c.Value(k)); err == nil {
			out = append(out, d)
		}
	}
	sort.Slice(out, func(i, j int) bool { return driveLess(out[i].Key, out[j].Key) })
	return out
}

// Disks returns the drives that are not CD-ROMs.
func (c VMConfig) Disks() []Drive {
	var out []Drive
	for _, d := range c.Drives() {
		if !d.CDROM() {
			out = append(out, d)
		}
	}
	return out
}

// Drive returns the drive at key.
func (c VMConfig) Drive(key string) (Drive, bool) {
	v, ok := c.Get(key)
	if !ok || !IsDriveKey(key) {
		return Drive{}, false
	}
	d, err := ParseDrive(key, v)
	return d, err == nil
}

// BootDisk returns the key of the disk the guest boots from: the first
// non-CD-ROM drive in "boot: order=...", else the legacy "bootdisk" key, else
// "" when unknown.
func (c VMConfig) BootDisk() string {
	boot := c.Value("boot")
	if rest, ok := strings.CutPrefix(boot, "order="); ok {
		order, _, _ := strings.Cut(rest, ",")
		for _, k := range strings.Split(order, ";") {
			if d, ok := c.Drive(strings.TrimSpace(k)); ok && !d.CDROM() {
				return d.Key
			}
		}
		return ""
	}
	if k := c.Value("bootdisk"); k != "" {
		if _, ok := c.Drive(k); ok {
			return k
		}
	}
	return ""
}

// driveLess orders drive keys by bus, then numerically by index.
func driveLess(a, b string) bool {
	ab, ai := splitKey(a)
	bb, bi := splitKey(b)
	if ab != bb {
		return ab < bb
	}
	return ai < bi
}

func splitKey(k string) (string, int) {
	i := len(k)
	for i > 0 && k[i-1] >= '0' && k[i-1] <= '9' {
		i--
	}
	n, _ := strconv.Atoi(k[i:])
	return k[:i], n
}

// NIC is a network device entry (netN) of a guest's config.
type NIC struct {
	Key      string // e.g. "net0"
	Model    string // e.g. "virtio"
	MAC      string // e.g. "BC:24:11:2E:4F:10"
	Bridge   string // e.g. "vmbr0"
	Firewall bool
	Tag      int // VLAN tag, 0 if none
	// Options holds the remaining options (mtu, queues, rate, link_down, ...).
	Options map[string]string
}

// nicKeys are netN options that are not a model name.
var nicKeys = map[string]bool{
	"bridge": true, "firewall": true, "link_down": true, "mtu": true, "queues": true,
	"rate": true, "tag": true, "trunks": true, "macaddr": true, "model": true,
}

// ParseNIC parses a network entry such as
// "virtio=BC:24:11:2E:4F:10,bridge=vmbr0,firewall=1".
func ParseNIC(key, value string) (NIC, error) {
	n := NIC{Key: key, Options: map[string]string{}}
	for _, item := range strings.Split(value, ",") {
		k, v, ok := strings.Cut(item, "=")
		if !ok {
			if n.Model == "" && !nicKeys[item] {
				n.Model = item // model without a MAC: PVE generates one
				continue
			}
			return NIC{}, fmt.Errorf("%s: invalid option %q in %q", key, item, value)
		}
		switch k {
		case "model":
			n.Model = v
		case "macaddr":
			n.MAC = v
		case "bridge":
			n.Bridge = v
		case "firewall":
			n.Firewall = v == "1"
		case "tag":
			t, err := strconv.Atoi(v)
			if err != nil {
				return NIC{}, fmt.Errorf("%s: invalid tag %q", key, v)
			}
			n.Tag = t
		default:
			if !nicKeys[k] && n.Model == "" {
				n.Model, n.MAC = k, v
			} else {
				n.Options[k] = v
			}
		}
	}
	if n.Model == "" {
		return NIC{}, fmt.Errorf("%s: no model in %q", key, value)
	}
	return n, nil
}

// String renders the NIC as a netN value, keeping its MAC:
// "model=MAC,bridge=B,firewall=1,tag=N" followed by the other options sorted.
func (n NIC) String() string {
	var parts []string
	if n.MAC != "" {
		parts = append(parts, n.Model+"="+n.MAC)
	} else {
		parts = append(parts, "model="+n.Model)
	}
	if n.Bridge != "" {
		parts = append(parts, "bridge="+n.Bridge)
	}
	if n.Firewall {
		parts = append(parts, "firewall=1")
	}
	if n.Tag != 0 {
		parts = append(parts, "tag="+strconv.Itoa(n.Tag))
	}
	keys := make([]string, 0, len(n.Options))
	for k := range n.Options {
		if k != "firewall" && k != "bridge" && k != "tag" && k != "model" && k != "macaddr" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		parts = append(parts, k+"="+n.Options[k])
	}
	return strings.Join(parts, ",")
}

var reNetKey = regexp.MustCompile(`^net\d+$`)

// NICs returns every network device of the config, sorted by key.
func (c VMConfig) NICs() []NIC {
	var out []NIC
	for k := range c.Raw {
		if !reNetKey.MatchString(k) {
			continue
		}
		if n, err := ParseNIC(k, c.Value(k)); err == nil {
			out = append(out, n)
		}
	}
	sort.Slice(out, func(i, j int) bool { return driveLess(out[i].Key, out[j].Key) })
	return out
}

// NIC returns the network device at key (e.g. "net0").
func (c VMConfig) NIC(key string) (NIC, bool) {
	v, ok := c.Get(key)
	if !ok || !reNetKey.MatchString(key) {
		return NIC{}, false
	}
	n, err := ParseNIC(key, v)
	return n, err == nil
}

// ParseSize parses a disk size as PVE writes it ("32G", "512M", "1.5T",
// "4096K"; a bare number is bytes) into bytes, with internal/size's grammar,
// the one all of AgentLab uses.
func ParseSize(s string) (int64, error) { return size.Parse(s) }

// EncodeSSHKeys encodes public keys for the "sshkeys" option, which PVE wants
// URI-encoded (format "urlencoded": only [-A-Za-z0-9_.!~*'()] stay plain).
func EncodeSSHKeys(keys []string) string {
	var lines []string
	for _, k := range keys {
		if k = strings.TrimSpace(k); k != "" {
			lines = append(lines, k)
		}
	}
	return uriEncode(strings.Join(lines, "\n"))
}

func uriEncode(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if ch >= 'A' && ch <= 'Z' || ch >= 'a' && ch <= 'z' || ch >= '0' && ch <= '9' || strings.IndexByte("-_.!~*'()", ch) >= 0 {
			b.WriteByte(ch)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[ch>>4])
		b.WriteByte(hex[ch&15])
	}
	return b.String()
}
