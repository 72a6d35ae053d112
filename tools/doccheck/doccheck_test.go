package doccheck

import (
	"bytes"
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"unicode"
)

// root is the repository, relative to this package.
var root = filepath.Join("..", "..")

// pages returns the hand-written pages: docs/*.md (tfplugindocs renders
// only index.md at that level, from a hand-written template) and README.md.
func pages(t *testing.T) map[string]string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, filepath.Join(root, "README.md"))
	out := map[string]string{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(root, f)
		out[rel] = string(b)
	}
	return out
}

// codeLines returns what a page shows as code: each line of a fenced block
// and each inline code span, with the line it is on.
func codeLines(page string) []codeLine {
	var out []codeLine
	fenced := false
	for i, line := range strings.Split(page, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			fenced = !fenced
			continue
		}
		if fenced {
			if loc := comment.FindStringIndex(line); loc != nil {
				line = line[:loc[0]]
			}
			out = append(out, codeLine{i + 1, line})
			continue
		}
		for _, m := range inlineCode.FindAllStringSubmatch(line, -1) {
			out = append(out, codeLine{i + 1, m[1]})
		}
	}
	return out
}

type codeLine struct {
	line int
	text string
}

var inlineCode = regexp.MustCompile("`([^`]+)`")

// reaperCall finds "agentlab-reaper SUBCOMMAND ARGS" where code runs it: at
// the start of a line (after a "# " or "$ " prompt), by absolute path
// (ExecStart=/usr/bin/agentlab-reaper), or after && || ;. Its arguments end
// at the next shell operator or comment.
var reaperCall = regexp.MustCompile(`(?:^\s*(?:[#$]\s+)?|(?:^|[\s=])(?:/[\w.-]+)+/|(?:&&|\|\||;)\s*)agentlab-reaper ([a-z][a-z-]*)([^|;&#]*)`)

// comment finds where a trailing shell comment starts.
var comment = regexp.MustCompile(`\s#(\s|$)`)

// flagArg is a long flag in a command's arguments.
var flagArg = regexp.MustCompile(`(?:^|[\s\[])--([a-z][a-z-]*)`)

var (
	buildOnce sync.Once
	reaperBin string
	buildErr  error
)

// reaper builds agentlab-reaper once for the package's tests.
func reaper(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "doccheck")
		if err != nil {
			buildErr = err
			return
		}
		reaperBin = filepath.Join(dir, "agentlab-reaper")
		cmd := exec.Command("go", "build", "-o", reaperBin, "./cmd/agentlab-reaper")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = errors.New(string(out) + err.Error())
		}
	})
	if buildErr != nil {
		t.Fatalf("go build ./cmd/agentlab-reaper: %v", buildErr)
	}
	return reaperBin
}

func TestMain(m *testing.M) {
	code := m.Run()
	if reaperBin != "" {
		os.RemoveAll(filepath.Dir(reaperBin))
	}
	os.Exit(code)
}

// help returns what `agentlab-reaper SUB -h` prints, and whether SUB is a
// subcommand at all.
func help(t *testing.T, bin, sub string) (string, bool) {
	t.Helper()
	var out bytes.Buffer
	cmd := exec.Command(bin, sub, "-h")
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if strings.Contains(out.String(), "unknown command") {
		return out.String(), false
	}
	if err != nil {
		t.Fatalf("agentlab-reaper %s -h: %v\n%s", sub, err, out.String())
	}
	return out.String(), true
}

// TestReaperCommandsExist: every `agentlab-reaper SUBCOMMAND --flag ...`
// the docs show names a subcommand of the binary and flags that subcommand
// takes.
func TestReaperCommandsExist(t *testing.T) {
	bin := reaper(t)
	helps := map[string]string{}
	valid := map[string]bool{}
	calls := 0
	for name, page := range pages(t) {
		for _, cl := range codeLines(page) {
			for _, m := range reaperCall.FindAllStringSubmatch(cl.text, -1) {
				sub, rest := m[1], m[2]
				calls++
				if _, seen := valid[sub]; !seen {
					helps[sub], valid[sub] = help(t, bin, sub)
				}
				if !valid[sub] {
					t.Errorf("%s:%d: agentlab-reaper has no subcommand %q (in %q)", name, cl.line, sub, strings.TrimSpace(cl.text))
					continue
				}
				for _, f := range flagArg.FindAllStringSubmatch(rest, -1) {
					if !strings.Contains(helps[sub], "  -"+f[1]+" ") && !strings.Contains(helps[sub], "  -"+f[1]+"\n") {
						t.Errorf("%s:%d: agentlab-reaper %s takes no --%s (in %q)", name, cl.line, sub, f[1], strings.TrimSpace(cl.text))
					}
				}
			}
		}
	}
	if calls < 20 {
		t.Errorf("found %d agentlab-reaper commands in the docs; the scan is broken", calls)
	}
}

// TestReaperCommandsCheckFails: the check above can fail.
func TestReaperCommandsCheckFails(t *testing.T) {
	bin := reaper(t)
	if _, ok := help(t, bin, "reap-now"); ok {
		t.Error("agentlab-reaper reap-now is taken for a subcommand")
	}
	out, ok := help(t, bin, "leases")
	if !ok || strings.Contains(out, "  -everything") || !strings.Contains(out, "  -all") {
		t.Errorf("leases -h: subcommand %v, output %q: want -all and no -everything", ok, out)
	}
	m := reaperCall.FindStringSubmatch("# agentlab-reaper renew 102 4h --force | tee x")
	if m == nil || m[1] != "renew" || strings.Contains(m[2], "tee") {
		t.Errorf("reaperCall on a console line = %q", m)
	}
}

// corpus returns every string the programs can print: the string literals
// of the non-test Go files (concatenations of literals joined, so a message
// split over source lines is whole) and the shell scripts' text.
func corpus(t *testing.T) []string {
	t.Helper()
	var out []string
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case ".git", "testdata", "bin", "dist", "node_modules", ".demo", ".bench":
				return filepath.SkipDir
			}
			return nil
		}
		switch {
		case strings.HasSuffix(path, ".sh"):
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			out = append(out, string(b))
		case strings.HasSuffix(path, ".go") && !strings.HasSuffix(path, "_test.go"):
			f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
			if err != nil {
				return err
			}
			ast.Inspect(f, func(n ast.Node) bool {
				switch n := n.(type) {
				case *ast.BasicLit:
					if s, ok := literal(n); ok {
						out = append(out, s)
					}
				case *ast.BinaryExpr:
					if n.Op == token.ADD {
						out = append(out, joined(n)...)
					}
				}
				return true
			})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func literal(e ast.Expr) (string, bool) {
	lit, ok := e.(*ast.BasicLit)
	if !ok || lit.Kind != token.STRING {
		return "", false
	}
	s, err := strconv.Unquote(lit.Value)
	return s, err == nil
}

// joined returns the runs of adjacent string literals of a + chain.
func joined(e *ast.BinaryExpr) []string {
	var operands []ast.Expr
	var walk func(ast.Expr)
	walk = func(x ast.Expr) {
		if b, ok := x.(*ast.BinaryExpr); ok && b.Op == token.ADD {
			walk(b.X)
			walk(b.Y)
			return
		}
		if p, ok := x.(*ast.ParenExpr); ok {
			walk(p.X)
			return
		}
		operands = append(operands, x)
	}
	walk(e)
	var runs []string
	var cur strings.Builder
	flush := func() {
		if cur.Len() > 0 {
			runs = append(runs, cur.String())
			cur.Reset()
		}
	}
	for _, o := range operands {
		if s, ok := literal(o); ok {
			cur.WriteString(s)
			continue
		}
		flush()
	}
	flush()
	return runs
}

// quoted returns the fragments of the messages a page quotes in its ```text
// blocks: each line, split at "…" (which stands for what varies).
func quoted(page string) []codeLine {
	var out []codeLine
	in := false
	for i, line := range strings.Split(page, "\n") {
		trimmed := strings.TrimSpace(line)
		switch {
		case trimmed == "```text":
			in = true
			continue
		case strings.HasPrefix(trimmed, "```"):
			in = false
			continue
		}
		if !in {
			continue
		}
		for _, frag := range strings.Split(line, "…") {
			if frag = strings.TrimSpace(frag); len(frag) >= 4 {
				out = append(out, codeLine{i + 1, frag})
			}
		}
	}
	return out
}

// TestQuotedMessagesExist: every message the troubleshooting page quotes is
// still printed by some program of the repository.
func TestQuotedMessagesExist(t *testing.T) {
	strs := corpus(t)
	b, err := os.ReadFile(filepath.Join(root, "docs", "troubleshooting.md"))
	if err != nil {
		t.Fatal(err)
	}
	frags := quoted(string(b))
	if len(frags) < 40 {
		t.Fatalf("found %d quoted fragments in docs/troubleshooting.md; the scan is broken", len(frags))
	}
	for _, f := range frags {
		if !slices.ContainsFunc(strs, func(s string) bool { return strings.Contains(s, f.text) }) {
			t.Errorf("docs/troubleshooting.md:%d quotes %q, which no program of the repository prints any more", f.line, f.text)
		}
	}
	// The check can fail: a message that is not in the code is not found.
	if slices.ContainsFunc(strs, func(s string) bool { return strings.Contains(s, "the reaper ate the sandbox") }) {
		t.Error("the corpus holds a message no program prints")
	}
}

// pending are pages the index links that land on another branch; a link to
// one is checked once the page exists. Empty this once they have landed.
var pending = map[string]bool{}

// mdLink finds a Markdown link's target.
var mdLink = regexp.MustCompile(`\]\(([^)\s]+)\)`)

// slug is GitHub's anchor for a heading: lower case, punctuation dropped,
// spaces as hyphens.
func slug(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(heading)) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

// anchors returns the anchors of a Markdown page's headings (fenced blocks
// skipped; a repeated heading gets -1, -2 as on GitHub).
func anchors(page string) map[string]bool {
	out := map[string]bool{}
	fenced := false
	for _, line := range strings.Split(page, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			fenced = !fenced
			continue
		}
		if fenced || !strings.HasPrefix(line, "#") {
			continue
		}
		s := slug(strings.TrimLeft(line, "#"))
		a := s
		for n := 1; out[a]; n++ {
			a = s + "-" + strconv.Itoa(n)
		}
		out[a] = true
	}
	return out
}

// TestLinksResolve: every relative link of the hand-written pages (and of
// docs/index.md) names a file of the repository and, with #anchor, a
// heading of that page.
func TestLinksResolve(t *testing.T) {
	links := 0
	for name, page := range pages(t) {
		fenced := false
		for i, line := range strings.Split(page, "\n") {
			if strings.HasPrefix(strings.TrimSpace(line), "```") {
				fenced = !fenced
			}
			if fenced {
				continue
			}
			for _, m := range mdLink.FindAllStringSubmatch(line, -1) {
				target := m[1]
				if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
					continue
				}
				links++
				file, anchor, _ := strings.Cut(target, "#")
				rel := name
				if file != "" {
					rel = filepath.Join(filepath.Dir(name), file)
				}
				_, err := os.Stat(filepath.Join(root, rel))
				switch {
				case err != nil && pending[filepath.ToSlash(rel)]:
					t.Logf("%s:%d links %s, which lands on another branch", name, i+1, rel)
					continue
				case err != nil:
					t.Errorf("%s:%d links %s, which does not exist", name, i+1, target)
					continue
				}
				if anchor == "" || !strings.HasSuffix(rel, ".md") {
					continue
				}
				b, err := os.ReadFile(filepath.Join(root, rel))
				if err != nil {
					t.Fatal(err)
				}
				if !anchors(string(b))[anchor] {
					t.Errorf("%s:%d links %s, but %s has no heading #%s", name, i+1, target, rel, anchor)
				}
			}
		}
	}
	if links < 30 {
		t.Errorf("found %d relative links; the scan is broken", links)
	}
	if got := slug("Reaper: one tick over 10,000 VMs"); got != "reaper-one-tick-over-10000-vms" {
		t.Errorf("slug = %q", got)
	}
}

// TestIndexLinksEveryPage: docs/index.md links every page of docs/.
func TestIndexLinksEveryPage(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(root, "docs", "index.md"))
	if err != nil {
		t.Fatal(err)
	}
	linked := map[string]bool{}
	for _, m := range mdLink.FindAllStringSubmatch(string(b), -1) {
		file, _, _ := strings.Cut(m[1], "#")
		linked[filepath.Clean(file)] = true
	}
	err = filepath.WalkDir(filepath.Join(root, "docs"), func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".md") {
			return err
		}
		rel, _ := filepath.Rel(filepath.Join(root, "docs"), path)
		if rel != "index.md" && !linked[rel] {
			t.Errorf("docs/index.md does not link docs/%s; add it to templates/index.md.tmpl and run make generate", rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for p := range pending {
		if !linked[strings.TrimPrefix(p, "docs/")] {
			t.Errorf("docs/index.md does not link %s", p)
		}
	}
}
