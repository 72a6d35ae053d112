package pvesim

import (
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Config keys whose values PVE returns as JSON numbers.
var (
	configIntKeys = setOf("balloon", "cores", "cpuunits", "migrate_speed", "shares", "smp", "sockets",
		"vcpus", "vmid")
	configBoolKeys = setOf("acpi", "allow-ksm", "autostart", "ciupgrade", "freeze", "keephugepages", "kvm",
		"localtime", "numa", "onboot", "protection", "reboot", "tablet", "tdf", "template")
	configNumberKeys = setOf("cpulimit", "migrate_downtime")
	// fastPlugKeys change at once even on a running VM (PVE's $fast_plug_option
	// and the cloud-init password); every other change to a running VM waits
	// in the pending section until the next start.
	fastPlugKeys = setOf("name", "description", "tags", "onboot", "protection", "lock", "startup",
		"hookscript", "vmstatestorage", "shares", "cipassword")
	driveKeyRE   = regexp.MustCompile(`^(ide[0-3]|sata[0-5]|scsi([0-9]|[12][0-9]|30)|virtio([0-9]|1[0-5])|efidisk0|tpmstate0|unused\d+)$`)
	netKeyRE     = regexp.MustCompile(`^net\d+$`)
	macRE        = regexp.MustCompile(`^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$`)
	netModels    = setOf("e1000", "e1000-82540em", "e1000-82544gc", "e1000-82545em", "e1000e", "i82551", "i82557b", "i82559er", "ne2k_isa", "ne2k_pci", "pcnet", "rtl8139", "virtio", "vmxnet3")
	sizeRE       = regexp.MustCompile(`^(\d+(?:\.\d+)?)([KMGT])?$`)
	newDiskRE    = regexp.MustCompile(`^(?:([^/:\s]+):)?(\d+(?:\.\d+)?)$`)
	descTrailing = regexp.MustCompile(`\s+$`)
)

func setOf(keys ...string) map[string]bool {
	m := make(map[string]bool, len(keys))
	for _, k := range keys {
		m[k] = true
	}
	return m
}

// jsonConfigValue converts a stored config value to the JSON type PVE uses.
func jsonConfigValue(key, v string) any {
	switch {
	case configIntKeys[key], configBoolKeys[key]:
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			return n
		}
	case configNumberKeys[key]:
		if f, err := strconv.ParseFloat(v, 64); err == nil {
			return f
		}
	case key == "cipassword":
		return "**********"
	}
	return v
}

// configText renders a config as PVE's .conf file; its SHA1 is the digest.
func configText(conf, pending map[string]string, pendingDelete []string) string {
	var b strings.Builder
	if d, ok := conf["description"]; ok {
		for _, line := range strings.Split(d, "\n") {
			b.WriteString("#" + line + "\n")
		}
	}
	writeKV(&b, conf)
	if len(pending) > 0 || len(pendingDelete) > 0 {
		b.WriteString("\n[PENDING]\n")
		if len(pendingDelete) > 0 {
			b.WriteString("delete: " + strings.Join(pendingDelete, ",") + "\n")
		}
		writeKV(&b, pending)
	}
	return b.String()
}

func writeKV(b *strings.Builder, m map[string]string) {
	keys := make([]string, 0, len(m))
	for k := range m {
		if k != "description" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		b.WriteString(k + ": " + m[k] + "\n")
	}
}

// digest is the SHA1 of the config file, as PVE reports it.
func (v *vmState) digest() string {
	sum := sha1.Sum([]byte(configText(v.Conf, v.Pending, v.PendingDelete)))
	return hex.EncodeToString(sum[:])
}

// effectiveConfig returns the config with pending changes applied.
func (v *vmState) effectiveConfig() map[string]string {
	out := make(map[string]string, len(v.Conf)+len(v.Pending))
	for k, val := range v.Conf {
		out[k] = val
	}
	for k, val := range v.Pending {
		out[k] = val
	}
	for _, k := range v.PendingDelete {
		delete(out, strings.TrimPrefix(k, "!"))
	}
	return out
}

// normalizeTags splits tags on , ; or space, lower-cases, sorts, removes
// duplicates and joins them with ';'.
func normalizeTags(s string) string {
	fields := strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ';' || r == ' ' || r == '\t' })
	seen := map[string]bool{}
	var out []string
	for _, f := range fields {
		f = strings.ToLower(f)
		if !seen[f] {
			seen[f] = true
			out = append(out, f)
		}
	}
	sort.Strings(out)
	return strings.Join(out, ";")
}

// netConfig is a parsed netN value.
type netConfig struct {
	model, mac string
	opts       map[string]string
}

func parseNet(v string) (netConfig, error) {
	n := netConfig{opts: map[string]string{}}
	for _, part := range strings.Split(v, ",") {
		if part == "" {
			continue
		}
		k, val, hasEq := strings.Cut(part, "=")
		switch {
		case netModels[k]:
			n.model = k
			if hasEq && val != "" {
				n.mac = val
			}
		case k == "model":
			n.model = val
		case k == "macaddr":
			n.mac = val
		case !hasEq && n.model == "" && netModels[part]:
			n.model = part
		case !hasEq:
			return n, fmt.Errorf("invalid format - value without key, but schema does not define a default key")
		default:
			n.opts[k] = val
		}
	}
	if n.model == "" || !netModels[n.model] {
		return n, fmt.Errorf("invalid format - format error\nmodel: property is missing and it is not optional")
	}
	if n.mac != "" && !macRE.MatchString(n.mac) {
		return n, fmt.Errorf("invalid format - format error\nmacaddr: value does not match the regex pattern")
	}
	return n, nil
}

func (n netConfig) String() string {
	parts := []string{n.model + "=" + strings.ToUpper(n.mac)}
	keys := make([]string, 0, len(n.opts))
	for k := range n.opts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		parts = append(parts, k+"="+n.opts[k])
	}
	return strings.Join(parts, ",")
}

// newMAC returns a fresh MAC address with Proxmox's prefix BC:24:11 (s.mu held).
func (s *Server) newMACLocked() string {
	s.st.MACSeq++
	x := (s.st.MACSeq*0x9E3779B1 + uint64(s.opts.Seed)) & 0xffffff
	return fmt.Sprintf("BC:24:11:%02X:%02X:%02X", byte(x>>16), byte(x>>8), byte(x))
}

// driveConfig is a parsed disk value: "local-lvm:vm-100-disk-0,size=8G,iothread=1".
type driveConfig struct {
	file string
	opts []string // key=value in order, size excluded
	size string
}

func parseDrive(v string) driveConfig {
	d := driveConfig{}
	// Empty segments ("local-lvm:2,,discard=on", a trailing comma) are
	// skipped, as pve-common's parse_property_string does.
	first := true
	for _, p := range strings.Split(v, ",") {
		if p == "" {
			continue
		}
		k, val, hasEq := strings.Cut(p, "=")
		isFirst := first
		first = false
		switch {
		case isFirst && !hasEq:
			d.file = p
		case k == "file" || k == "volume":
			d.file = val
		case k == "size":
			d.size = val
		default:
			d.opts = append(d.opts, p)
		}
	}
	return d
}

// String prints the drive like PVE: the volume, then the options sorted by key.
func (d driveConfig) String() string {
	opts := append([]string(nil), d.opts...)
	if d.size != "" {
		size := d.size
		if n, ok := parseSize(size); ok && n > 0 {
			size = formatSize(n) // PVE prints sizes with format_size: 8G, not bytes
		}
		opts = append(opts, "size="+size)
	}
	sort.SliceStable(opts, func(i, j int) bool {
		ki, _, _ := strings.Cut(opts[i], "=")
		kj, _, _ := strings.Cut(opts[j], "=")
		return ki < kj
	})
	return strings.Join(append([]string{d.file}, opts...), ",")
}

func (d driveConfig) isCDROM() bool {
	for _, o := range d.opts {
		if o == "media=cdrom" {
			return true
		}
	}
	return d.file == "cdrom" || d.file == "none"
}

func (d driveConfig) isCloudInit() bool {
	return strings.HasSuffix(d.file, "-cloudinit") || strings.HasSuffix(d.file, ":cloudinit")
}

// parseSize parses "8G", "512M", "1024" (bytes) into bytes.
func parseSize(s string) (int64, bool) {
	m := sizeRE.FindStringSubmatch(s)
	if m == nil {
		return 0, false
	}
	f, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return 0, false
	}
	switch m[2] {
	case "K":
		f *= 1 << 10
	case "M":
		f *= 1 << 20
	case "G":
		f *= 1 << 30
	case "T":
		f *= 1 << 40
	}
	return int64(f), true
}

// formatSize formats bytes like PVE's format_size: the largest exact unit.
func formatSize(n int64) string {
	if n%1024 != 0 {
		return strconv.FormatInt(n, 10)
	}
	kb := n / 1024
	if kb%1024 != 0 {
		return strconv.FormatInt(kb, 10) + "K"
	}
	mb := kb / 1024
	if mb%1024 != 0 {
		return strconv.FormatInt(mb, 10) + "M"
	}
	gb := mb / 1024
	if gb%1024 != 0 {
		return strconv.FormatInt(gb, 10) + "G"
	}
	return strconv.FormatInt(gb/1024, 10) + "T"
}

// memoryMiB returns the VM's memory in MiB from "1024" or "current=1024".
func memoryMiB(conf map[string]string) int64 {
	v := conf["memory"]
	if v == "" {
		return 512
	}
	for _, p := range strings.Split(v, ",") {
		k, val, ok := strings.Cut(p, "=")
		if !ok {
			val = k
		} else if k != "current" {
			continue
		}
		if n, err := strconv.ParseInt(val, 10, 64); err == nil {
			return n
		}
	}
	return 512
}

// cpuCount returns sockets*cores.
func cpuCount(conf map[string]string) int {
	cores, sockets := 1, 1
	if n, err := strconv.Atoi(conf["cores"]); err == nil && n > 0 {
		cores = n
	}
	if n, err := strconv.Atoi(conf["sockets"]); err == nil && n > 0 {
		sockets = n
	}
	if n, err := strconv.Atoi(conf["vcpus"]); err == nil && n > 0 {
		return n
	}
	return cores * sockets
}
