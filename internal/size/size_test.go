package size

import (
	"errors"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in   string
		want int64
	}{
		{"20G", 20 << 30},
		{"20g", 20 << 30},
		{"20GiB", 20 << 30},
		{"20 GiB", 20 << 30},
		{"1.5T", 3 << 39},
		{"512M", 512 << 20},
		{"4096K", 4 << 20},
		{"1048576", 1 << 20},
		{"1048576B", 1 << 20},
		{" 8G ", 8 << 30},
		{"0.5K", 512},
	}
	for _, tt := range tests {
		got, err := Parse(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("Parse(%q) = %d, %v; want %d, nil", tt.in, got, err, tt.want)
		}
	}
}

func TestParseIn(t *testing.T) {
	if got, err := ParseIn("2048", M); err != nil || got != 2048<<20 {
		t.Errorf("ParseIn(2048, M) = %d, %v; want 2 GiB", got, err)
	}
	if got, err := ParseIn("2G", M); err != nil || got != 2<<30 {
		t.Errorf("ParseIn(2G, M) = %d, %v; want 2 GiB (a unit beats the default)", got, err)
	}
}

func TestParseRefuses(t *testing.T) {
	tests := []struct {
		in      string
		wantMsg string
	}{
		{"20GB", `write 20G or 20GiB`},
		{"512mb", `write 512M or 512MiB`},
		{"1TB", "ambiguous"},
		{"", "is not a number followed by"},
		{"G", "is not a number followed by"},
		{"20X", `unknown unit "X"`},
		{"1e3", "unknown unit"},
		{"1.2.3G", "is not a number followed by"},
		{"1.G", "is not a number followed by"},
		{"-5G", "is not a number followed by"},
		{"0.3", "whole number of bytes"},
		{"9999999T", "too large"},
		{"20 parsecs", "unknown unit"},
	}
	for _, tt := range tests {
		_, err := Parse(tt.in)
		var se *SyntaxError
		if !errors.Is(err, ErrInvalid) || !errors.As(err, &se) || !strings.Contains(err.Error(), tt.wantMsg) {
			t.Errorf("Parse(%q) = %v; want a *SyntaxError containing %q", tt.in, err, tt.wantMsg)
		}
	}
}

func TestFormat(t *testing.T) {
	tests := []struct {
		in       int64
		pve, iec string
	}{
		{20 << 30, "20G", "20GiB"},
		{1536 << 20, "1536M", "1536MiB"},
		{3 << 39, "1536G", "1536GiB"},
		{1 << 40, "1T", "1TiB"},
		{1000, "1000", "1000B"},
		{0, "0", "0B"},
	}
	for _, tt := range tests {
		if got := Format(tt.in); got != tt.pve {
			t.Errorf("Format(%d) = %q; want %q", tt.in, got, tt.pve)
		}
		if got := FormatIEC(tt.in); got != tt.iec {
			t.Errorf("FormatIEC(%d) = %q; want %q", tt.in, got, tt.iec)
		}
		// What Format writes, Parse reads back.
		if back, err := Parse(Format(tt.in)); err != nil || back != tt.in {
			t.Errorf("Parse(Format(%d)) = %d, %v", tt.in, back, err)
		}
		if back, err := Parse(FormatIEC(tt.in)); err != nil || back != tt.in {
			t.Errorf("Parse(FormatIEC(%d)) = %d, %v", tt.in, back, err)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"20G", "1.5T", "20GB", "1048576", "0.5K", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := Parse(s)
		if err != nil {
			return
		}
		if n < 0 {
			t.Fatalf("Parse(%q) = %d; want a non-negative size", s, n)
		}
		if back, err := Parse(Format(n)); err != nil || back != n {
			t.Fatalf("Parse(Format(Parse(%q))) = %d, %v; want %d", s, back, err, n)
		}
	})
}
