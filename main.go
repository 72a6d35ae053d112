// Command terraform-provider-agentlab is the AgentLab Terraform provider: it
// creates short-lived Proxmox VE sandboxes for AI agents from templates,
// with leases that the AgentLab reaper enforces.
package main

import (
	"context"
	"flag"
	"log"

	"github.com/hashicorp/terraform-plugin-framework/providerserver"

	"github.com/agentlab/terraform-provider-agentlab/provider"
)

// version is set at build time with -ldflags "-X main.version=1.2.3".
var version = "dev"

func main() {
	var debug bool
	flag.BoolVar(&debug, "debug", false, "run the provider with support for debuggers like delve (prints TF_REATTACH_PROVIDERS)")
	flag.Parse()

	opts := providerserver.ServeOpts{
		Address: "registry.terraform.io/agentlab/agentlab",
		Debug:   debug,
	}
	if err := providerserver.Serve(context.Background(), provider.New(version), opts); err != nil {
		log.Fatal(err)
	}
}
