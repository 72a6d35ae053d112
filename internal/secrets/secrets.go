// Package secrets seals a sandbox's secrets for its guest: the bundle (one
// file per key) is a tar archive encrypted with age to the X25519 recipient
// of the sandbox's template, ASCII-armored so that it travels as text in the
// NoCloud seed. Only the template's identity, which lives in the template's
// disk (IdentityPath), opens it. The guest decrypts the bundle into Dir, a
// tmpfs directory, one 0600 file per key (see the cloudinit package).
package secrets

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"

	"filippo.io/age"
	"filippo.io/age/armor"
)

// Paths in the guest.
const (
	// IdentityPath is the template's age identity (root only, 0600). The
	// template provides it and the age command.
	IdentityPath = "/etc/agentlab/age.key"
	// CiphertextPath is where cloud-init writes the sealed bundle (tmpfs);
	// it is removed once decrypted.
	CiphertextPath = "/run/agentlab/secrets.age"
	// Dir holds one file per secret, named by its key (tmpfs, 0700).
	Dir = "/run/agentlab/secrets"
)

// MaxKeys and MaxBytes bound a bundle: it travels in the seed ISO.
const (
	MaxKeys  = 256
	MaxBytes = 256 << 10
)

// keyName is an environment-variable-safe name; it is also a file name.
var keyName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,127}$`)

// ErrRecipient marks a missing or unusable recipient.
var ErrRecipient = errors.New("secrets recipient")

// ValidateKey checks that name can be both an environment variable and a
// file name in Dir.
func ValidateKey(name string) error {
	if !keyName.MatchString(name) {
		return fmt.Errorf("secret key %q: want an environment variable name (a letter or '_', then letters, digits or '_'; at most 128), e.g. GITHUB_TOKEN", name)
	}
	if strings.HasPrefix(name, "AGENTLAB_") {
		return fmt.Errorf("secret key %q: the AGENTLAB_ prefix is reserved for the job runner's own variables; rename the key", name)
	}
	return nil
}

// Validate checks every key and the bundle's size.
func Validate(values map[string]string) error {
	if len(values) > MaxKeys {
		return fmt.Errorf("secrets: %d keys, at most %d fit in the seed", len(values), MaxKeys)
	}
	total := 0
	var errs []error
	for _, k := range sortedKeys(values) {
		if err := ValidateKey(k); err != nil {
			errs = append(errs, err)
		}
		if strings.IndexByte(values[k], 0) >= 0 {
			errs = append(errs, fmt.Errorf("secret %q: value holds a NUL byte, which no environment variable can carry", k))
		}
		total += len(values[k])
	}
	if total > MaxBytes {
		errs = append(errs, fmt.Errorf("secrets: values total %d bytes, at most %d fit in the seed; deliver large files another way", total, MaxBytes))
	}
	return errors.Join(errs...)
}

// ParseRecipient parses an age X25519 recipient ("age1...").
func ParseRecipient(s string) (*age.X25519Recipient, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, fmt.Errorf("%w: none configured; set secrets_recipient or the profile's secrets.recipient to the public key (age1...) of the template's %s", ErrRecipient, IdentityPath)
	}
	r, err := age.ParseX25519Recipient(s)
	if err != nil {
		return nil, fmt.Errorf("%w %q: want an age X25519 public key (age1..., as age-keygen -y %s prints it): %w", ErrRecipient, s, IdentityPath, err)
	}
	return r, nil
}

// Seal validates values and encrypts them to recipient: an armored age
// file holding a tar archive with one 0600 file per key.
func Seal(values map[string]string, recipient string) ([]byte, error) {
	if err := Validate(values); err != nil {
		return nil, err
	}
	r, err := ParseRecipient(recipient)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	aw := armor.NewWriter(&out)
	w, err := age.Encrypt(aw, r)
	if err != nil {
		return nil, fmt.Errorf("encrypt the secrets: %w", err)
	}
	tw := tar.NewWriter(w)
	for _, k := range sortedKeys(values) {
		v := values[k]
		hdr := &tar.Header{Name: k, Mode: 0o600, Size: int64(len(v)), Typeflag: tar.TypeReg, Format: tar.FormatPAX}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("encrypt the secrets: %w", err)
		}
		if _, err := io.WriteString(tw, v); err != nil {
			return nil, fmt.Errorf("encrypt the secrets: %w", err)
		}
	}
	for _, c := range []io.Closer{tw, w, aw} {
		if err := c.Close(); err != nil {
			return nil, fmt.Errorf("encrypt the secrets: %w", err)
		}
	}
	return out.Bytes(), nil
}

// Open decrypts a sealed bundle with identity (an AGE-SECRET-KEY-1...
// line, as in the template's IdentityPath), as the guest does. The
// provider never calls it; tests and tools do.
func Open(sealed []byte, identity string) (map[string]string, error) {
	ids, err := age.ParseIdentities(strings.NewReader(identity))
	if err != nil {
		return nil, fmt.Errorf("parse the identity: %w", err)
	}
	r, err := age.Decrypt(armor.NewReader(bytes.NewReader(sealed)), ids...)
	if err != nil {
		return nil, fmt.Errorf("decrypt the secrets: %w", err)
	}
	tr := tar.NewReader(r)
	out := map[string]string{}
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read the secrets: %w", err)
		}
		if err := ValidateKey(hdr.Name); err != nil {
			return nil, err
		}
		b, err := io.ReadAll(io.LimitReader(tr, MaxBytes+1))
		if err != nil {
			return nil, fmt.Errorf("read secret %q: %w", hdr.Name, err)
		}
		out[hdr.Name] = string(b)
	}
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
