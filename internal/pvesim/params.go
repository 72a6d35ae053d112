package pvesim

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
)

var (
	integerRE = regexp.MustCompile(`^[+-]?\d+$`)
	numberRE  = regexp.MustCompile(`^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$`)
	// patternCache holds compiled, anchored Param patterns.
	patternCache sync.Map
)

func anchored(pattern string) *regexp.Regexp {
	if re, ok := patternCache.Load(pattern); ok {
		return re.(*regexp.Regexp)
	}
	re := regexp.MustCompile(`^(?:` + pattern + `)$`)
	patternCache.Store(pattern, re)
	return re
}

// validateParams checks raw against the route's parameters like PVE's
// JSONSchema validator and returns the parameter values, path variables
// included. Errors use PVE's texts.
func validateParams(rt *Route, raw map[string][]string, vars map[string]string) (map[string]string, *apiError) {
	errs := map[string]string{}
	out := map[string]string{}
	for k, v := range vars {
		raw[k] = []string{v}
	}
	names := make([]string, 0, len(raw))
	for k := range raw {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, name := range names {
		vals := raw[name]
		p := rt.findParam(name)
		if p == nil {
			errs[name] = "property is not defined in schema and the schema does not allow additional properties"
			continue
		}
		if len(vals) == 0 {
			continue // "key" without "=": undefined, like PVE
		}
		val := vals[len(vals)-1]
		if len(vals) > 1 {
			if !p.List {
				errs[name] = fmt.Sprintf("type check ('%s') failed - got ARRAY", p.Type)
				continue
			}
			val = strings.Join(vals, ",")
		}
		if val == "\x00HASH" {
			errs[name] = fmt.Sprintf("type check ('%s') failed - got HASH", p.Type)
			continue
		}
		if msg := checkValue(p, val); msg != "" {
			errs[name] = msg
			continue
		}
		out[name] = val
	}
	for _, p := range rt.Params {
		if p.Optional || strings.HasSuffix(p.Name, "[n]") {
			continue
		}
		if _, ok := out[p.Name]; !ok {
			if _, bad := errs[p.Name]; !bad {
				errs[p.Name] = "property is missing and it is not optional"
			}
		}
	}
	if len(errs) > 0 {
		return nil, paramError(errs)
	}
	return out, nil
}

// checkValue returns PVE's error text for a bad value, or "".
func checkValue(p *Param, v string) string {
	switch p.Type {
	case "boolean":
		if v != "0" && v != "1" {
			return fmt.Sprintf("type check ('boolean') failed - got '%s'", v)
		}
	case "integer":
		if !integerRE.MatchString(v) {
			return fmt.Sprintf("type check ('integer') failed - got '%s'", v)
		}
	case "number":
		if !numberRE.MatchString(v) {
			return fmt.Sprintf("type check ('number') failed - got '%s'", v)
		}
	}
	if msg := checkFormat(p.Format, v); msg != "" {
		return "invalid format - " + msg + "\n"
	}
	if p.Pattern != "" && !anchored(p.Pattern).MatchString(v) {
		return "value does not match the regex pattern"
	}
	if p.MaxLength > 0 && len([]rune(v)) > p.MaxLength {
		return fmt.Sprintf("value may only be %d characters long", p.MaxLength)
	}
	if p.Type == "integer" || p.Type == "number" {
		f, err := strconv.ParseFloat(v, 64)
		if err == nil {
			if p.HasMax && f > p.Maximum {
				return fmt.Sprintf("value must have a maximum value of %s", fmtNum(p.Maximum))
			}
			if p.HasMin && f < p.Minimum {
				return fmt.Sprintf("value must have a minimum value of %s", fmtNum(p.Minimum))
			}
		}
	}
	if len(p.Enum) > 0 {
		for _, e := range p.Enum {
			if e == v {
				return ""
			}
		}
		return fmt.Sprintf("value '%s' does not have a value in the enumeration '%s'", v, strings.Join(p.Enum, ", "))
	}
	return ""
}

func fmtNum(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

// Helpers for handlers.

func (c *call) has(name string) bool { _, ok := c.params[name]; return ok }

func (c *call) str(name string) string { return c.params[name] }

// flag reports whether a boolean parameter is set to 1.
func (c *call) flag(name string) bool { return c.params[name] == "1" }

// integer returns an integer parameter, or def when absent.
func (c *call) integer(name string, def int) int {
	v, ok := c.params[name]
	if !ok {
		return def
	}
	n, err := strconv.Atoi(strings.TrimPrefix(v, "+"))
	if err != nil {
		return def
	}
	return n
}

var (
	storageIDRE = regexp.MustCompile(`(?i)^[a-z][a-z0-9\-_.]*[a-z0-9]$`)
	configIDRE  = regexp.MustCompile(`^[a-z][a-z0-9_]{0,38}[a-z0-9]$`)
	vmidRE      = regexp.MustCompile(`^[1-9][0-9]{2,8}$`)
	tagRE       = regexp.MustCompile(`(?i)^[a-z0-9_][a-z0-9_\-+.]*$`)
	urlEncRE    = regexp.MustCompile(`^[-%a-zA-Z0-9_.!~*'()]*$`)
	poolIDRE    = regexp.MustCompile(`^[A-Za-z0-9\-_]+(/[A-Za-z0-9\-_]+){0,2}$`)
)

// checkFormat checks the named PVE formats the simulator's routes use and
// returns PVE's message (without "invalid format - "), or "".
func checkFormat(format, v string) string {
	switch format {
	case "pve-vmid":
		if !vmidRE.MatchString(v) {
			return "value does not look like a valid VM ID"
		}
	case "pve-node":
		if !nodeNameRE.MatchString(v) {
			return "value does not look like a valid node name"
		}
	case "dns-name":
		if !dnsNameRE.MatchString(v) {
			return "value does not look like a valid DNS name"
		}
	case "pve-storage-id":
		if len(v) < 2 {
			return fmt.Sprintf("storage ID '%s' cannot be shorter than 2 characters", v)
		}
		if !storageIDRE.MatchString(v) {
			return fmt.Sprintf("storage ID '%s' contains illegal characters", v)
		}
	case "pve-configid":
		if !configIDRE.MatchString(v) {
			return fmt.Sprintf("invalid configuration ID '%s'", v)
		}
	case "pve-configid-list":
		for _, id := range splitList(v) {
			if !configIDRE.MatchString(id) {
				return fmt.Sprintf("invalid configuration ID '%s'", id)
			}
		}
	case "pve-tag-list":
		for _, t := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ';' || r == ' ' }) {
			if !tagRE.MatchString(t) {
				return "invalid characters in tag"
			}
		}
	case "urlencoded":
		if !urlEncRE.MatchString(v) {
			return "invalid urlencoded string: " + v
		}
	case "pve-poolid":
		if !poolIDRE.MatchString(v) {
			return fmt.Sprintf("invalid pool ID '%s'", v)
		}
	case "pve-storage-content":
		if !setOf("images", "rootdir", "vztmpl", "iso", "backup", "snippets", "import")[v] {
			return fmt.Sprintf("invalid content type '%s'", v)
		}
	}
	return ""
}
