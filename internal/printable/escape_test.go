package printable

import "testing"

func TestEscape(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"alice", "alice"},
		{"café ünïcode 日本", "café ünïcode 日本"},
		{"evil\x1b[2J\x1b]0;pwned\x07", `evil\x1b[2J\x1b]0;pwned\a`},
		{"two\nlines", `two\nlines`},
		{"tab\tcolumn", `tab\tcolumn`},
		{"cr\roverwrite", `cr\roverwrite`},
		{"del\x7f", `del\x7f`},
		{"rtl\u202eexe.txt", `rtl\u202eexe.txt`},
		{"c1\u009bcontrol", `c1\u009bcontrol`},
		{"bad\xffutf8", `bad\xffutf8`},
		{"nul\x00", `nul\x00`},
	}
	for _, tt := range tests {
		got := Escape(tt.in)
		if got != tt.want {
			t.Errorf("Escape(%q) = %q; want %q", tt.in, got, tt.want)
		}
		// What Escape returns passes Check: the two rules agree.
		if err := Check(got); err != nil {
			t.Errorf("Check(Escape(%q)) = %v; want nil", tt.in, err)
		}
	}
	if got, want := EscapeLines("first\x1b[1m\nsecond"), "first\\x1b[1m\nsecond"; got != want {
		t.Errorf("EscapeLines = %q; want %q", got, want)
	}
}
