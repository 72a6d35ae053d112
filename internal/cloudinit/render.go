package cloudinit

import (
	"bytes"
	"strings"

	"gopkg.in/yaml.v3"
)

// cloudConfig is the #cloud-config document. Field order is output order.
// Later features add fields here with omitempty (write_files for the
// encrypted secrets bundle, runcmd for the job runner).
type cloudConfig struct {
	Hostname       string      `yaml:"hostname"`
	ManageEtcHosts bool        `yaml:"manage_etc_hosts"`
	Users          []cloudUser `yaml:"users"`
	DisableRoot    bool        `yaml:"disable_root"`
	SSHPwauth      bool        `yaml:"ssh_pwauth"`
	WriteFiles     []writeFile `yaml:"write_files,omitempty"`
	FSSetup        []fsSetup   `yaml:"fs_setup,omitempty"`
	Mounts         [][]string  `yaml:"mounts,omitempty"`
	Runcmd         [][]string  `yaml:"runcmd,omitempty"`
}

// writeFile is one write_files entry; Defer writes it after users exist.
type writeFile struct {
	Path        string `yaml:"path"`
	Owner       string `yaml:"owner"`
	Permissions string `yaml:"permissions"`
	Content     string `yaml:"content"`
	Defer       bool   `yaml:"defer,omitempty"`
}

type cloudUser struct {
	Name              string   `yaml:"name"`
	Shell             string   `yaml:"shell"`
	LockPasswd        bool     `yaml:"lock_passwd"`
	Sudo              string   `yaml:"sudo,omitempty"`
	SSHAuthorizedKeys []string `yaml:"ssh_authorized_keys,omitempty"`
}

type metaData struct {
	InstanceID    string `yaml:"instance-id"`
	LocalHostname string `yaml:"local-hostname"`
}

// networkV1 is cloud-init's network configuration version 1, the form
// Proxmox VE itself writes for NoCloud seeds.
type networkV1 struct {
	Version int          `yaml:"version"`
	Config  []physicalV1 `yaml:"config"`
}

type physicalV1 struct {
	Type       string     `yaml:"type"`
	Name       string     `yaml:"name"`
	MACAddress string     `yaml:"mac_address"`
	Subnets    []subnetV1 `yaml:"subnets"`
}

type subnetV1 struct {
	Type string `yaml:"type"`
}

func (c Config) userData() ([]byte, error) {
	u := cloudUser{
		Name:              c.userName(),
		Shell:             "/bin/bash",
		LockPasswd:        true,
		SSHAuthorizedKeys: trimAll(c.User.SSHAuthorizedKeys),
	}
	if c.User.Sudo {
		u.Sudo = "ALL=(ALL) NOPASSWD:ALL"
	}
	doc := cloudConfig{
		Hostname:       c.Hostname,
		ManageEtcHosts: true,
		Users:          []cloudUser{u},
		DisableRoot:    true,
		SSHPwauth:      false,
		WriteFiles:     append(append(c.secretsFiles(), c.heartbeatFiles()...), c.jobFiles()...),
		FSSetup:        c.workspaceFS(),
		Mounts:         c.workspaceMounts(),
		Runcmd:         append(append(c.secretsCommands(), c.jobCommands()...), c.heartbeatCommands()...),
	}
	return marshal("#cloud-config\n", doc)
}

func (c Config) metaData() ([]byte, error) {
	return marshal("", metaData{InstanceID: c.InstanceID, LocalHostname: c.Hostname})
}

func (c Config) networkConfig() ([]byte, error) {
	return marshal("", networkV1{
		Version: 1,
		Config: []physicalV1{{
			Type:       "physical",
			Name:       c.nicName(),
			MACAddress: strings.ToLower(c.NIC.MAC),
			Subnets:    []subnetV1{{Type: "dhcp4"}},
		}},
	})
}

// marshal writes header followed by v as YAML with two-space indents.
func marshal(header string, v any) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(header)
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func trimAll(in []string) []string {
	var out []string
	for _, s := range in {
		out = append(out, strings.TrimSpace(s))
	}
	return out
}
