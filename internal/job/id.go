package job

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
)

// IDPrefix starts every job ID.
const IDPrefix = "job-"

// NewID returns a fresh job ID: "job-" and 16 random hex digits.
func NewID() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return IDPrefix + hex.EncodeToString(b[:])
}

// ErrInvalidID is a string that is not a job ID.
var ErrInvalidID = fmt.Errorf("not a job ID (want %s and 16 lower-case hex digits)", IDPrefix)

// ValidID reports whether id is shaped like a job ID.
func ValidID(id string) bool {
	hexPart, ok := strings.CutPrefix(id, IDPrefix)
	if !ok || len(hexPart) != 16 {
		return false
	}
	for _, c := range hexPart {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// NewToken returns a fresh secret token: 32 random bytes, hex.
func NewToken() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
