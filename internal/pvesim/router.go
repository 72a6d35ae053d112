package pvesim

import (
	"net/url"
	"strconv"
	"strings"
)

// Route is one API method the simulator serves: PVE's method and path
// template, and the parameters it accepts. The route table is data so that
// the conformance tests can compare it with PVE's API schema.
type Route struct {
	// Method is GET, POST, PUT or DELETE.
	Method string
	// Path is PVE's path template relative to /api2/json, e.g.
	// /nodes/{node}/qemu/{vmid}/config.
	Path string
	// Params are the accepted parameters, path variables included, as PVE's
	// schema lists them.
	Params []Param
	// Returns is the JSON type of "data" on success: "string", "object",
	// "array", "null" or "integer".
	Returns string
	// NoAuth marks calls that need no credentials (POST /access/ticket).
	NoAuth bool
	// Upload marks multipart file uploads (no body size limit, no CSRF check).
	Upload bool
	// Protected marks calls pveproxy forwards to pvedaemon (the schema's
	// "protected" flag); under a capacity model they take a pvedaemon worker.
	Protected bool

	handle handlerFunc
}

// Param is one accepted parameter of a Route.
type Param struct {
	// Name is the parameter's name; "net[n]" stands for net0, net1, ...
	Name string
	// Type is PVE's schema type: string, integer, boolean or number.
	Type string
	// Optional is false for required parameters.
	Optional bool
	// Enum lists the allowed values, if restricted.
	Enum []string
	// Format is PVE's named format (pve-vmid, dns-name, ...), if any; the
	// simulator checks the common ones.
	Format string
	// Pattern is a regular expression the whole value must match.
	Pattern string
	// Minimum and Maximum bound integers and numbers when HasMin/HasMax.
	Minimum, Maximum float64
	HasMin, HasMax   bool
	// MaxLength bounds strings when not zero.
	MaxLength int
	// List marks "-list" formats: repeated values are joined with commas.
	List bool
	// MaxIndex is the highest n of a "[n]" family (net0..net31: 31).
	MaxIndex int
}

// handlerFunc answers a call whose parameters were validated. It returns the
// "data" of the answer.
type handlerFunc func(c *call) (any, error)

// Routes returns the simulator's route table.
func Routes() []Route {
	rs := routeTable()
	out := make([]Route, len(rs))
	for i, r := range rs {
		out[i] = *r
		out[i].Params = append([]Param(nil), r.Params...)
	}
	return out
}

type router struct {
	routes []*Route
}

func newRouter(rs []*Route) *router { return &router{routes: rs} }

// match finds the route for method and path. It returns the route (nil when
// none), the path variables, and whether any route has that path.
func (rt *router) match(method, path string) (*Route, map[string]string, bool) {
	segs := splitPath(path)
	pathKnown := false
	for _, r := range rt.routes {
		vars, ok := matchTemplate(r.Path, segs)
		if !ok {
			continue
		}
		pathKnown = true
		if r.Method == method {
			return r, vars, true
		}
	}
	return nil, nil, pathKnown
}

func splitPath(p string) []string {
	p = strings.Trim(p, "/")
	if p == "" {
		return nil
	}
	return strings.Split(p, "/")
}

func matchTemplate(tmpl string, segs []string) (map[string]string, bool) {
	ts := splitPath(tmpl)
	if len(ts) != len(segs) {
		return nil, false
	}
	var vars map[string]string
	for i, t := range ts {
		seg, err := url.PathUnescape(segs[i])
		if err != nil {
			return nil, false
		}
		if strings.HasPrefix(t, "{") && strings.HasSuffix(t, "}") {
			if seg == "" {
				return nil, false
			}
			if vars == nil {
				vars = map[string]string{}
			}
			vars[t[1:len(t)-1]] = seg
			continue
		}
		if t != seg {
			return nil, false
		}
	}
	return vars, true
}

// findParam returns the parameter spec for name, resolving "[n]" families.
func (r *Route) findParam(name string) *Param {
	for i := range r.Params {
		p := &r.Params[i]
		if p.Name == name {
			return p
		}
		if base, ok := strings.CutSuffix(p.Name, "[n]"); ok {
			if rest, ok := strings.CutPrefix(name, base); ok && isDigits(rest) {
				if n, _ := strconv.Atoi(rest); n <= p.MaxIndex && (rest == "0" || rest[0] != '0') {
					return p
				}
			}
		}
	}
	return nil
}

func isDigits(s string) bool {
	if s == "" || len(s) > 3 {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
