package provider

import (
	"os"
	"strings"
	"testing"

	"github.com/agentlab/terraform-provider-agentlab/internal/privileges"
	"github.com/agentlab/terraform-provider-agentlab/internal/pve"
)

// TestPrivilegesDocumented: the provider docs show the privilege list the
// "lacks privileges" diagnostic uses, table and role command, so the two
// cannot disagree.
func TestPrivilegesDocumented(t *testing.T) {
	doc, err := os.ReadFile("../templates/index.md.tmpl")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		privileges.Markdown(privileges.Provider()),
		privileges.RoleCommand(privileges.ProviderRole, privileges.Provider()),
	} {
		if !strings.Contains(string(doc), want) {
			t.Errorf("templates/index.md.tmpl lacks the privileges from internal/privileges; put this in its Privileges section:\n\n%s", want)
		}
	}
	d := connectDiagnostic(providerSettings{Endpoint: "https://pve:8006/api2/json"}, pve403())
	for _, name := range privileges.Names(privileges.Provider()) {
		if !strings.Contains(d.Detail(), name) {
			t.Errorf("the lacks-privileges diagnostic does not name %s: %s", name, d.Detail())
		}
	}
}

// pve403 is the error the client returns when PVE refuses a request for
// lack of a privilege.
func pve403() error {
	return &pve.APIError{Method: "GET", Path: "/version", Status: 403, Message: "Permission check failed (/, Sys.Audit)"}
}
