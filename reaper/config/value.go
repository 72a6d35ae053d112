package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/agentlab/terraform-provider-agentlab/internal/size"
)

// Duration is a time.Duration written as a Go duration string ("30s", "1h30m").
type Duration time.Duration

// UnmarshalYAML parses a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("want a duration such as 30s, got a %s", kindName(n.Kind))
	}
	if n.Value == "0" {
		*d = 0
		return nil
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		if _, numErr := strconv.ParseFloat(n.Value, 64); numErr == nil {
			return fmt.Errorf("%q has no unit; write it with one, e.g. %ss", n.Value, n.Value)
		}
		return fmt.Errorf("%q is not a duration; write a Go duration such as 30s, 5m or 1h30m", n.Value)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration as a string.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// String returns the duration as time.Duration writes it.
func (d Duration) String() string { return time.Duration(d).String() }

// ByteSize is a number of bytes, written in internal/size's grammar: a
// number with K, M, G or T (or KiB, MiB, GiB, TiB; powers of 1024), B or no
// unit for bytes. KB, MB, GB and TB are refused as ambiguous.
type ByteSize int64

// ParseByteSize parses a size such as "10GiB", "512M" or "1048576".
func ParseByteSize(s string) (ByteSize, error) {
	n, err := size.Parse(s)
	return ByteSize(n), err
}

// UnmarshalYAML parses a size.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("want a size such as 10GiB, got a %s", kindName(n.Kind))
	}
	v, err := ParseByteSize(n.Value)
	if err != nil {
		return err
	}
	*b = v
	return nil
}

// String writes the size with the largest binary unit that divides it.
func (b ByteSize) String() string { return size.FormatIEC(int64(b)) }

// VMIDRange is an inclusive range of VMIDs written "FIRST-LAST", e.g.
// "100-999"; the zero value (or "", or "all") means every VMID.
type VMIDRange struct {
	// First and Last bound the range; both are 0 for every VMID.
	First, Last int
}

// MinVMID and MaxVMID bound the VMIDs Proxmox VE accepts.
const (
	MinVMID = 100
	MaxVMID = 999999999
)

// ParseVMIDRange parses "FIRST-LAST", "" or "all".
func ParseVMIDRange(s string) (VMIDRange, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "all" {
		return VMIDRange{}, nil
	}
	a, b, ok := strings.Cut(s, "-")
	first, err1 := strconv.Atoi(strings.TrimSpace(a))
	last, err2 := strconv.Atoi(strings.TrimSpace(b))
	switch {
	case !ok || err1 != nil || err2 != nil:
		return VMIDRange{}, fmt.Errorf("%q is not a VMID range; write it like 100-999, or all", s)
	case first < MinVMID || last > MaxVMID:
		return VMIDRange{}, fmt.Errorf("%q reaches outside the VMIDs Proxmox VE uses (%d-%d)", s, MinVMID, MaxVMID)
	case first > last:
		return VMIDRange{}, fmt.Errorf("%q starts after it ends; write the smaller VMID first, e.g. %d-%d", s, last, first)
	}
	return VMIDRange{First: first, Last: last}, nil
}

// Contains reports whether vmid is in the range.
func (r VMIDRange) Contains(vmid int) bool {
	return r == VMIDRange{} || (vmid >= r.First && vmid <= r.Last)
}

// String writes the range as ParseVMIDRange reads it.
func (r VMIDRange) String() string {
	if r == (VMIDRange{}) {
		return "all"
	}
	return strconv.Itoa(r.First) + "-" + strconv.Itoa(r.Last)
}

// UnmarshalYAML parses a VMID range.
func (r *VMIDRange) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("want a VMID range such as 100-999, got a %s", kindName(n.Kind))
	}
	v, err := ParseVMIDRange(n.Value)
	if err != nil {
		return err
	}
	*r = v
	return nil
}

// MarshalYAML writes the range as a string.
func (r VMIDRange) MarshalYAML() (any, error) { return r.String(), nil }

func kindName(k yaml.Kind) string {
	switch k {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	case yaml.ScalarNode:
		return "scalar"
	case yaml.AliasNode:
		return "alias"
	}
	return "document"
}
