package cloudinit

import (
	"bytes"
	"errors"

	"github.com/agentlab/terraform-provider-agentlab/internal/secrets"
)

// Secrets delivers a sealed secrets bundle (secrets.Seal): cloud-init writes
// the ciphertext to secrets.CiphertextPath, on tmpfs, and the first runcmd
// decrypts it with the template's identity (secrets.IdentityPath) into
// secrets.Dir, one 0600 file per key, and removes the ciphertext. The seed
// holds only ciphertext.
type Secrets struct {
	// Sealed is the armored age file secrets.Seal returned.
	Sealed []byte
}

// armorHeader starts every armored age file.
var armorHeader = []byte("-----BEGIN AGE ENCRYPTED FILE-----")

func (s *Secrets) validate() error {
	if s == nil {
		return nil
	}
	if !bytes.HasPrefix(s.Sealed, armorHeader) {
		return errors.New("secrets: want the armored age file secrets.Seal returns, never plain values")
	}
	return nil
}

// secretsFiles is the write_files entry that delivers the ciphertext.
func (c Config) secretsFiles() []writeFile {
	if c.Secrets == nil {
		return nil
	}
	return []writeFile{{
		Path:        secrets.CiphertextPath,
		Owner:       "root:root",
		Permissions: "0600",
		Content:     string(c.Secrets.Sealed),
	}}
}

// secretsCommands open the bundle; they run before anything else in runcmd,
// so the job runner finds the secrets.
func (c Config) secretsCommands() [][]string {
	if c.Secrets == nil {
		return nil
	}
	return [][]string{{"sh", "-c", secrets.GuestScript(secrets.CiphertextPath, secrets.Dir, secrets.IdentityPath, "age")}}
}
