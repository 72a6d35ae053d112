package metrics_test

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"

	"github.com/agentlab/terraform-provider-agentlab/reaper/metrics"
)

// The metrics reference and the example dashboard, relative to this package.
var (
	metricsDoc = filepath.Join("..", "..", "docs", "metrics.md")
	dashboard  = filepath.Join("..", "..", "deploy", "grafana", "agentlab-dashboard.json")
)

// metricName is what a metric name of the reaper's looks like.
var metricName = regexp.MustCompile(`^agentlab_[a-z0-9_]+$`)

// definedNames returns every metric name the package's source defines: each
// string literal of a non-test file that is an agentlab_ name. A metric is
// defined however its options are written (opts literal, NewDesc, a helper),
// so this finds names that a scrape omits, such as a vector without children.
func definedNames(t *testing.T) map[string]bool {
	t.Helper()
	fset := token.NewFileSet()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, path := range files {
		if strings.HasSuffix(path, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			lit, ok := n.(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				return true
			}
			if s, err := strconv.Unquote(lit.Value); err == nil && metricName.MatchString(s) {
				names[s] = true
			}
			return true
		})
	}
	if len(names) == 0 {
		t.Fatal("found no agentlab_ metric names in the package's source")
	}
	return names
}

// exposedMetric is a metric family as a scrape shows it.
type exposedMetric struct {
	typ    string   // counter, gauge, histogram
	labels []string // sorted label names
}

// exposed builds the metrics as agentlab-reaper serve does, touches every
// vector once so that it has a child, and returns what a scrape shows.
func exposed(t *testing.T) map[string]exposedMetric {
	t.Helper()
	m := metrics.New("test")
	j := metrics.NewJobs(m)
	j.WatchWorkspaces(m, func() int { return 1 })
	m.Heartbeat("ok")
	m.Renewal("ok")
	m.EgressApply("ok")
	m.SetEgressDropped(map[string]uint64{"100": 1}, map[string]uint64{"100": 64})
	rt := m.RoundTripper(roundTrip(func(*http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: http.StatusOK, Body: io.NopCloser(strings.NewReader(""))}, nil
	}))
	resp, err := rt.RoundTrip(httptest.NewRequest(http.MethodGet, "http://pve/api2/json/version", nil))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]exposedMetric{}
	for _, f := range fams {
		e := exposedMetric{typ: strings.ToLower(f.GetType().String())}
		if f.GetType() == dto.MetricType_UNTYPED {
			e.typ = "untyped"
		}
		seen := map[string]bool{}
		for _, mt := range f.GetMetric() {
			for _, l := range mt.GetLabel() {
				if !seen[l.GetName()] {
					seen[l.GetName()] = true
					e.labels = append(e.labels, l.GetName())
				}
			}
		}
		sort.Strings(e.labels)
		out[f.GetName()] = e
	}
	return out
}

type roundTrip func(*http.Request) (*http.Response, error)

func (f roundTrip) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// docRow is one row of the reference table in docs/metrics.md:
// | `name` | type | `label`, `label` or - | meaning |
type docRow struct {
	typ    string
	labels []string
	line   int
}

var backticked = regexp.MustCompile("`([^`]+)`")

func documented(t *testing.T) map[string]docRow {
	t.Helper()
	b, err := os.ReadFile(metricsDoc)
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]docRow{}
	for i, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, "| `agentlab_") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		if len(cells) != 4 {
			t.Errorf("docs/metrics.md:%d: want 4 cells (metric, type, labels, meaning), got %d", i+1, len(cells))
			continue
		}
		name := strings.Trim(strings.TrimSpace(cells[0]), "`")
		if !metricName.MatchString(name) {
			t.Errorf("docs/metrics.md:%d: %q is not a bare metric name (labels go in their own column)", i+1, name)
			continue
		}
		if _, dup := rows[name]; dup {
			t.Errorf("docs/metrics.md:%d: %s is listed twice", i+1, name)
		}
		r := docRow{typ: strings.TrimSpace(cells[1]), line: i + 1}
		for _, m := range backticked.FindAllStringSubmatch(cells[2], -1) {
			r.labels = append(r.labels, m[1])
		}
		sort.Strings(r.labels)
		rows[name] = r
	}
	if len(rows) == 0 {
		t.Fatal("docs/metrics.md has no | `agentlab_...` | rows")
	}
	return rows
}

// TestMetricsDocumented: docs/metrics.md lists exactly the metrics the
// reaper registers, each with the type and labels a scrape shows.
func TestMetricsDocumented(t *testing.T) {
	defined := definedNames(t)
	scraped := exposed(t)
	doc := documented(t)

	for name := range scraped {
		if strings.HasPrefix(name, "agentlab_") && !defined[name] {
			t.Errorf("a scrape shows %s, which no string literal of reaper/metrics names; extend definedNames", name)
		}
	}
	for name := range defined {
		if _, ok := doc[name]; !ok {
			t.Errorf("the reaper registers %s; docs/metrics.md does not list it", name)
		}
	}
	for name, row := range doc {
		if !defined[name] {
			t.Errorf("docs/metrics.md:%d lists %s, which the reaper does not register", row.line, name)
			continue
		}
		got, ok := scraped[name]
		if !ok {
			continue // defined but not touched by exposed: its type and labels are not checked
		}
		if row.typ != got.typ {
			t.Errorf("docs/metrics.md:%d: %s is a %s; the reaper exports a %s", row.line, name, row.typ, got.typ)
		}
		if !slices.Equal(row.labels, got.labels) {
			t.Errorf("docs/metrics.md:%d: %s has labels %q; the reaper exports %q", row.line, name, row.labels, got.labels)
		}
	}
}

// promName finds metric-like names in a PromQL expression.
var promName = regexp.MustCompile(`\bagentlab_[a-z0-9_]+`)

// exportedName reports whether name is a series the reaper exports: a
// metric it defines, or a histogram's _bucket, _sum or _count series.
func exportedName(defined map[string]bool, scraped map[string]exposedMetric, name string) bool {
	if defined[name] {
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && defined[base] && scraped[base].typ == "histogram" {
			return true
		}
	}
	return false
}

// TestMetricsPageNamesOnlyExportedSeries: the alert rules, the dashboard
// table and the prose of docs/metrics.md name only series the reaper
// exports.
func TestMetricsPageNamesOnlyExportedSeries(t *testing.T) {
	defined := definedNames(t)
	scraped := exposed(t)
	b, err := os.ReadFile(metricsDoc)
	if err != nil {
		t.Fatal(err)
	}
	for i, line := range strings.Split(string(b), "\n") {
		for _, name := range promName.FindAllString(line, -1) {
			if !exportedName(defined, scraped, name) {
				t.Errorf("docs/metrics.md:%d names %s, which the reaper does not export", i+1, name)
			}
		}
	}
}

// TestDashboardUsesRegisteredMetrics: the example Grafana dashboard parses,
// takes its Prometheus data source from a variable, and every agentlab_
// name in its queries is a metric the reaper registers (a histogram's
// _bucket, _sum and _count series included).
func TestDashboardUsesRegisteredMetrics(t *testing.T) {
	defined := definedNames(t)
	scraped := exposed(t)
	b, err := os.ReadFile(dashboard)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Title         string `json:"title"`
		UID           string `json:"uid"`
		SchemaVersion int    `json:"schemaVersion"`
		Templating    struct {
			List []struct {
				Name  string          `json:"name"`
				Type  string          `json:"type"`
				Query json.RawMessage `json:"query"`
			} `json:"list"`
		} `json:"templating"`
		Panels []panel `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboard, err)
	}
	if d.Title == "" || d.UID == "" {
		t.Errorf("dashboard title %q, uid %q: both must be set", d.Title, d.UID)
	}
	if d.SchemaVersion < 36 {
		t.Errorf("schemaVersion = %d; want >= 36 (Grafana 9.4 and later)", d.SchemaVersion)
	}

	dsVar := ""
	var queries []string
	for _, v := range d.Templating.List {
		switch v.Type {
		case "datasource":
			var q string
			if json.Unmarshal(v.Query, &q) == nil && q == "prometheus" {
				dsVar = "${" + v.Name + "}"
			}
		case "query":
			var q struct {
				Query string `json:"query"`
			}
			if json.Unmarshal(v.Query, &q) != nil {
				var s string
				_ = json.Unmarshal(v.Query, &s)
				q.Query = s
			}
			queries = append(queries, q.Query)
		}
	}
	if dsVar == "" {
		t.Fatal("the dashboard has no Prometheus data source variable (templating type datasource, query prometheus)")
	}

	var panels []panel
	var flatten func([]panel)
	flatten = func(ps []panel) {
		for _, p := range ps {
			panels = append(panels, p)
			flatten(p.Panels)
		}
	}
	flatten(d.Panels)
	graphs := 0
	for _, p := range panels {
		if p.Type == "row" {
			continue
		}
		graphs++
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		if p.Datasource.UID != dsVar {
			t.Errorf("panel %q: datasource uid %q; want %q", p.Title, p.Datasource.UID, dsVar)
		}
		for _, tg := range p.Targets {
			if tg.Datasource.UID != "" && tg.Datasource.UID != dsVar {
				t.Errorf("panel %q: a query's datasource uid %q; want %q", p.Title, tg.Datasource.UID, dsVar)
			}
			if len(promName.FindAllString(tg.Expr, -1)) == 0 {
				t.Errorf("panel %q: query %q uses no agentlab_ metric", p.Title, tg.Expr)
			}
			queries = append(queries, tg.Expr)
		}
	}
	if graphs < 8 {
		t.Errorf("the dashboard has %d panels; want at least 8", graphs)
	}

	for _, q := range queries {
		if err := balanced(q); err != "" {
			t.Errorf("the dashboard's query %q: %s", q, err)
		}
		for _, name := range promName.FindAllString(q, -1) {
			if !exportedName(defined, scraped, name) {
				t.Errorf("the dashboard queries %s (in %q), which the reaper does not export", name, q)
			}
		}
	}

	// The layout: unique panel ids, every panel within the 24-column grid.
	ids := map[int]string{}
	for _, p := range panels {
		if other, dup := ids[p.ID]; dup {
			t.Errorf("panels %q and %q share id %d", other, p.Title, p.ID)
		}
		ids[p.ID] = p.Title
		if p.GridPos.W <= 0 || p.GridPos.H <= 0 || p.GridPos.X < 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("panel %q: gridPos %+v is not within the 24 columns", p.Title, p.GridPos)
		}
	}
}

type panel struct {
	ID      int    `json:"id"`
	Title   string `json:"title"`
	GridPos struct {
		X, Y, W, H int
	} `json:"gridPos"`
	Type       string `json:"type"`
	Datasource struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	Targets []struct {
		Expr       string `json:"expr"`
		Datasource struct {
			UID string `json:"uid"`
		} `json:"datasource"`
	} `json:"targets"`
	Panels []panel `json:"panels"`
}

// balanced is a first check of a PromQL expression: its brackets pair up
// and its strings end. It returns what is wrong, or "".
func balanced(q string) string {
	var open []rune
	pair := map[rune]rune{')': '(', ']': '[', '}': '{'}
	inString := false
	for _, r := range q {
		switch {
		case r == '"':
			inString = !inString
		case inString:
		case r == '(' || r == '[' || r == '{':
			open = append(open, r)
		case pair[r] != 0:
			if len(open) == 0 || open[len(open)-1] != pair[r] {
				return "unbalanced " + string(r)
			}
			open = open[:len(open)-1]
		}
	}
	switch {
	case inString:
		return "unterminated string"
	case len(open) > 0:
		return "unclosed " + string(open[len(open)-1])
	}
	return ""
}
