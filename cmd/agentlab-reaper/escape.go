package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"unicode"
	"unicode/utf8"
)

// printable returns s safe to print on a terminal: control characters (an
// escape sequence starts with ESC, 0x1b), tabs and newlines (which would break
// a table's columns and rows), Unicode format characters (bidirectional
// overrides that reorder what a reader sees) and invalid UTF-8 bytes are
// written as Go escapes (\x1b, \n, \u202e, \xff). Every text the operator
// commands print from the daemon goes through it: an owner, a name or a
// reason is whatever a Terraform user or a VM's description said.
func printable(s string) string {
	if !needsEscape(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b.WriteString(`\x`)
			b.WriteString(strconv.FormatUint(uint64(s[i])|0x100, 16)[1:])
		case escaped(r):
			q := strconv.QuoteRuneToASCII(r) // e.g. '\x1b', '\n', '\u202e'
			b.WriteString(q[1 : len(q)-1])
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

// escaped reports whether r must not reach a terminal as it is.
func escaped(r rune) bool { return unicode.IsControl(r) || unicode.Is(unicode.Cf, r) }

// needsEscape reports whether printable must rewrite s.
func needsEscape(s string) bool {
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && size == 1) || escaped(r) {
			return true
		}
		i += size
	}
	return false
}

// printableLines is printable for text whose own line breaks are meant (an
// error with a hint on its second line): each line is escaped.
func printableLines(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = printable(l)
	}
	return strings.Join(lines, "\n")
}

// table prints rows aligned in columns; every cell goes through printable.
type table struct {
	tw *tabwriter.Writer
}

// newTable starts a table on w with a header row.
func newTable(w io.Writer, header ...string) *table {
	t := &table{tw: tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)}
	t.row(toAny(header)...)
	return t
}

// row prints one row; each cell is formatted with fmt.Sprint and escaped.
func (t *table) row(cells ...any) {
	for i, c := range cells {
		if i > 0 {
			io.WriteString(t.tw, "\t")
		}
		io.WriteString(t.tw, printable(fmt.Sprint(c)))
	}
	io.WriteString(t.tw, "\n")
}

// flush writes the table out.
func (t *table) flush() error { return t.tw.Flush() }

func toAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}
