// Package printable is the rule for free text that AgentLab writes into a
// VM's config and that operators later read in a terminal: no control
// characters. A newline or an escape sequence in an owner or a tag would let
// whoever sets it rewrite what `agentlab-reaper leases` shows.
package printable

import (
	"fmt"
	"unicode/utf8"
)

// ControlError is the first control character found in a string.
type ControlError struct {
	// Rune is the character, e.g. '\n' or '\x1b'.
	Rune rune
	// Offset is its byte offset in the string.
	Offset int
}

// Error names the character by its code point and escape, never by the text
// around it (which may be a secret).
func (e *ControlError) Error() string {
	return fmt.Sprintf("control character %U (%q) at byte %d", e.Rune, e.Rune, e.Offset)
}

// IsControl reports whether r is a control character: C0 (U+0000-U+001F,
// tab and newline included), DEL (U+007F) or C1 (U+0080-U+009F).
func IsControl(r rune) bool {
	return r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f)
}

// Check returns a *ControlError for the first control character in s, or for
// a byte sequence that is not UTF-8 (a terminal may read it as one), and
// nil for printable text.
func Check(s string) error {
	for i, r := range s {
		if r == utf8.RuneError {
			if _, size := utf8.DecodeRuneInString(s[i:]); size == 1 {
				return &ControlError{Rune: utf8.RuneError, Offset: i}
			}
		}
		if IsControl(r) {
			return &ControlError{Rune: r, Offset: i}
		}
	}
	return nil
}
