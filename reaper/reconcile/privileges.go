package reconcile

import (
	"errors"
	"log/slog"

	"github.com/agentlab/terraform-provider-agentlab/internal/privileges"
	"github.com/agentlab/terraform-provider-agentlab/internal/pve"
)

// lacking is the log attribute that tells the operator, when Proxmox VE
// refused a call with 403, which privileges the reaper's token needs on
// which path and how to grant them; for any other error it is the empty
// attribute, which handlers leave out.
func lacking(err error) slog.Attr {
	if !errors.Is(err, pve.ErrForbidden) {
		return slog.Attr{}
	}
	ps := privileges.Reaper()
	return slog.String("fix", "the reaper's API token lacks a privilege; it needs "+privileges.ByPath(ps)+
		". Grant them with: "+privileges.RoleCommand(privileges.ReaperRole, ps)+
		", then pveum acl modify PATH -user USER -role "+privileges.ReaperRole+" for each path (docs/reaper.md)")
}
