package secrets

import "github.com/agentlab/terraform-provider-agentlab/internal/job"

// GuestScript is the sh script the guest runs once, at first boot, to open
// the bundle at in into dir with the identity file, using the age command
// ageCmd ("age" in a guest). dir is made 0700 and each key's file is 0600
// (the umask, and the modes in the archive); the ciphertext and the
// decrypted archive are removed whether decryption worked or not. It never
// prints a secret; it fails naming the identity when the bundle cannot be
// opened.
func GuestScript(in, dir, identity, ageCmd string) string {
	q := job.ShellQuote
	tarball := q(dir + "/.bundle.tar")
	return "umask 077\n" +
		"mkdir -p " + q(dir) + " && chmod 0700 " + q(dir) + " || exit 1\n" +
		"rc=0\n" +
		q(ageCmd) + " -d -i " + q(identity) + " -o " + tarball + " " + q(in) + " && tar -x -f " + tarball + " -C " + q(dir) + " || rc=1\n" +
		"rm -f " + tarball + " " + q(in) + "\n" +
		"[ \"$rc\" -eq 0 ] || echo \"agentlab: cannot open the secrets bundle with " + identity + " (is it the template's identity, and is age installed?)\" >&2\n" +
		"exit \"$rc\"\n"
}
