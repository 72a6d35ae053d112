package job

import (
	"fmt"
	"strings"
)

// MaxNameBytes bounds an artifact name.
const MaxNameBytes = 512

// CheckName returns nil when name is a safe artifact name, else an error
// wrapping ErrInvalid that says why.
//
// A safe name is a relative, slash-separated path as the runner sends it:
// every segment non-empty and neither "." nor "..", made only of ASCII
// letters, digits and . _ - + @ = , ~ (no spaces, backslashes, control or
// non-ASCII bytes), at most MaxNameBytes long. Nothing is rewritten: a name
// is accepted as it is or refused, so two different names never land on the
// same file.
func CheckName(name string) error {
	if name == "" {
		return fmt.Errorf("%w: artifact name is empty", ErrInvalid)
	}
	if len(name) > MaxNameBytes {
		return fmt.Errorf("%w: artifact name longer than %d bytes", ErrInvalid, MaxNameBytes)
	}
	if name[0] == '/' {
		return fmt.Errorf("%w: artifact name %q is an absolute path; send it relative to the checkout", ErrInvalid, name)
	}
	for i := 0; i < len(name); i++ {
		if !nameByte(name[i]) {
			return fmt.Errorf("%w: artifact name %q has a byte not allowed (0x%02x) at %d; use letters, digits and . _ - + @ = , ~ /", ErrInvalid, name, name[i], i)
		}
	}
	for seg := range strings.SplitSeq(name, "/") {
		switch seg {
		case "":
			return fmt.Errorf("%w: artifact name %q has an empty path segment", ErrInvalid, name)
		case ".", "..":
			return fmt.Errorf("%w: artifact name %q has a %q segment", ErrInvalid, name, seg)
		}
	}
	return nil
}

func nameByte(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("._-+@=,~/", c) >= 0
}

// CheckGlob returns nil when glob is an acceptable artifact pattern: a
// relative shell pattern (* ? [...]) over the same bytes as names, with no
// ".." segment. The runner matches it against each file's path relative to
// the checkout, and * matches across "/" (so "out/*" and "out/**" both take
// everything under out/).
func CheckGlob(glob string) error {
	if glob == "" {
		return fmt.Errorf("%w: empty glob", ErrInvalid)
	}
	if len(glob) > MaxNameBytes {
		return fmt.Errorf("%w: glob longer than %d bytes", ErrInvalid, MaxNameBytes)
	}
	if glob[0] == '/' {
		return fmt.Errorf("%w: glob %q is absolute; write it relative to the repository checkout", ErrInvalid, glob)
	}
	for i := 0; i < len(glob); i++ {
		if !nameByte(glob[i]) && strings.IndexByte("*?[]!", glob[i]) < 0 {
			return fmt.Errorf("%w: glob %q has a byte not allowed (0x%02x); use letters, digits, . _ - + @ = , ~ / and * ? [ ]", ErrInvalid, glob, glob[i])
		}
	}
	for seg := range strings.SplitSeq(glob, "/") {
		if seg == ".." || seg == "." || seg == "" {
			return fmt.Errorf("%w: glob %q has an empty, '.' or '..' path segment", ErrInvalid, glob)
		}
	}
	return nil
}
