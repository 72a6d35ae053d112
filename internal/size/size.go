// Package size is AgentLab's one grammar for sizes of disks, memory and
// files, the one Proxmox VE uses: a number and a binary unit.
//
//	20G  1.5T  512M  4096K  10GiB  1048576B  1048576
//
// K, M, G and T (either case) and their IEC spellings KiB, MiB, GiB and TiB
// are powers of 1024, as in Proxmox VE; B or no unit means bytes (or the
// caller's unit, see ParseIn). A fraction is allowed when the result is a
// whole number of bytes. KB, MB, GB and TB are refused: they are decimal in
// SI and binary in Proxmox VE's web interface, so either reading would
// surprise someone; the error says what to write instead.
package size

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
)

// Units in bytes.
const (
	B int64 = 1
	K int64 = 1 << 10
	M int64 = 1 << 20
	G int64 = 1 << 30
	T int64 = 1 << 40
)

// ErrInvalid marks a string that is not a size. The concrete error is a
// *SyntaxError.
var ErrInvalid = errors.New("invalid size")

// SyntaxError says why a string is not a size and what to write instead.
type SyntaxError struct {
	Input string
	// Reason says what is wrong and the fix, as a predicate of the input:
	// "is too large".
	Reason string
}

// Error implements error: `size "20GB" uses GB, which ...`.
func (e *SyntaxError) Error() string { return fmt.Sprintf("size %q %s", e.Input, e.Reason) }

// Is makes errors.Is(err, ErrInvalid) true.
func (e *SyntaxError) Is(target error) bool { return target == ErrInvalid }

// units maps every accepted unit spelling (lower case) to its bytes.
var units = map[string]int64{
	"": B, "b": B,
	"k": K, "kib": K,
	"m": M, "mib": M,
	"g": G, "gib": G,
	"t": T, "tib": T,
}

// Parse parses s into bytes; a bare number is bytes.
func Parse(s string) (int64, error) { return ParseIn(s, B) }

// ParseIn parses s into bytes; a bare number is in unit (e.g. M for a memory
// size in MiB).
func ParseIn(s string, unit int64) (int64, error) {
	in := s
	s = strings.TrimSpace(s)
	i := strings.IndexFunc(s, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	num, suffix := s, ""
	if i >= 0 {
		num, suffix = s[:i], strings.TrimSpace(s[i:])
	}
	const grammar = "is not a number followed by K, M, G or T (powers of 1024), such as \"20G\""
	if num == "" {
		return 0, &SyntaxError{in, grammar}
	}
	lower := strings.ToLower(suffix)
	mult, ok := units[lower]
	switch {
	case !ok && len(lower) == 2 && strings.HasSuffix(lower, "b") && strings.ContainsRune("kmgt", rune(lower[0])):
		u := strings.ToUpper(lower[:1])
		return 0, &SyntaxError{in, fmt.Sprintf("uses %s, which is ambiguous (decimal in SI, binary in Proxmox VE); write "+
			"%s%s or %s%siB for powers of 1024, the only sizes AgentLab knows", suffix, num, u, num, u)}
	case !ok:
		return 0, &SyntaxError{in, fmt.Sprintf("has the unknown unit %q; use K, M, G or T (powers of 1024), such as \"20G\"", suffix)}
	}
	if suffix == "" {
		mult = unit
	}
	r, ok := new(big.Rat).SetString(num)
	if !ok || strings.Count(num, ".") > 1 || strings.HasPrefix(num, ".") || strings.HasSuffix(num, ".") {
		return 0, &SyntaxError{in, grammar}
	}
	r.Mul(r, new(big.Rat).SetInt64(mult))
	if !r.IsInt() {
		return 0, &SyntaxError{in, "is not a whole number of bytes"}
	}
	n := r.Num()
	if !n.IsInt64() || n.Int64() > math.MaxInt64/2 {
		return 0, &SyntaxError{in, "is too large"}
	}
	return n.Int64(), nil
}

// Format writes bytes the way Proxmox VE does: with the largest of T, G, M
// and K that divides it evenly ("20G", "1536M"), else as a bare number of
// bytes.
func Format(bytes int64) string {
	for _, u := range []struct {
		suffix string
		n      int64
	}{{"T", T}, {"G", G}, {"M", M}, {"K", K}} {
		if bytes != 0 && bytes%u.n == 0 {
			return strconv.FormatInt(bytes/u.n, 10) + u.suffix
		}
	}
	return strconv.FormatInt(bytes, 10)
}

// FormatIEC writes bytes with the largest IEC unit that divides it evenly
// ("10GiB", "1536MiB"), else in bytes ("1000B").
func FormatIEC(bytes int64) string {
	for _, u := range []struct {
		suffix string
		n      int64
	}{{"TiB", T}, {"GiB", G}, {"MiB", M}, {"KiB", K}} {
		if bytes != 0 && bytes%u.n == 0 {
			return strconv.FormatInt(bytes/u.n, 10) + u.suffix
		}
	}
	return strconv.FormatInt(bytes, 10) + "B"
}
