package job

import (
	"errors"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestCheckName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"report.txt", true},
		{"out/a/b.tar.gz", true},
		{".coverage", true},
		{"v1.2+build@x=y,z~", true},
		{"", false},
		{"/etc/passwd", false},
		{"../secret", false},
		{"out/../../x", false},
		{"out/..", false},
		{"./x", false},
		{"out//x", false},
		{"out/", false},
		{"a\\..\\b", false},
		{"a b", false},
		{"a\x00b", false},
		{"a\nb", false},
		{"caf\u00e9", false},
		{"a\x7f", false},
		{"a%2f..", false},
		{strings.Repeat("a", MaxNameBytes), true},
		{strings.Repeat("a", MaxNameBytes+1), false},
	}
	for _, tt := range tests {
		err := CheckName(tt.name)
		if (err == nil) != tt.ok {
			t.Errorf("CheckName(%q) = %v; want ok %v", tt.name, err, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Errorf("CheckName(%q) = %v; want an error wrapping ErrInvalid", tt.name, err)
		}
	}
}

func TestCheckGlob(t *testing.T) {
	for _, g := range []string{"out/**", "*.txt", "dist/[ab]?.bin", "report.json"} {
		if err := CheckGlob(g); err != nil {
			t.Errorf("CheckGlob(%q) = %v; want nil", g, err)
		}
	}
	for _, g := range []string{"", "/abs/*", "../*", "a/../b", "a b", "a;rm", "$(x)", "a\nb", "./*"} {
		if err := CheckGlob(g); !errors.Is(err, ErrInvalid) {
			t.Errorf("CheckGlob(%q) = %v; want ErrInvalid", g, err)
		}
	}
}

// FuzzCheckName checks that every accepted name stays inside the directory
// it is joined to, is already clean, and carries only plain ASCII.
func FuzzCheckName(f *testing.F) {
	for _, s := range []string{"a", "out/x.txt", "../x", "/x", "a/./b", "a//b", "..", ".", "a\x00", "\xff", "a\\b", "...", "a/...", "~/x", "-rf"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if CheckName(name) != nil {
			return
		}
		if !utf8.ValidString(name) || strings.ContainsAny(name, "\x00\\ \n") {
			t.Fatalf("accepted %q with odd bytes", name)
		}
		if path.IsAbs(name) || filepath.IsAbs(name) {
			t.Fatalf("accepted absolute %q", name)
		}
		if path.Clean(name) != name {
			t.Fatalf("accepted unclean %q (clean: %q)", name, path.Clean(name))
		}
		root := "/srv/artifacts/job"
		joined := filepath.Join(root, filepath.FromSlash(name))
		if rel, err := filepath.Rel(root, joined); err != nil || rel == ".." || strings.HasPrefix(rel, "../") || rel == "." {
			t.Fatalf("accepted %q which escapes or is the root: %q", name, joined)
		}
	})
}
