package config

import (
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/agentlab/terraform-provider-agentlab/internal/suggest"
)

// Error is one problem in the configuration file: the key it concerns, the
// line it is on (0 when unknown) and what to do about it.
type Error struct {
	// Key is the dotted path of the key, e.g. "control.listen".
	Key string
	// Line is the line of the key in the file, or 0.
	Line int
	// Msg says what is wrong and how to fix it.
	Msg string
}

// Error returns "line N: key: message".
func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("line %d: %s: %s", e.Line, e.Key, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.Key, e.Msg)
}

// decode overlays the YAML document in data on cfg, refusing unknown keys and
// values of the wrong type. It returns the line of every key it saw, so later
// checks can point at them.
func decode(data []byte, cfg *Config) error {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("not valid YAML: %w", err)
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return nil // an empty file means every default
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return &Error{Key: "(top level)", Line: root.Line, Msg: fmt.Sprintf("want a mapping of keys such as proxmox: and interval:, got a %s", kindName(root.Kind))}
	}
	d := decoder{lines: map[string]int{}}
	d.walk(root, reflect.ValueOf(cfg).Elem(), "")
	cfg.lines = d.lines
	return errors.Join(d.errs...)
}

type decoder struct {
	lines map[string]int
	errs  []error
}

var unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()

func (d *decoder) walk(n *yaml.Node, v reflect.Value, prefix string) {
	fields := yamlFields(v.Type())
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		key := k.Value
		if prefix != "" {
			key = prefix + "." + k.Value
		}
		idx, ok := fields[k.Value]
		if !ok {
			d.errs = append(d.errs, &Error{Key: key, Line: k.Line, Msg: unknownKeyMsg(k.Value, prefix, fields)})
			continue
		}
		if seen[k.Value] {
			d.errs = append(d.errs, &Error{Key: key, Line: k.Line, Msg: fmt.Sprintf("set twice (first on line %d); keep one", d.lines[key])})
			continue
		}
		seen[k.Value] = true
		d.lines[key] = k.Line
		fv := v.Field(idx)
		if fv.Kind() == reflect.Struct && !reflect.PointerTo(fv.Type()).Implements(unmarshalerType) {
			if val.Kind != yaml.MappingNode {
				d.errs = append(d.errs, &Error{Key: key, Line: val.Line, Msg: fmt.Sprintf("want a mapping (keys indented under %s:), got %s", k.Value, describe(val))})
				continue
			}
			d.walk(val, fv, key)
			continue
		}
		if val.Tag == "!!null" {
			switch fv.Kind() {
			case reflect.String, reflect.Slice:
				fv.Set(reflect.Zero(fv.Type()))
			default:
				d.errs = append(d.errs, &Error{Key: key, Line: k.Line, Msg: "has no value; give one or remove the key to use the default"})
			}
			continue
		}
		if err := val.Decode(fv.Addr().Interface()); err != nil {
			d.errs = append(d.errs, &Error{Key: key, Line: val.Line, Msg: typeMsg(fv, val, err)})
		}
	}
}

// yamlFields maps the yaml names of t's exported fields to their index.
func yamlFields(t reflect.Type) map[string]int {
	m := map[string]int{}
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if name != "" && name != "-" {
			m[name] = i
		}
	}
	return m
}

func typeMsg(fv reflect.Value, val *yaml.Node, err error) string {
	if reflect.PointerTo(fv.Type()).Implements(unmarshalerType) {
		return err.Error()
	}
	switch fv.Kind() {
	case reflect.Bool:
		return fmt.Sprintf("want true or false, got %s", describe(val))
	case reflect.String:
		return fmt.Sprintf("want a string, got %s; quote the value", describe(val))
	case reflect.Slice:
		return fmt.Sprintf("want a list such as [10.0.0.0/8], got %s", describe(val))
	}
	return err.Error()
}

func describe(n *yaml.Node) string {
	if n.Kind == yaml.ScalarNode {
		return fmt.Sprintf("%q", n.Value)
	}
	return "a " + kindName(n.Kind)
}

func unknownKeyMsg(name, prefix string, fields map[string]int) string {
	known := make([]string, 0, len(fields))
	for k := range fields {
		known = append(known, k)
	}
	sort.Strings(known)
	best := suggest.Closest(name, known)
	where := "at the top level"
	if prefix != "" {
		where = "under " + prefix
	}
	if best != "" {
		return fmt.Sprintf("unknown key; did you mean %s? (keys %s: %s)", best, where, strings.Join(known, ", "))
	}
	return fmt.Sprintf("unknown key; remove it (keys %s: %s)", where, strings.Join(known, ", "))
}
