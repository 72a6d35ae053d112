package profile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/agentlab/terraform-provider-agentlab/internal/egressrule"
	"github.com/agentlab/terraform-provider-agentlab/internal/secrets"
	"github.com/agentlab/terraform-provider-agentlab/internal/suggest"
)

// key describes one key of the profile format. A section has children; a
// leaf has a setter, or none when the key is accepted but ignored.
type key struct {
	section bool
	// setting identifies what the key sets, so that a key and its alias
	// cannot both be used in one file.
	setting string
	set     func(p *Profile, n *yaml.Node) error
}

// ignored marks a key of the original AgentLab format that is accepted and
// reported in Profile.Ignored.
var ignored = key{}

// schema returns every key the format knows, by dotted path, for the profile
// called name. It is built per call so that no package state can change.
func schema(name string) map[string]key {
	sec := key{section: true}
	return map[string]key{
		"name":          {setting: "name", set: checkName(name)},
		"template_vmid": {setting: "template", set: setTemplate},
		"template_vm":   {setting: "template", set: setTemplate},
		"node":          {setting: "node", set: setNode},

		"network":                {section: true},
		"network.bridge":         {setting: "bridge", set: setBridge},
		"network.model":          {setting: "model", set: setModel},
		"network.firewall":       {setting: "firewall", set: func(p *Profile, n *yaml.Node) error { return boolInto(&p.Network.Firewall, n) }},
		"network.egress":         {setting: "egress", set: setEgress},
		"network.mode":           ignored,
		"network.firewall_group": ignored,

		"resources":           sec,
		"resources.cores":     {setting: "cores", set: setCores},
		"resources.memory_mb": {setting: "memory", set: setMemory},
		"resources.memory":    {setting: "memory", set: setMemory},
		"resources.storage":   {setting: "disk", set: setDisk},
		"resources.balloon":   ignored,
		"resources.cpulist":   ignored,

		"storage":              sec,
		"storage.root_size_gb": {setting: "disk", set: setDisk},
		"storage.workspace":    ignored,

		"behavior":                           sec,
		"behavior.ttl_minutes_default":       {setting: "ttl", set: setTTL},
		"behavior.ttl_minutes":               {setting: "ttl", set: setTTL},
		"behavior.keepalive_default":         {setting: "keepalive", set: func(p *Profile, n *yaml.Node) error { return boolInto(&p.Behavior.KeepaliveDefault, n) }},
		"behavior.mode":                      ignored,
		"behavior.idle_stop_minutes_default": ignored,
		"behavior.inner_sandbox":             ignored,
		"behavior.inner_sandbox_args":        ignored,

		"secrets_bundle":     ignored,
		"secrets":            sec,
		"secrets.recipient":  {setting: "secrets recipient", set: setRecipient},
		"repo":               sec,
		"repo.clone_path":    ignored,
		"artifacts":          sec,
		"artifacts.upload":   ignored,
		"artifacts.endpoint": ignored,
	}
}

// parser walks one profile document and collects every problem in it.
type parser struct {
	path string
	keys map[string]key
	p    Profile
	seen map[string]string // setting -> key that set it
	errs []error
}

// parse reads the profile called name from data, read from path.
func parse(path, name string, data []byte) (Profile, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return Profile{}, &ParseError{Path: path, Msg: "file is empty; a profile needs at least template_vmid"}
		}
		return Profile{}, yamlError(path, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		line := extra.Line
		if err != nil {
			return Profile{}, yamlError(path, err)
		}
		return Profile{}, &ParseError{Path: path, Line: line, Msg: "file holds more than one YAML document; put one profile per file"}
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind != yaml.MappingNode {
		return Profile{}, &ParseError{Path: path, Line: root.Line, Msg: "want a mapping of profile keys (template_vmid, network, resources, ...), got " + describe(root)}
	}
	ps := &parser{path: path, keys: schema(name), p: Profile{Name: name, Path: path}, seen: map[string]string{}}
	ps.walk("", root)
	if len(ps.errs) > 0 {
		return Profile{}, errors.Join(ps.errs...)
	}
	return ps.p, nil
}

func (ps *parser) fail(line int, k, format string, args ...any) {
	ps.errs = append(ps.errs, &ParseError{Path: ps.path, Line: line, Key: k, Msg: fmt.Sprintf(format, args...)})
}

// walk visits the keys of mapping m, whose own dotted path is prefix.
func (ps *parser) walk(prefix string, m *yaml.Node) {
	dup := map[string]int{}
	for i := 0; i+1 < len(m.Content); i += 2 {
		kn, vn := m.Content[i], m.Content[i+1]
		full := kn.Value
		if prefix != "" {
			full = prefix + "." + kn.Value
		}
		if kn.Kind != yaml.ScalarNode {
			ps.fail(kn.Line, "", "want a key name, got %s", describe(kn))
			continue
		}
		if first, ok := dup[kn.Value]; ok {
			ps.fail(kn.Line, full, "key %q repeats the one on line %d", full, first)
			continue
		}
		dup[kn.Value] = kn.Line
		k, ok := ps.keys[full]
		if !ok {
			ps.unknown(kn.Line, prefix, full)
			continue
		}
		if k.setting != "" {
			if other, ok := ps.seen[k.setting]; ok {
				ps.fail(kn.Line, full, "%q and %q set the same thing; keep one", other, full)
				continue
			}
			ps.seen[k.setting] = full
		}
		switch {
		case vn.ShortTag() == "!!null":
			// An empty value leaves the setting unset, as if the key were absent.
		case k.section:
			if vn.Kind != yaml.MappingNode {
				ps.fail(vn.Line, full, "%s: want a mapping of keys (%s), got %s", full, strings.Join(ps.children(full), ", "), describe(vn))
				continue
			}
			ps.walk(full, vn)
		case k.set == nil:
			ps.p.Ignored = append(ps.p.Ignored, IgnoredKey{Key: full, Line: kn.Line})
		default:
			if err := k.set(&ps.p, vn); err != nil {
				ps.fail(vn.Line, full, "%s: %v", full, err)
			}
		}
	}
}

// unknown reports key full, found in section prefix, with the keys that
// section does know and a suggestion when one is close.
func (ps *parser) unknown(line int, prefix, full string) {
	known := ps.children(prefix)
	msg := fmt.Sprintf("unknown key %q", full)
	if s := suggest.Closest(full, known); s != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", s)
	}
	ps.fail(line, full, "%s; known keys: %s", msg, strings.Join(known, ", "))
}

// children returns the dotted paths of the keys directly inside section
// prefix ("" for the top level), sorted.
func (ps *parser) children(prefix string) []string {
	var out []string
	for k := range ps.keys {
		parent := ""
		if i := strings.LastIndexByte(k, '.'); i >= 0 {
			parent = k[:i]
		}
		if parent == prefix {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// yamlErrorLine matches the line number in yaml.v3 syntax errors.
var yamlErrorLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

func yamlError(path string, err error) error {
	if m := yamlErrorLine.FindStringSubmatch(err.Error()); m != nil {
		line, _ := strconv.Atoi(m[1])
		return &ParseError{Path: path, Line: line, Msg: "invalid YAML: " + m[2]}
	}
	return &ParseError{Path: path, Msg: "invalid YAML: " + strings.TrimPrefix(err.Error(), "yaml: ")}
}

// describe names a node's type for error messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	}
	switch n.ShortTag() {
	case "!!str":
		return strconv.Quote(n.Value)
	case "!!int":
		return "the number " + n.Value
	case "!!float":
		return "the number " + n.Value
	case "!!bool":
		return "the boolean " + n.Value
	case "!!null":
		return "nothing"
	}
	return n.Value
}

// nicModels are the NIC models PVE accepts for netN.
var nicModels = []string{
	"e1000", "e1000-82540em", "e1000-82544gc", "e1000-82545em", "e1000e",
	"i82551", "i82557b", "i82559er", "ne2k_isa", "ne2k_pci", "pcnet",
	"rtl8139", "virtio", "vmxnet3",
}

// bridgePattern is PVE's pve-bridge-id format.
var bridgePattern = regexp.MustCompile(`^[-_.\w]+$`)

// nodePattern is PVE's pve-node format: a DNS label.
var nodePattern = regexp.MustCompile(`^[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?$`)

// checkName accepts a name key only when it agrees with the file name.
func checkName(name string) func(*Profile, *yaml.Node) error {
	return func(_ *Profile, n *yaml.Node) error {
		v, err := stringValue(n)
		if err != nil {
			return err
		}
		if v != name {
			return fmt.Errorf("%q does not match the file name %q; rename the file or remove the key", v, name)
		}
		return nil
	}
}

func setTemplate(p *Profile, n *yaml.Node) error {
	v, err := intValue(n)
	if err != nil {
		return err
	}
	if v < 100 || v > 999999999 {
		return fmt.Errorf("%d is not a VMID; want 100 to 999999999", v)
	}
	p.TemplateVMID = &v
	return nil
}

func setNode(p *Profile, n *yaml.Node) error {
	v, err := stringValue(n)
	if err != nil {
		return err
	}
	if !nodePattern.MatchString(v) || len(v) > 63 {
		return fmt.Errorf("%q is not a Proxmox VE node name such as \"pve2\"", v)
	}
	p.Node = &v
	return nil
}

func setRecipient(p *Profile, n *yaml.Node) error {
	v, err := stringValue(n)
	if err != nil {
		return err
	}
	if _, err := secrets.ParseRecipient(v); err != nil {
		return err
	}
	p.Secrets.Recipient = &v
	return nil
}

func setBridge(p *Profile, n *yaml.Node) error {
	v, err := stringValue(n)
	if err != nil {
		return err
	}
	if !bridgePattern.MatchString(v) {
		return fmt.Errorf("%q is not a bridge name such as \"vmbr1\"", v)
	}
	p.Network.Bridge = &v
	return nil
}

func setEgress(p *Profile, n *yaml.Node) error {
	v, err := stringValue(n)
	if err != nil {
		return err
	}
	if v == "" {
		return fmt.Errorf("is empty; want open, allowlist or none")
	}
	pol, err := egressrule.ParsePolicy(v)
	if err != nil {
		return err
	}
	p.Network.Egress = &pol
	return nil
}

func setModel(p *Profile, n *yaml.Node) error {
	v, err := stringValue(n)
	if err != nil {
		return err
	}
	if !slices.Contains(nicModels, v) {
		return fmt.Errorf("%q is not a Proxmox VE NIC model; want one of %s", v, strings.Join(nicModels, ", "))
	}
	p.Network.Model = &v
	return nil
}

func setCores(p *Profile, n *yaml.Node) error {
	v, err := intValue(n)
	if err != nil {
		return err
	}
	if v < 1 {
		return fmt.Errorf("want at least 1 core, got %d", v)
	}
	p.Resources.Cores = &v
	return nil
}

func setMemory(p *Profile, n *yaml.Node) error {
	v, err := memoryValue(n)
	if err != nil {
		return err
	}
	p.Resources.MemoryMiB = &v
	return nil
}

func setDisk(p *Profile, n *yaml.Node) error {
	v, err := diskValue(n)
	if err != nil {
		return err
	}
	p.Resources.DiskSize = &v
	return nil
}

func setTTL(p *Profile, n *yaml.Node) error {
	v, err := intValue(n)
	if err != nil {
		return err
	}
	if v < 1 {
		return fmt.Errorf("want at least 1 minute, got %d (remove the key for no default)", v)
	}
	if v > int(maxTTLMinutes) {
		return fmt.Errorf("%d minutes is too long", v)
	}
	d := time.Duration(v) * time.Minute
	p.Behavior.TTL = &d
	return nil
}

// maxTTLMinutes keeps a TTL well inside time.Duration's range (about 100 years).
const maxTTLMinutes = 100 * 366 * 24 * 60

func boolInto(dst **bool, n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" {
		return fmt.Errorf("want true or false, got %s", describe(n))
	}
	var v bool
	if err := n.Decode(&v); err != nil {
		return fmt.Errorf("want true or false, got %s", describe(n))
	}
	*dst = &v
	return nil
}

func intValue(n *yaml.Node) (int, error) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
		return 0, fmt.Errorf("want a whole number, got %s", describe(n))
	}
	var v int
	if err := n.Decode(&v); err != nil {
		return 0, fmt.Errorf("want a whole number, got %s", describe(n))
	}
	return v, nil
}

func stringValue(n *yaml.Node) (string, error) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
		return "", fmt.Errorf("want a string, got %s", describe(n))
	}
	return n.Value, nil
}
