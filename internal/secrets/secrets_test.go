package secrets

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"
)

func TestValidateKey(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"GITHUB_TOKEN", true}, {"_x", true}, {"a1", true},
		{"", false}, {"1A", false}, {"A-B", false}, {"../etc", false}, {"A B", false},
		{"AGENTLAB_JOB_TOKEN", false}, {strings.Repeat("A", 129), false},
	} {
		if err := ValidateKey(tc.name); (err == nil) != tc.ok {
			t.Errorf("ValidateKey(%q) = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

func TestValidateLimits(t *testing.T) {
	for name, values := range map[string]map[string]string{
		"nul":    {"A": "x\x00y"},
		"big":    {"A": strings.Repeat("x", MaxBytes+1)},
		"badkey": {"a-b": "x"},
	} {
		if err := Validate(values); err == nil {
			t.Errorf("%s: Validate accepted %d keys", name, len(values))
		}
	}
}

func TestParseRecipient(t *testing.T) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseRecipient(" " + id.Recipient().String() + "\n"); err != nil {
		t.Errorf("valid recipient: %v", err)
	}
	for _, bad := range []string{"", "age1nope", id.String(), "ssh-ed25519 AAAA"} {
		if _, err := ParseRecipient(bad); !errors.Is(err, ErrRecipient) {
			t.Errorf("ParseRecipient(%q) = %v, want ErrRecipient", bad, err)
		}
	}
}

func TestSealOpen(t *testing.T) {
	id, _ := age.GenerateX25519Identity()
	values := map[string]string{"GITHUB_TOKEN": "ghp_s3cret", "MULTI": "line1\nline2\n", "EMPTY": ""}
	sealed, err := Seal(values, id.Recipient().String())
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range values {
		if v != "" && bytes.Contains(sealed, []byte(v)) {
			t.Fatalf("sealed bundle holds %q in plain text", v)
		}
	}
	if !bytes.HasPrefix(sealed, []byte("-----BEGIN AGE ENCRYPTED FILE-----")) {
		t.Errorf("bundle is not armored: %.40q", sealed)
	}
	got, err := Open(sealed, id.String())
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(values) {
		t.Fatalf("Open = %v", got)
	}
	for k, v := range values {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	other, _ := age.GenerateX25519Identity()
	if _, err := Open(sealed, other.String()); err == nil {
		t.Error("another identity opened the bundle")
	}
}

// TestSealGuestTools decrypts a bundle the way the guest does: the age
// command and tar (skipped where age is not installed).
func TestSealGuestTools(t *testing.T) {
	agePath, err := exec.LookPath("age")
	if err != nil {
		t.Skip("the age command is not installed (Debian package age)")
	}
	id, _ := age.GenerateX25519Identity()
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "age.key")
	if err := os.WriteFile(keyFile, []byte(id.String()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sealed, err := Seal(map[string]string{"API_KEY": "v@lue with spaces"}, id.Recipient().String())
	if err != nil {
		t.Fatal(err)
	}
	in := filepath.Join(dir, "secrets.age")
	if err := os.WriteFile(in, sealed, 0o600); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	if err := os.Mkdir(out, 0o700); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sh", "-c", GuestScript(in, out, keyFile, agePath))
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("guest script: %v\n%s", err, b)
	}
	b, err := os.ReadFile(filepath.Join(out, "API_KEY"))
	if err != nil || string(b) != "v@lue with spaces" {
		t.Fatalf("API_KEY = %q, %v", b, err)
	}
	if fi, _ := os.Stat(filepath.Join(out, "API_KEY")); fi.Mode().Perm() != 0o600 {
		t.Errorf("API_KEY mode %v, want 0600", fi.Mode().Perm())
	}
	if _, err := os.Stat(in); !os.IsNotExist(err) {
		t.Errorf("ciphertext left behind: %v", err)
	}
}
