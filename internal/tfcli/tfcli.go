// Package tfcli knows the two command-line tools that drive the AgentLab
// provider, Terraform and OpenTofu: how to tell which one a binary is, and
// the registry address under which each one looks for the provider.
//
// A configuration names the provider by its short source "agentlab/agentlab";
// Terraform completes it with registry.terraform.io and OpenTofu with
// registry.opentofu.org. Whatever serves or installs the provider for a CLI
// (the acceptance tests' in-process server, a local mirror, dev_overrides)
// must use that CLI's full address, or the CLI looks for it elsewhere.
package tfcli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// Namespace and Type make up the provider's source address.
const (
	Namespace = "agentlab"
	Type      = "agentlab"
	// Source is what configurations write in required_providers.
	Source = Namespace + "/" + Type
)

// Kind is one of the CLIs the provider supports.
type Kind int

// The supported CLIs.
const (
	Terraform Kind = iota
	OpenTofu
)

// ErrNotFound is Find's answer where neither CLI is on PATH.
var ErrNotFound = errors.New("neither terraform nor tofu is on PATH")

// Find returns the CLI to run: path when it is set (a flag, or
// TF_ACC_TERRAFORM_PATH), else terraform from PATH, else tofu from PATH;
// ErrNotFound when there is none.
func Find(path string) (string, error) {
	if path != "" {
		return path, nil
	}
	for _, name := range []string{"terraform", "tofu"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", ErrNotFound
}

// Kinds lists every supported CLI.
func Kinds() []Kind { return []Kind{Terraform, OpenTofu} }

// String returns the CLI's product name, as its version command prints it.
func (k Kind) String() string {
	switch k {
	case Terraform:
		return "Terraform"
	case OpenTofu:
		return "OpenTofu"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// RegistryHost is the registry a short source address resolves to for k.
func (k Kind) RegistryHost() string {
	if k == OpenTofu {
		return "registry.opentofu.org"
	}
	return "registry.terraform.io"
}

// ProviderAddress is the provider's fully qualified address for k, such as
// registry.opentofu.org/agentlab/agentlab.
func (k Kind) ProviderAddress() string {
	return k.RegistryHost() + "/" + Source
}

// ErrUnknownCLI is returned for a binary whose version output is neither
// Terraform's nor OpenTofu's.
var ErrUnknownCLI = errors.New("not terraform or tofu")

// Info is what a CLI binary says about itself.
type Info struct {
	Kind    Kind
	Version string // without the leading v, e.g. "1.11.6"
}

// Detect runs path's version command and reports which CLI it is. It tells
// them apart by what the binary prints, not by its file name: a tofu binary
// installed as "terraform" is still OpenTofu and resolves addresses on its
// registry.
func Detect(ctx context.Context, path string) (Info, error) {
	cmd := exec.CommandContext(ctx, path, "version")
	// Terraform asks checkpoint.hashicorp.com whether it is outdated.
	cmd.Env = append(os.Environ(), "CHECKPOINT_DISABLE=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return Info{}, fmt.Errorf("%s version: %w: %s", path, err, strings.TrimSpace(stderr.String()))
	}
	info, err := ParseVersion(out)
	if err != nil {
		return Info{}, fmt.Errorf("%s: %w", path, err)
	}
	return info, nil
}

// ParseVersion reads the output of "terraform version" or "tofu version",
// whose first line is "Terraform v1.11.4" or "OpenTofu v1.11.6".
func ParseVersion(out []byte) (Info, error) {
	line, _, _ := bytes.Cut(out, []byte("\n"))
	name, ver, ok := strings.Cut(strings.TrimSpace(string(line)), " ")
	if !ok || !strings.HasPrefix(ver, "v") {
		return Info{}, fmt.Errorf("%w: version prints %q, want \"Terraform vX.Y.Z\" or \"OpenTofu vX.Y.Z\"", ErrUnknownCLI, string(line))
	}
	for _, k := range Kinds() {
		if name == k.String() {
			return Info{Kind: k, Version: strings.TrimPrefix(ver, "v")}, nil
		}
	}
	return Info{}, fmt.Errorf("%w: version prints %q", ErrUnknownCLI, strings.TrimSpace(string(line)))
}
