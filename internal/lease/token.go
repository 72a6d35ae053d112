package lease

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
)

// NewHeartbeatToken returns a random heartbeat token (43 URL-safe
// characters: 256 bits) and its hex SHA-256, the form the metadata block
// keeps (HeartbeatTokenSHA256, BootTokenSHA256). The provider makes the
// token the seed carries with it, the reaper the one it hands a guest at
// its boot report.
func NewHeartbeatToken() (token, sha256Hex string, err error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", "", fmt.Errorf("reading random bytes: %w", err)
	}
	token = base64.RawURLEncoding.EncodeToString(b)
	return token, TokenSHA256(token), nil
}

// TokenSHA256 is the hex SHA-256 of a heartbeat token.
func TokenSHA256(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}
