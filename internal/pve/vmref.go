package pve

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// PVE's VMID bounds.
const (
	minVMID = 100
	maxVMID = 999999999
)

// VMRef addresses a guest: the node it lives on and its VMID.
type VMRef struct {
	Node string
	VMID int
}

// String returns "node/vmid", the form Terraform imports use.
func (r VMRef) String() string { return r.Node + "/" + strconv.Itoa(r.VMID) }

// IsZero reports whether r is the zero VMRef.
func (r VMRef) IsZero() bool { return r == VMRef{} }

var reNodeName = regexp.MustCompile(`^[a-zA-Z0-9]([a-zA-Z0-9.-]*[a-zA-Z0-9])?$`)

// ParseVMRef parses "node/vmid".
func ParseVMRef(s string) (VMRef, error) {
	node, id, ok := strings.Cut(s, "/")
	if !ok {
		return VMRef{}, fmt.Errorf("invalid vm reference %q: want node/vmid, e.g. pve/123", s)
	}
	vmid, err := strconv.Atoi(id)
	if err != nil {
		return VMRef{}, fmt.Errorf("invalid vm reference %q: vmid %q is not a number", s, id)
	}
	r := VMRef{Node: node, VMID: vmid}
	if err := r.validate(); err != nil {
		return VMRef{}, err
	}
	return r, nil
}

func (r VMRef) validate() error {
	if !reNodeName.MatchString(r.Node) {
		return fmt.Errorf("invalid node name %q", r.Node)
	}
	return validVMID(r.VMID)
}

func validVMID(id int) error {
	if id < minVMID || id > maxVMID {
		return fmt.Errorf("invalid vmid %d: must be between %d and %d", id, minVMID, maxVMID)
	}
	return nil
}

// flexInt decodes a JSON number, a numeric string, a boolean or null: PVE's
// JSON types vary between versions and endpoints.
type flexInt int64

// UnmarshalJSON implements json.Unmarshaler.
func (f *flexInt) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(b), `"`)
	switch s {
	case "", "null", "false":
		*f = 0
		return nil
	case "true":
		*f = 1
		return nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		*f = flexInt(n)
		return nil
	}
	x, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return fmt.Errorf("not a number: %s", b)
	}
	*f = flexInt(x)
	return nil
}
