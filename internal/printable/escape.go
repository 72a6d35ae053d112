package printable

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Escape returns s safe to print on a terminal: control characters (IsControl:
// an escape sequence starts with ESC, 0x1b; tabs and newlines would break a
// table's columns and rows), Unicode format characters (bidirectional
// overrides that reorder what a reader sees) and bytes that are not UTF-8 are
// written as Go escapes (\x1b, \n, \u202e, \xff). Printable text comes back
// unchanged. agentlab-reaper prints everything it shows through it: an owner,
// a name or a reason is whatever a Terraform user or a VM's description said.
func Escape(s string) string {
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

// EscapeLines is Escape for text whose own line breaks are meant (an error
// with a hint on its second line): each line is escaped.
func EscapeLines(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = Escape(l)
	}
	return strings.Join(lines, "\n")
}

// escaped reports whether r must not reach a terminal as it is.
func escaped(r rune) bool { return IsControl(r) || unicode.Is(unicode.Cf, r) }

// needsEscape reports whether Escape must rewrite s.
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
