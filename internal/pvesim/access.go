package pvesim

import (
	"sort"
	"strconv"
	"strings"
)

// Resource pools, users and permissions: the read calls other Proxmox
// clients make before anything else (bpg's and Telmate's Terraform
// providers list pools, users and the caller's permissions on start-up).
// The simulator's users and tokens are administrators: every token has the
// privileges of root@pam (privsep 0), so /access/permissions reports every
// privilege on every path.

// allPrivileges are PVE 9's privileges (pve-access-control's privgroups plus
// Permissions.Modify), the Administrator role.
var allPrivileges = []string{
	"Datastore.Allocate", "Datastore.AllocateSpace", "Datastore.AllocateTemplate", "Datastore.Audit",
	"Group.Allocate", "Mapping.Audit", "Mapping.Modify", "Mapping.Use", "Permissions.Modify",
	"Pool.Allocate", "Pool.Audit", "Realm.Allocate", "Realm.AllocateUser",
	"SDN.Allocate", "SDN.Audit", "SDN.Use",
	"Sys.AccessNetwork", "Sys.Audit", "Sys.Console", "Sys.Incoming", "Sys.Modify", "Sys.PowerMgmt", "Sys.Syslog",
	"User.Modify",
	"VM.Allocate", "VM.Audit", "VM.Backup", "VM.Clone", "VM.Config.CDROM", "VM.Config.CPU", "VM.Config.Cloudinit",
	"VM.Config.Disk", "VM.Config.HWType", "VM.Config.Memory", "VM.Config.Network", "VM.Config.Options",
	"VM.Console", "VM.GuestAgent.Audit", "VM.GuestAgent.FileRead", "VM.GuestAgent.FileSystemMgmt",
	"VM.GuestAgent.FileWrite", "VM.GuestAgent.Unrestricted", "VM.Migrate", "VM.PowerMgmt", "VM.Replicate",
	"VM.Snapshot", "VM.Snapshot.Rollback",
}

// permissionPaths are the top-level paths PVE's get_effective_permissions
// always reports.
var permissionPaths = []string{"/", "/access", "/access/groups", "/nodes", "/pool", "/sdn", "/storage", "/vms"}

// handlePoolList is GET /pools: [] without pools; with poolid, that pool
// and its members.
func handlePoolList(c *call) (any, error) {
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if id := c.str("poolid"); id != "" {
		if !s.pools[id] {
			return nil, fail("pool '%s' does not exist", id)
		}
		return []map[string]any{{"poolid": id, "members": s.poolMembersLocked(id, c.str("type"))}}, nil
	}
	ids := make([]string, 0, len(s.pools))
	for id := range s.pools {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	out := make([]map[string]any, 0, len(ids))
	for _, id := range ids {
		out = append(out, map[string]any{"poolid": id})
	}
	return out, nil
}

// handlePool is GET /pools/{poolid}.
func handlePool(c *call) (any, error) {
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	id := c.str("poolid")
	if !s.pools[id] {
		return nil, fail("pool '%s' does not exist", id)
	}
	return map[string]any{"members": s.poolMembersLocked(id, c.str("type"))}, nil
}

// poolMembersLocked lists the guests in pool id as /cluster/resources
// items (the simulator's pools hold no storage), filtered by type.
func (s *Server) poolMembersLocked(id, typ string) []map[string]any {
	out := []map[string]any{}
	if typ != "" && typ != "qemu" {
		return out
	}
	for _, vmid := range s.st.sortedVMIDs() {
		if v := s.st.VMs[vmid]; v.Pool == id {
			out = append(out, s.vmResourceLocked(v))
		}
	}
	return out
}

// handleUsers is GET /access/users: root@pam, the --user users and the
// owners of the tokens; with full=1 each user's tokens.
func handleUsers(c *call) (any, error) {
	s := c.s
	users := map[string][]string{"root@pam": nil}
	for u := range s.users {
		users[u] = users[u]
	}
	for id := range s.tokens {
		u, tok, _ := strings.Cut(id, "!")
		users[u] = append(users[u], tok)
	}
	if c.has("enabled") && !c.flag("enabled") {
		return []map[string]any{}, nil // every user is enabled
	}
	names := make([]string, 0, len(users))
	for u := range users {
		names = append(names, u)
	}
	sort.Strings(names)
	out := make([]map[string]any, 0, len(names))
	for _, u := range names {
		_, realm, _ := strings.Cut(u, "@")
		typ := "pve"
		if realm == "pam" {
			typ = "pam"
		}
		m := map[string]any{"userid": u, "enable": 1, "expire": 0, "realm-type": typ}
		if c.flag("full") {
			toks := users[u]
			sort.Strings(toks)
			list := make([]map[string]any, 0, len(toks))
			for _, t := range toks {
				list = append(list, map[string]any{"tokenid": t, "expire": 0, "privsep": 0})
			}
			m["tokens"] = list
			m["groups"] = "" // PVE joins the (empty) group list with commas
		}
		out = append(out, m)
	}
	return out, nil
}

// handlePermissions is GET /access/permissions: the privileges of the
// caller (or of userid) by path. A user or token the simulator does not
// know has none: the answer is {}, as PVE's permissions() gives.
func handlePermissions(c *call) (any, error) {
	s := c.s
	if u := c.str("userid"); u != "" {
		if !userIDRE.MatchString(u) && !tokenIDRE.MatchString(u) {
			return nil, paramErr1("userid", "value does not match the regex pattern")
		}
		owner, _, isToken := strings.Cut(u, "!")
		_, knownToken := s.tokens[u]
		_, knownUser := s.users[owner]
		if (isToken && !knownToken) || (!isToken && !knownUser && owner != "root@pam" && !s.ownsToken(owner)) {
			return map[string]any{}, nil
		}
	}
	privs := func() map[string]any {
		m := make(map[string]any, len(allPrivileges))
		for _, p := range allPrivileges {
			m[p] = 1
		}
		return m
	}
	if p := c.str("path"); p != "" {
		return map[string]any{p: privs()}, nil
	}
	paths := append([]string(nil), permissionPaths...)
	s.mu.Lock()
	for _, vmid := range s.st.sortedVMIDs() {
		if s.st.VMs[vmid].Pool != "" {
			paths = append(paths, "/vms/"+strconv.Itoa(vmid))
		}
	}
	s.mu.Unlock()
	out := map[string]any{}
	for _, p := range paths {
		out[p] = privs()
	}
	return out, nil
}

// ownsToken reports whether user owns one of the accepted tokens.
func (s *Server) ownsToken(user string) bool {
	for id := range s.tokens {
		if u, _, _ := strings.Cut(id, "!"); u == user {
			return true
		}
	}
	return false
}
