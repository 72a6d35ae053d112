package provider

import (
	"fmt"
	"net"
	"regexp"
	"testing"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
)

func TestAccProvider_connectionDiagnostics(t *testing.T) {
	e := newAccEnv(t)
	// A port nothing listens on.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()

	provider := func(endpoint, token string, insecure bool) string {
		return fmt.Sprintf(`
provider "agentlab" {
  endpoint  = %q
  api_token = %q
  insecure  = %t
}
data "agentlab_sandboxes" "all" {}
`, endpoint, token, insecure)
	}
	const wrongToken = "root@pam!test=00000000-0000-0000-0000-000000000000"
	resource.ParallelTest(t, resource.TestCase{
		ProtoV6ProviderFactories: e.factories(),
		Steps: []resource.TestStep{
			{
				Config:      provider(e.sim.URL, wrongToken, true),
				ExpectError: regexp.MustCompile(`(?s)Proxmox VE rejected the API token.*root@pam`),
			},
			{
				Config:      provider(e.sim.URL, "root@pam-test-secret", true),
				ExpectError: regexp.MustCompile(`(?s)Malformed Proxmox VE API token`),
			},
			{
				// The simulator's certificate is self-signed.
				Config:      provider(e.sim.URL, e.sim.Token, false),
				ExpectError: regexp.MustCompile(`(?s)TLS certificate is not trusted.*insecure = true`),
			},
			{
				Config:      provider("https://"+closed, e.sim.Token, true),
				ExpectError: regexp.MustCompile(`(?s)Cannot reach Proxmox VE`),
			},
			{
				Config:      provider("ftp://"+e.sim.Host, e.sim.Token, true),
				ExpectError: regexp.MustCompile(`(?s)Invalid Proxmox VE endpoint`),
			},
			{
				// With or without /api2/json.
				Config: provider("https://"+e.sim.Host, e.sim.Token, true),
			},
		},
	})
}

func TestAccProvider_environment(t *testing.T) {
	e := newAccEnv(t)
	t.Setenv(envEndpoint, "https://"+e.sim.Host+"/")
	t.Setenv(envAPIToken, e.sim.Token)
	t.Setenv(envInsecure, "true")
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: e.factories(),
		Steps: []resource.TestStep{
			{
				// The block's insecure = false beats PROXMOX_VE_INSECURE.
				Config: `
provider "agentlab" {
  insecure = false
}
data "agentlab_sandboxes" "all" {}
`,
				ExpectError: regexp.MustCompile(`TLS certificate is not trusted`),
			},
			{Config: `data "agentlab_sandboxes" "all" {}`},
		},
	})
}
