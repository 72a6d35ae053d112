package profile

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/agentlab/terraform-provider-agentlab/internal/size"
)

// units are the binary unit letters with their size in KiB.
var units = []struct {
	letter string
	kib    uint64
}{{"T", 1 << 30}, {"G", 1 << 20}, {"M", 1 << 10}, {"K", 1}}

// parseSize parses a size string (internal/size's grammar) into KiB. A bare
// number is in defaultUnit ("M" or "G"); example appears in the error
// message.
func parseSize(s, defaultUnit, example string) (uint64, error) {
	unit := map[string]int64{"M": size.M, "G": size.G}[defaultUnit]
	n, err := size.ParseIn(s, unit)
	if err != nil {
		var se *size.SyntaxError
		if errors.As(err, &se) {
			return 0, fmt.Errorf("%q %s", s, strings.Replace(se.Reason, `such as "20G"`, fmt.Sprintf("such as %q", example), 1))
		}
		return 0, err
	}
	if n%size.K != 0 {
		return 0, fmt.Errorf("%q is not a whole number of KiB", s)
	}
	return uint64(n / size.K), nil
}

// sizeNode returns the size in KiB of an integer (in defaultUnit) or a size string.
func sizeNode(n *yaml.Node, defaultUnit, example string) (uint64, error) {
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!int" {
		v, err := intValue(n)
		if err != nil {
			return 0, err
		}
		if v < 0 {
			return 0, fmt.Errorf("want a positive size, got %d", v)
		}
		return parseSize(strconv.Itoa(v), defaultUnit, example)
	}
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
		return 0, fmt.Errorf("want a whole number of %siB or a size such as %q, got %s", defaultUnit, example, describe(n))
	}
	return parseSize(n.Value, defaultUnit, example)
}

// memoryValue reads a memory size: an integer in MiB or a size string. The
// result is in MiB and must be whole and at least 16 MiB (PVE's minimum).
func memoryValue(n *yaml.Node) (int, error) {
	kib, err := sizeNode(n, "M", "4G")
	if err != nil {
		return 0, err
	}
	if kib%1024 != 0 {
		return 0, fmt.Errorf("%s is not a whole number of MiB", describe(n))
	}
	mib := kib / 1024
	if mib < 16 {
		return 0, fmt.Errorf("want at least 16 MiB, got %d MiB", mib)
	}
	if mib > math.MaxInt32 {
		return 0, fmt.Errorf("%s is too large", describe(n))
	}
	return int(mib), nil
}

// diskValue reads a disk size: an integer in GiB or a size string. The
// result is PVE's size form with the largest exact unit, e.g. "40G".
func diskValue(n *yaml.Node) (string, error) {
	kib, err := sizeNode(n, "G", "20G")
	if err != nil {
		return "", err
	}
	if kib == 0 {
		return "", fmt.Errorf("want a positive size, got %s", describe(n))
	}
	for _, u := range units {
		if kib%u.kib == 0 {
			return strconv.FormatUint(kib/u.kib, 10) + u.letter, nil
		}
	}
	return "", fmt.Errorf("%s cannot be written as a Proxmox VE size", describe(n))
}
