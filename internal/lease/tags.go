package lease

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

const (
	// TagOwned marks a VM as an AgentLab sandbox. The reaper never touches a
	// VM without it.
	TagOwned = "agentlab"
	// TagKeep exempts a sandbox from reaping, whatever its lease says.
	TagKeep = "agentlab-keep"
	// ExpiryTagPrefix starts the tag that mirrors the lease expiry as Unix
	// seconds, e.g. "agentlab-exp-1767225600", so that one
	// /cluster/resources call shows every lease.
	ExpiryTagPrefix = "agentlab-exp-"
)

// ErrNoExpiryTag means a tag list has no expiry tag.
var ErrNoExpiryTag = errors.New("no " + ExpiryTagPrefix + "<unix seconds> tag")

// ErrReservedTag means a user tag uses the expiry tag's prefix, which only
// this package may write.
var ErrReservedTag = errors.New("reserved tag")

// tagPattern is PVE's pve-tag format.
var tagPattern = regexp.MustCompile(`^[a-z0-9_][a-z0-9_+.-]*$`)

// ExpiryTag returns the tag that mirrors expiresAt.
func ExpiryTag(expiresAt time.Time) string {
	return ExpiryTagPrefix + strconv.FormatInt(expiresAt.Unix(), 10)
}

// ParseTags splits a PVE tag string the way PVE does (on ';', ',' and
// white space) and normalises it: lower-case, sorted, without duplicates or
// empty entries.
func ParseTags(s string) []string {
	fields := strings.FieldsFunc(s, func(r rune) bool {
		return r == ';' || r == ',' || r == ' ' || r == '\t' || r == '\n' || r == '\r'
	})
	return normalize(fields)
}

// JoinTags normalises tags like ParseTags and joins them with ';', the form
// PVE stores and returns.
func JoinTags(tags []string) string {
	return strings.Join(normalize(tags), ";")
}

// SandboxTags returns the tag string for a sandbox: the user's tags merged
// with TagOwned and the expiry tag for expiresAt, normalised as PVE would.
// A user tag that is not a valid PVE tag, or that starts with
// ExpiryTagPrefix (which would spoof the lease), is an error naming it.
// Users may set TagKeep.
func SandboxTags(user []string, expiresAt time.Time) (string, error) {
	clean := normalize(user)
	for _, t := range clean {
		if strings.HasPrefix(t, ExpiryTagPrefix) {
			return "", fmt.Errorf("tag %q: %w: tags starting with %q are set from the lease; remove it and use ttl instead",
				t, ErrReservedTag, ExpiryTagPrefix)
		}
		if !tagPattern.MatchString(t) {
			return "", fmt.Errorf("tag %q: not a valid Proxmox VE tag (letters, digits, '_', '-', '+', '.'; not starting with '-', '+' or '.')", t)
		}
	}
	return JoinTags(append(clean, TagOwned, ExpiryTag(expiresAt))), nil
}

// WithExpiry returns tags (as PVE returned them) with every expiry tag
// replaced by the one for expiresAt, joined as PVE stores them. The reaper
// uses it when it renews a lease.
func WithExpiry(tags []string, expiresAt time.Time) string {
	kept := slices.DeleteFunc(normalize(tags), func(t string) bool {
		return strings.HasPrefix(t, ExpiryTagPrefix)
	})
	return JoinTags(append(kept, ExpiryTag(expiresAt)))
}

// UserTags returns tags without the ones this package manages (TagOwned and
// expiry tags). TagKeep is the user's to set and stays.
func UserTags(tags []string) []string {
	return slices.DeleteFunc(normalize(tags), func(t string) bool {
		return t == TagOwned || strings.HasPrefix(t, ExpiryTagPrefix)
	})
}

// Owned reports whether tags include TagOwned.
func Owned(tags []string) bool { return hasTag(tags, TagOwned) }

// Kept reports whether tags include TagKeep.
func Kept(tags []string) bool { return hasTag(tags, TagKeep) }

// ExpiryFromTags returns the expiry mirrored in tags. It returns an error
// wrapping ErrNoExpiryTag when there is none, and a different error when the
// tag is malformed or there are several that disagree.
func ExpiryFromTags(tags []string) (time.Time, error) {
	var found []int64
	for _, t := range normalize(tags) {
		rest, ok := strings.CutPrefix(t, ExpiryTagPrefix)
		if !ok {
			continue
		}
		sec, err := strconv.ParseInt(rest, 10, 64)
		if err != nil || sec < 0 || strings.HasPrefix(rest, "+") {
			return time.Time{}, fmt.Errorf("tag %q: want %s<unix seconds>", t, ExpiryTagPrefix)
		}
		found = append(found, sec)
	}
	slices.Sort(found)
	found = slices.Compact(found)
	switch len(found) {
	case 0:
		return time.Time{}, ErrNoExpiryTag
	case 1:
		return time.Unix(found[0], 0).UTC(), nil
	}
	return time.Time{}, fmt.Errorf("%d different %s tags; the description's metadata decides", len(found), ExpiryTagPrefix)
}

func hasTag(tags []string, want string) bool {
	for _, t := range tags {
		if strings.EqualFold(strings.TrimSpace(t), want) {
			return true
		}
	}
	return false
}

// normalize lower-cases, trims, sorts and de-duplicates tags, dropping empty
// ones. It does not modify its argument.
func normalize(tags []string) []string {
	out := make([]string, 0, len(tags))
	for _, t := range tags {
		if t = strings.ToLower(strings.TrimSpace(t)); t != "" {
			out = append(out, t)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}
