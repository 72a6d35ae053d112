package provider

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
)

// sizePattern is a disk size as the resource accepts it: a number with one of
// the units K, M, G or T (powers of 1024), as Proxmox VE writes sizes.
var sizePattern = regexp.MustCompile(`^([0-9]+(?:\.[0-9]+)?)([KMGT])$`)

// sizeUnits maps a size unit to its number of bytes.
var sizeUnits = map[string]float64{"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}

// parseSize converts a size such as "20G" or "1.5T" to bytes. Fractions are
// allowed as long as the result is a whole number of KiB.
func parseSize(s string) (int64, error) {
	m := sizePattern.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		return 0, fmt.Errorf("size %q is not a number followed by K, M, G or T, such as \"20G\"", s)
	}
	n, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return 0, fmt.Errorf("size %q: %w", s, err)
	}
	b := n * sizeUnits[m[2]]
	if b < 1 || b > math.MaxInt64/2 {
		return 0, fmt.Errorf("size %q is out of range", s)
	}
	if math.Mod(b, 1024) != 0 {
		return 0, fmt.Errorf("size %q is not a whole number of KiB", s)
	}
	return int64(b), nil
}

// formatSize writes bytes the way Proxmox VE does: with the largest unit that
// divides it evenly (so 20 GiB is "20G" and 1.5 GiB is "1536M").
func formatSize(bytes int64) string {
	for _, u := range []struct {
		suffix string
		n      int64
	}{{"T", 1 << 40}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}} {
		if bytes >= u.n && bytes%u.n == 0 {
			return strconv.FormatInt(bytes/u.n, 10) + u.suffix
		}
	}
	return strconv.FormatInt(bytes, 10)
}
