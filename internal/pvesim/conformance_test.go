package pvesim_test

import (
	"encoding/json"
	"os"
	"slices"
	"testing"

	"github.com/agentlab/terraform-provider-agentlab/internal/pvesim"
	"github.com/agentlab/terraform-provider-agentlab/internal/pvesim/internal/schema"
)

// testdata/schema.json is PVE's API schema reduced to the paths the simulator
// serves. Regenerate it with
//
//	go run ./internal/pvesim/internal/schemagen -apidata ../shared/pve/apidata.json \
//	    -options internal/pvesim/qemu_options_gen.go
func loadSchema(t *testing.T) map[string]schema.Method {
	t.Helper()
	raw, err := os.ReadFile("testdata/schema.json")
	if err != nil {
		t.Fatalf("read reduced schema: %v", err)
	}
	var f schema.File
	if err := json.Unmarshal(raw, &f); err != nil {
		t.Fatalf("decode reduced schema: %v", err)
	}
	out := map[string]schema.Method{}
	for _, m := range f.Methods {
		out[m.Method+" "+m.Path] = m
	}
	return out
}

// TestRoutesExistInPVESchema checks every route and every parameter the
// simulator accepts against PVE's own API schema: same path and method, each
// parameter known to PVE with the same type and optionality, PVE's required
// parameters all accepted, the same enum values and bounds, the same type of
// "data" returned.
func TestRoutesExistInPVESchema(t *testing.T) {
	pve := loadSchema(t)
	for _, r := range pvesim.Routes() {
		key := r.Method + " " + r.Path
		t.Run(key, func(t *testing.T) {
			m, ok := pve[key]
			if !ok {
				t.Fatalf("%s is not in PVE's API schema", key)
			}
			if r.Protected != m.Protected {
				t.Errorf("protected=%v; PVE protected=%v (decides pveproxy or pvedaemon under the capacity model)", r.Protected, m.Protected)
			}
			if r.Returns != m.Returns {
				t.Errorf("returns %q; PVE returns %q", r.Returns, m.Returns)
			}
			accepted := map[string]bool{}
			for _, p := range r.Params {
				accepted[p.Name] = true
				sp, ok := m.Params[p.Name]
				if !ok {
					t.Errorf("parameter %q is not in PVE's schema", p.Name)
					continue
				}
				if p.Type != sp.Type {
					t.Errorf("parameter %q type %q; PVE %q", p.Name, p.Type, sp.Type)
				}
				if p.Optional != sp.Optional {
					t.Errorf("parameter %q optional=%v; PVE optional=%v", p.Name, p.Optional, sp.Optional)
				}
				if p.Format != "" && p.Format != sp.Format {
					t.Errorf("parameter %q format %q; PVE %q", p.Name, p.Format, sp.Format)
				}
				if len(p.Enum) > 0 && !slices.Equal(p.Enum, sp.Enum) {
					t.Errorf("parameter %q enum %v; PVE %v", p.Name, p.Enum, sp.Enum)
				}
				if p.Pattern != "" && p.Pattern != sp.Pattern {
					t.Errorf("parameter %q pattern %q; PVE %q", p.Name, p.Pattern, sp.Pattern)
				}
				if p.HasMin && (sp.Minimum == nil || *sp.Minimum != p.Minimum) {
					t.Errorf("parameter %q minimum %v; PVE %v", p.Name, p.Minimum, sp.Minimum)
				}
				if p.HasMax && (sp.Maximum == nil || *sp.Maximum != p.Maximum) {
					t.Errorf("parameter %q maximum %v; PVE %v", p.Name, p.Maximum, sp.Maximum)
				}
				if p.MaxLength != 0 && p.MaxLength != sp.MaxLength {
					t.Errorf("parameter %q maxLength %d; PVE %d", p.Name, p.MaxLength, sp.MaxLength)
				}
			}
			for name, sp := range m.Params {
				if !sp.Optional && !accepted[name] {
					t.Errorf("PVE requires parameter %q; the simulator does not accept it", name)
				}
			}
		})
	}
}

// TestRouteTableHasNoDuplicates guards the router: one handler per method and path.
func TestRouteTableHasNoDuplicates(t *testing.T) {
	seen := map[string]bool{}
	for _, r := range pvesim.Routes() {
		key := r.Method + " " + r.Path
		if seen[key] {
			t.Errorf("route %s appears twice", key)
		}
		seen[key] = true
	}
}
