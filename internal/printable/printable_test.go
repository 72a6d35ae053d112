package printable

import (
	"errors"
	"testing"
)

func TestCheck(t *testing.T) {
	tests := []struct {
		in         string
		wantRune   rune
		wantOffset int
		ok         bool
	}{
		{in: "alice@example.com", ok: true},
		{in: "Zoë Ünal, équipe 3 — 日本", ok: true},
		{in: "", ok: true},
		{in: "alice\nroot", wantRune: '\n', wantOffset: 5},
		{in: "\x1b[2J", wantRune: 0x1b, wantOffset: 0},
		{in: "tab\there", wantRune: '\t', wantOffset: 3},
		{in: "del\x7f", wantRune: 0x7f, wantOffset: 3},
		{in: "c1\u009b31m", wantRune: 0x9b, wantOffset: 2},
		{in: "cr\r", wantRune: '\r', wantOffset: 2},
		{in: "nul\x00", wantRune: 0, wantOffset: 3},
		{in: "bad\xffutf8", wantRune: 0xfffd, wantOffset: 3},
	}
	for _, tt := range tests {
		err := Check(tt.in)
		if tt.ok {
			if err != nil {
				t.Errorf("Check(%q) = %v; want nil", tt.in, err)
			}
			continue
		}
		var ce *ControlError
		if !errors.As(err, &ce) || ce.Rune != tt.wantRune || ce.Offset != tt.wantOffset {
			t.Errorf("Check(%q) = %#v; want %U at byte %d", tt.in, err, tt.wantRune, tt.wantOffset)
		}
	}
}
