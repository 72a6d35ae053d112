package cloudinit

import (
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

const testKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl user@host"

func testConfig() Config {
	return Config{
		InstanceID: "agentlab-101-abc",
		Hostname:   "sbx-1",
		User:       User{SSHAuthorizedKeys: []string{testKey, "  ecdsa-sha2-nistp256 AAAAE2Vj second  "}, Sudo: true},
		NIC:        NIC{MAC: "BC:24:11:2A:3B:4C"},
	}
}

func TestRender(t *testing.T) {
	seed, err := testConfig().Render()
	if err != nil {
		t.Fatalf("Render: %v", err)
	}
	wantUser := `#cloud-config
hostname: sbx-1
manage_etc_hosts: true
users:
  - name: agent
    shell: /bin/bash
    lock_passwd: true
    sudo: ALL=(ALL) NOPASSWD:ALL
    ssh_authorized_keys:
      - ` + testKey + `
      - ecdsa-sha2-nistp256 AAAAE2Vj second
disable_root: true
ssh_pwauth: false
`
	wantMeta := "instance-id: agentlab-101-abc\nlocal-hostname: sbx-1\n"
	wantNet := `version: 1
config:
  - type: physical
    name: eth0
    mac_address: bc:24:11:2a:3b:4c
    subnets:
      - type: dhcp4
`
	for _, f := range []struct{ name, got, want string }{
		{UserDataFile, string(seed.UserData), wantUser},
		{MetaDataFile, string(seed.MetaData), wantMeta},
		{NetworkConfigFile, string(seed.NetworkConfig), wantNet},
	} {
		if f.got != f.want {
			t.Errorf("%s:\ngot\n%s\nwant\n%s", f.name, f.got, f.want)
		}
	}
	again, err := testConfig().Render()
	if err != nil || string(again.UserData) != string(seed.UserData) {
		t.Errorf("a second Render gave different user-data: %v", err)
	}
}

func TestRenderCustomUserAndNIC(t *testing.T) {
	c := testConfig()
	c.User = User{Name: "dev", SSHAuthorizedKeys: nil}
	c.NIC.Name = "ens18"
	seed, err := c.Render()
	if err != nil {
		t.Fatalf("Render: %v", err)
	}
	var doc struct {
		Users []map[string]any `yaml:"users"`
	}
	if err := yaml.Unmarshal(seed.UserData, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Users) != 1 || doc.Users[0]["name"] != "dev" {
		t.Fatalf("users = %v; want one user named dev", doc.Users)
	}
	if _, ok := doc.Users[0]["sudo"]; ok {
		t.Errorf("user without Sudo got a sudo entry: %v", doc.Users[0])
	}
	if _, ok := doc.Users[0]["ssh_authorized_keys"]; ok {
		t.Errorf("user without keys got ssh_authorized_keys: %v", doc.Users[0])
	}
	if !strings.Contains(string(seed.NetworkConfig), "name: ens18\n") {
		t.Errorf("network-config does not name ens18:\n%s", seed.NetworkConfig)
	}
}

func TestRenderHostileValuesStayData(t *testing.T) {
	c := testConfig()
	c.User.SSHAuthorizedKeys = []string{`ssh-ed25519 AAAA x"} ]; runcmd: [reboot] #`, "ssh-rsa AAAA a: b"}
	seed, err := c.Render()
	if err != nil {
		t.Fatalf("Render: %v", err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(seed.UserData, &doc); err != nil {
		t.Fatalf("user-data is not YAML: %v\n%s", err, seed.UserData)
	}
	if _, ok := doc["runcmd"]; ok {
		t.Errorf("a key's text became a runcmd entry:\n%s", seed.UserData)
	}
	keys := doc["users"].([]any)[0].(map[string]any)["ssh_authorized_keys"].([]any)
	if keys[0] != c.User.SSHAuthorizedKeys[0] || keys[1] != c.User.SSHAuthorizedKeys[1] {
		t.Errorf("keys came back as %q; want %q", keys, c.User.SSHAuthorizedKeys)
	}
}

func TestUserDataHasNoPassword(t *testing.T) {
	seed, err := testConfig().Render()
	if err != nil {
		t.Fatal(err)
	}
	var doc any
	if err := yaml.Unmarshal(seed.UserData, &doc); err != nil {
		t.Fatal(err)
	}
	forbidden := map[string]bool{"password": true, "passwd": true, "plain_text_passwd": true, "hashed_passwd": true, "chpasswd": true}
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, child := range x {
				if forbidden[k] {
					t.Errorf("user-data sets %s.%s", path, k)
				}
				walk(path+"."+k, child)
			}
		case []any:
			for _, child := range x {
				walk(path+"[]", child)
			}
		}
	}
	walk("", doc)
	user := doc.(map[string]any)["users"].([]any)[0].(map[string]any)
	if user["lock_passwd"] != true {
		t.Errorf("lock_passwd = %v; want true", user["lock_passwd"])
	}
	if doc.(map[string]any)["ssh_pwauth"] != false {
		t.Errorf("ssh_pwauth = %v; want false", doc.(map[string]any)["ssh_pwauth"])
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Config)
		want   string // "" means valid
	}{
		{"valid", func(*Config) {}, ""},
		{"fqdn", func(c *Config) { c.Hostname = "sbx-1.lab.example" }, ""},
		{"no instance id", func(c *Config) { c.InstanceID = "" }, "instance_id"},
		{"instance id with newline", func(c *Config) { c.InstanceID = "a\nb" }, "instance_id"},
		{"no hostname", func(c *Config) { c.Hostname = "" }, "hostname"},
		{"hostname underscore", func(c *Config) { c.Hostname = "sbx_1" }, "hostname"},
		{"hostname leading dash", func(c *Config) { c.Hostname = "-sbx" }, "hostname"},
		{"hostname empty label", func(c *Config) { c.Hostname = "a..b" }, "hostname"},
		{"root user", func(c *Config) { c.User.Name = "root" }, "user"},
		{"bad user", func(c *Config) { c.User.Name = "Agent Smith" }, "user"},
		{"empty key", func(c *Config) { c.User.SSHAuthorizedKeys = []string{" "} }, "ssh_authorized_keys[0]: empty"},
		{"two keys in one", func(c *Config) { c.User.SSHAuthorizedKeys = []string{testKey + "\n" + testKey} }, "one line"},
		{"private key", func(c *Config) { c.User.SSHAuthorizedKeys = []string{"-----BEGIN OPENSSH PRIVATE KEY----- abc"} }, "private key"},
		{"control character", func(c *Config) { c.User.SSHAuthorizedKeys = []string{"ssh-rsa \x1b[31m"} }, "control character"},
		{"no mac", func(c *Config) { c.NIC.MAC = "" }, "nic mac"},
		{"bad mac", func(c *Config) { c.NIC.MAC = "bc-24-11-2a-3b-4c" }, "nic mac"},
		{"bad nic name", func(c *Config) { c.NIC.Name = "a-very-long-interface-name" }, "nic name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := testConfig()
			tt.change(&c)
			err := c.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate() = %v; want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate() = %v; want an error containing %q", err, tt.want)
			}
			if _, err := c.Render(); err == nil {
				t.Errorf("Render succeeded on an invalid config")
			}
		})
	}
}

func TestISOFileName(t *testing.T) {
	if got, want := ISOFileName(101), "agentlab-ci-101.iso"; got != want {
		t.Errorf("ISOFileName(101) = %q; want %q", got, want)
	}
}
