package pve

import (
	"errors"
	"strings"
)

// IsDigestMismatch reports whether err is PVE refusing a change made with a
// config digest (ConfigUpdate.Digest) because the guest's config changed
// since that digest was read: "checksum mismatch (file change by other
// user?)" (qemu-server's config update) or "detected modified configuration
// - file changed by other user? Try again." (PVE::Tools::assert_if_modified,
// e.g. resize), as an API error or as a failed task. The caller should read
// the config again and redo its change.
func IsDigestMismatch(err error) bool {
	var ae *APIError
	if errors.As(err, &ae) {
		return digestMismatchText(ae.text())
	}
	var te *TaskError
	if errors.As(err, &te) {
		return digestMismatchText(te.ExitStatus)
	}
	return false
}

func digestMismatchText(s string) bool {
	s = strings.ToLower(s)
	return strings.Contains(s, "file change by other user") || strings.Contains(s, "file changed by other user")
}
