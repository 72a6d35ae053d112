// Command privtable writes internal/privileges' lists as the table the host
// setup script scripts/host/setup-tokens.sh reads, so the script, the docs
// and the provider's diagnostic share one list. Run by `make generate`:
//
//	go run ./tools/privtable > scripts/host/privileges.tsv
package main

import (
	"fmt"

	"github.com/agentlab/terraform-provider-agentlab/internal/privileges"
)

func main() {
	fmt.Print(privileges.ScriptTable())
}
