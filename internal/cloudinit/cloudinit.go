// Package cloudinit renders the NoCloud seed a sandbox boots with (user-data,
// meta-data and network-config) and packs it into the ISO 9660 image,
// labelled "cidata", that the provider uploads through the PVE API and
// attaches as a CD-ROM.
//
// The seed never holds a plain secret: there is no password field, the
// user's password is locked and SSH password logins are off. Secrets reach
// the guest encrypted (Config.Secrets, see the secrets package). A job sandbox gets the job
// runner (Config.Job): write_files entries and a runcmd that starts it.
package cloudinit

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// File names inside the seed, as cloud-init's NoCloud data source reads them.
const (
	UserDataFile      = "user-data"
	MetaDataFile      = "meta-data"
	NetworkConfigFile = "network-config"
)

// DefaultUser is the guest account created when Config.User.Name is empty.
const DefaultUser = "agent"

// DefaultInterface is the name given to the sandbox's NIC when
// Config.NIC.Name is empty, as Proxmox VE's own cloud-init support does.
const DefaultInterface = "eth0"

// Config is what a sandbox's seed says.
type Config struct {
	// InstanceID identifies this boot's instance to cloud-init, which runs
	// its per-instance steps again whenever the ID changes. Use a value
	// unique to the sandbox, e.g. "agentlab-<vmid>-<nonce>". Required.
	InstanceID string
	// Hostname is the guest's host name: an RFC 1123 name, e.g. the VM name.
	// Required.
	Hostname string
	// User is the account the sandbox is used through.
	User User
	// NIC is the network interface cloud-init configures with DHCP.
	NIC NIC
	// Heartbeat, when set, installs the sandbox's heartbeat token and the
	// agentlab-heartbeat command that extends its lease.
	Heartbeat *Heartbeat
	// Workspace, when set, formats the attached workspace disk once and
	// mounts it at WorkspaceMountPoint.
	Workspace *Workspace
	// Job, when set, installs and starts the job runner for one job.
	Job *Job
	// Secrets, when set, delivers a sealed secrets bundle that the guest
	// opens into secrets.Dir at first boot.
	Secrets *Secrets
}

// User is the guest account. It never has a password: it logs in with SSH keys.
type User struct {
	// Name is the account name; empty means DefaultUser.
	Name string
	// SSHAuthorizedKeys are public keys in authorized_keys format, one per
	// entry.
	SSHAuthorizedKeys []string
	// Sudo gives the account password-less sudo.
	Sudo bool
}

// NIC is the sandbox's network interface. It is configured with DHCP (IPv4);
// a static address would be a later field beside MAC.
type NIC struct {
	// MAC is the interface's MAC address as PVE shows it in net0, e.g.
	// "BC:24:11:2A:3B:4C". Required: cloud-init finds the interface by it.
	MAC string
	// Name is what cloud-init names the interface; empty means
	// DefaultInterface.
	Name string
}

// Seed is a rendered NoCloud seed: the contents of its three files.
type Seed struct {
	// UserData is the #cloud-config document.
	UserData []byte
	// MetaData holds instance-id and local-hostname.
	MetaData []byte
	// NetworkConfig is a version 1 network configuration.
	NetworkConfig []byte
}

// Render validates c and renders its seed. The output is deterministic: the
// same Config always gives the same bytes.
func (c Config) Render() (Seed, error) {
	if err := c.Validate(); err != nil {
		return Seed{}, err
	}
	user, err := c.userData()
	if err != nil {
		return Seed{}, fmt.Errorf("render user-data: %w", err)
	}
	meta, err := c.metaData()
	if err != nil {
		return Seed{}, fmt.Errorf("render meta-data: %w", err)
	}
	network, err := c.networkConfig()
	if err != nil {
		return Seed{}, fmt.Errorf("render network-config: %w", err)
	}
	return Seed{UserData: user, MetaData: meta, NetworkConfig: network}, nil
}

var (
	// hostLabel is one label of an RFC 1123 host name.
	hostLabel = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)
	// userName is a portable Linux account name.
	userName = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`)
	// macAddress is six colon-separated hex octets.
	macAddress = regexp.MustCompile(`^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$`)
	// ifaceName is a Linux interface name (at most 15 bytes).
	ifaceName = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,15}$`)
	// instanceID keeps the ID to safe characters.
	instanceID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$`)
)

// Validate checks c; errors name the offending field.
func (c Config) Validate() error {
	if !instanceID.MatchString(c.InstanceID) {
		return fmt.Errorf("instance_id %q: want 1 to 128 letters, digits, '_', '.', ':' or '-'", c.InstanceID)
	}
	if err := validateHostname(c.Hostname); err != nil {
		return err
	}
	if name := c.userName(); !userName.MatchString(name) || name == "root" {
		return fmt.Errorf("user %q: want a Linux account name other than root (lower-case letters, digits, '_', '-'; at most 32)", name)
	}
	for i, k := range c.User.SSHAuthorizedKeys {
		if err := validateKey(k); err != nil {
			return fmt.Errorf("ssh_authorized_keys[%d]: %w", i, err)
		}
	}
	if !macAddress.MatchString(c.NIC.MAC) {
		return fmt.Errorf("nic mac %q: want six hex octets such as \"BC:24:11:2A:3B:4C\" (read it from the VM's net0)", c.NIC.MAC)
	}
	if name := c.nicName(); !ifaceName.MatchString(name) {
		return fmt.Errorf("nic name %q: want a Linux interface name such as %q", name, DefaultInterface)
	}
	if err := c.Heartbeat.validate(); err != nil {
		return err
	}
	if err := c.Workspace.validate(); err != nil {
		return err
	}
	if err := c.Secrets.validate(); err != nil {
		return err
	}
	return c.Job.validate()
}

func validateHostname(h string) error {
	if h == "" || len(h) > 253 {
		return fmt.Errorf("hostname %q: want 1 to 253 characters", h)
	}
	for _, label := range strings.Split(h, ".") {
		if !hostLabel.MatchString(label) {
			return fmt.Errorf("hostname %q: label %q is not an RFC 1123 host name label (letters, digits, '-'; not at either end)", h, label)
		}
	}
	return nil
}

func validateKey(k string) error {
	switch {
	case strings.TrimSpace(k) == "":
		return fmt.Errorf("empty key")
	case strings.ContainsAny(k, "\r\n\x00"):
		return fmt.Errorf("a key must be one line; give each key as its own entry")
	case strings.Contains(k, "PRIVATE KEY"):
		return fmt.Errorf("this is a private key; give the public key (the .pub file)")
	}
	for _, r := range k {
		if r < 0x20 && r != '\t' {
			return fmt.Errorf("control character %s in key", strconv.QuoteRune(r))
		}
	}
	return nil
}

func (c Config) userName() string {
	if c.User.Name == "" {
		return DefaultUser
	}
	return c.User.Name
}

func (c Config) nicName() string {
	if c.NIC.Name == "" {
		return DefaultInterface
	}
	return c.NIC.Name
}

// ISOFileName is the name the seed ISO of VM vmid is uploaded under, e.g.
// "agentlab-ci-101.iso" (PVE stores it as <storage>:iso/agentlab-ci-101.iso).
func ISOFileName(vmid int) string {
	return "agentlab-ci-" + strconv.Itoa(vmid) + ".iso"
}
