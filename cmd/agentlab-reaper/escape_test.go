package main

import "testing"

func TestPrintable(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"alice", "alice"},
		{"café ünïcode 日本", "café ünïcode 日本"},
		{"evil\x1b[2J\x1b]0;pwned\x07", `evil\x1b[2J\x1b]0;pwned\a`},
		{"two\nlines", `two\nlines`},
		{"tab\tcolumn", `tab\tcolumn`},
		{"cr\roverwrite", `cr\roverwrite`},
		{"rtl\u202eexe.txt", `rtl\u202eexe.txt`},
		{"c1\u009bcontrol", `c1\u009bcontrol`},
		{"bad\xffutf8", `bad\xffutf8`},
		{"nul\x00", `nul\x00`},
	}
	for _, tt := range tests {
		if got := printable(tt.in); got != tt.want {
			t.Errorf("printable(%q) = %q; want %q", tt.in, got, tt.want)
		}
	}
}
