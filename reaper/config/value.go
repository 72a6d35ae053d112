package config

import (
	"fmt"
	"strconv"
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
