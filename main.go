// Command terraform-provider-agentlab is the AgentLab Terraform provider: it
// creates short-lived Proxmox VE sandboxes for AI agents from templates,
// with leases that the AgentLab reaper enforces.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"strings"

	"github.com/hashicorp/terraform-plugin-framework/providerserver"

	"github.com/agentlab/terraform-provider-agentlab/internal/tfcli"
	"github.com/agentlab/terraform-provider-agentlab/provider"
)

// version is set at build time with -ldflags "-X main.version=1.2.3".
var version = "dev"

func main() {
	var (
		debug    bool
		debugCLI string
	)
	flag.BoolVar(&debug, "debug", false, "run the provider with support for debuggers like delve (prints TF_REATTACH_PROVIDERS)")
	flag.StringVar(&debugCLI, "debug-cli", "terraform", "with -debug: the CLI that attaches, `terraform or tofu`; "+
		"TF_REATTACH_PROVIDERS names the provider by that CLI's registry address")
	flag.Parse()

	address, err := serveAddress(debugCLI)
	if err != nil {
		log.Fatal(err)
	}
	opts := providerserver.ServeOpts{Address: address, Debug: debug}
	if err := providerserver.Serve(context.Background(), provider.New(version), opts); err != nil {
		log.Fatal(err)
	}
}

// errUnknownDebugCLI is returned for a -debug-cli that names no supported CLI.
var errUnknownDebugCLI = errors.New("unknown CLI")

// serveAddress returns the provider address to serve under for the CLI
// named cli ("terraform", or "tofu" or "opentofu" for OpenTofu): the address
// that CLI completes "agentlab/agentlab" to. A debug session's
// TF_REATTACH_PROVIDERS is keyed by it, and a CLI ignores an entry under
// another registry's address.
func serveAddress(cli string) (string, error) {
	switch strings.ToLower(strings.TrimSpace(cli)) {
	case "terraform":
		return tfcli.Terraform.ProviderAddress(), nil
	case "tofu", "opentofu":
		return tfcli.OpenTofu.ProviderAddress(), nil
	}
	return "", fmt.Errorf("-debug-cli %q: %w; use terraform or tofu", cli, errUnknownDebugCLI)
}
