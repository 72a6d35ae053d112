package config

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// operatorGuide documents every key of the file in its "Every key" table.
var operatorGuide = filepath.Join("..", "..", "docs", "operator-guide.md")

// keys returns every leaf key of the configuration file, dotted, in the
// order of the Config struct.
func keys(t reflect.Type, prefix string) []string {
	unmarshaler := reflect.TypeFor[yaml.Unmarshaler]()
	var out []string
	for f := range t.Fields() {
		tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if tag == "" || tag == "-" {
			continue
		}
		if f.Type.Kind() == reflect.Struct && !reflect.PointerTo(f.Type).Implements(unmarshaler) {
			out = append(out, keys(f.Type, prefix+tag+".")...)
			continue
		}
		out = append(out, prefix+tag)
	}
	return out
}

var docKey = regexp.MustCompile("^`([a-z_]+(?:\\.[a-z_]+)*)`$")

// documentedKeys reads the "Every key" table of the operator guide: rows
// | `key` | `default` | meaning |, in order, with their lines.
func documentedKeys(t *testing.T) (keys []string, defaults map[string]string, lines map[string]int) {
	t.Helper()
	b, err := os.ReadFile(operatorGuide)
	if err != nil {
		t.Fatal(err)
	}
	defaults, lines = map[string]string{}, map[string]int{}
	in := false
	for i, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "#") {
			in = strings.TrimSpace(strings.TrimLeft(line, "#")) == "Every key"
			continue
		}
		if !in || !strings.HasPrefix(line, "| `") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		if len(cells) != 3 {
			t.Errorf("docs/operator-guide.md:%d: want 3 cells (key, default, meaning), got %d", i+1, len(cells))
			continue
		}
		m := docKey.FindStringSubmatch(strings.TrimSpace(cells[0]))
		def := strings.TrimSpace(cells[1])
		if m == nil || len(def) < 2 || def[0] != '`' || def[len(def)-1] != '`' {
			t.Errorf("docs/operator-guide.md:%d: want | `key` | `default` | meaning |", i+1)
			continue
		}
		if _, dup := lines[m[1]]; dup {
			t.Errorf("docs/operator-guide.md:%d: %s is listed twice", i+1, m[1])
		}
		keys = append(keys, m[1])
		defaults[m[1]] = def[1 : len(def)-1]
		lines[m[1]] = i + 1
	}
	if len(keys) == 0 {
		t.Fatal("docs/operator-guide.md has no \"Every key\" table")
	}
	return keys, defaults, lines
}

// TestOperatorGuideListsEveryKey: the operator guide's table lists exactly
// the keys of the file, and its defaults, read as a configuration file, are
// Default().
func TestOperatorGuideListsEveryKey(t *testing.T) {
	want := keys(reflect.TypeFor[Config](), "")
	got, defaults, lines := documentedKeys(t)
	for _, k := range want {
		if !slices.Contains(got, k) {
			t.Errorf("%s is a key of reaper.yaml; docs/operator-guide.md's \"Every key\" table does not list it", k)
		}
	}
	for _, k := range got {
		if !slices.Contains(want, k) {
			t.Errorf("docs/operator-guide.md:%d lists %s, which is not a key of reaper.yaml", lines[k], k)
		}
	}
	if t.Failed() {
		return
	}

	// The defaults column, written out as a file, must parse to Default().
	var sb strings.Builder
	section := ""
	for _, k := range want {
		parent, leaf, nested := strings.Cut(k, ".")
		if !nested {
			section = ""
			fmt.Fprintf(&sb, "%s: %s\n", k, defaults[k])
			continue
		}
		if parent != section {
			section = parent
			fmt.Fprintf(&sb, "%s:\n", parent)
		}
		fmt.Fprintf(&sb, "  %s: %s\n", leaf, defaults[k])
	}
	cfg, err := Parse([]byte(sb.String()))
	if err != nil {
		t.Fatalf("the documented defaults do not parse: %v\n%s", err, sb.String())
	}
	cfg.lines = nil
	def := Default()
	if !reflect.DeepEqual(cfg, def) {
		got, _ := yaml.Marshal(cfg)
		want, _ := yaml.Marshal(def)
		wantLines := strings.Split(string(want), "\n")
		for i, line := range strings.Split(string(got), "\n") {
			if i < len(wantLines) && line != wantLines[i] {
				t.Errorf("docs/operator-guide.md's default reads as %q; Default() is %q", strings.TrimSpace(line), strings.TrimSpace(wantLines[i]))
			}
		}
		if !t.Failed() {
			t.Errorf("the documented defaults differ from Default():\n got %+v\nwant %+v", cfg, def)
		}
	}
}
