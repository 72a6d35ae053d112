package pvesim

// Parameter specs shared by many routes.
var (
	pNode    = Param{Name: "node", Type: "string", Format: "pve-node"}
	pVMID    = Param{Name: "vmid", Type: "integer", Format: "pve-vmid", Minimum: 100, Maximum: 999999999, HasMin: true, HasMax: true}
	pStorage = Param{Name: "storage", Type: "string", Format: "pve-storage-id"}
	pUPID    = Param{Name: "upid", Type: "string"}
)

func opt(p Param) Param { p.Optional = true; return p }

func boolParam(name string) Param { return Param{Name: name, Type: "boolean", Optional: true} }

func strParam(name string) Param { return Param{Name: name, Type: "string", Optional: true} }

func intParam(name string, min, max float64, hasMax bool) Param {
	return Param{Name: name, Type: "integer", Optional: true, Minimum: min, HasMin: true, Maximum: max, HasMax: hasMax}
}

// driveNames are the values of resize's disk parameter.
var driveNames = func() []string {
	var out []string
	add := func(prefix string, n int) {
		for i := 0; i <= n; i++ {
			out = append(out, prefix+itoa(i))
		}
	}
	add("ide", 3)
	add("scsi", 30)
	add("virtio", 15)
	add("sata", 5)
	out = append(out, "efidisk0", "tpmstate0")
	return out
}()

func itoa(i int) string {
	if i < 10 {
		return string(rune('0' + i))
	}
	return itoa(i/10) + string(rune('0'+i%10))
}

// routeTable is every API method the simulator serves, with the parameters
// PVE accepts for it.
func routeTable() []*Route {
	vm := []Param{pNode, pVMID}
	with := func(base []Param, more ...Param) []Param { return append(append([]Param(nil), base...), more...) }
	return []*Route{
		{Method: "POST", Path: "/access/ticket", Protected: true, NoAuth: true, Returns: "object", handle: handleTicket, Params: []Param{
			{Name: "username", Type: "string", MaxLength: 64},
			{Name: "password", Type: "string"},
			opt(Param{Name: "realm", Type: "string", Format: "pve-realm", MaxLength: 32}),
			opt(Param{Name: "otp", Type: "string"}),
			opt(Param{Name: "path", Type: "string", MaxLength: 64}),
			opt(Param{Name: "privs", Type: "string", Format: "pve-priv-list", MaxLength: 64}),
			boolParam("new-format"),
			strParam("tfa-challenge"),
		}},
		{Method: "GET", Path: "/version", Returns: "object", handle: handleVersion},
		{Method: "GET", Path: "/pools", Returns: "array", handle: handlePoolList, Params: []Param{
			opt(Param{Name: "poolid", Type: "string", Format: "pve-poolid"}),
			opt(Param{Name: "type", Type: "string", Enum: []string{"qemu", "lxc", "storage"}}),
		}},
		{Method: "GET", Path: "/pools/{poolid}", Returns: "object", handle: handlePool, Params: []Param{
			{Name: "poolid", Type: "string", Format: "pve-poolid"},
			opt(Param{Name: "type", Type: "string", Enum: []string{"qemu", "lxc", "storage"}}),
		}},
		{Method: "GET", Path: "/access/users", Protected: true, Returns: "array", handle: handleUsers, Params: []Param{
			boolParam("enabled"), boolParam("full"),
		}},
		{Method: "GET", Path: "/access/permissions", Returns: "object", handle: handlePermissions, Params: []Param{
			strParam("path"), strParam("userid"),
		}},
		{Method: "GET", Path: "/cluster/nextid", Returns: "integer", handle: handleNextID, Params: []Param{
			opt(Param{Name: "vmid", Type: "integer", Format: "pve-vmid", Minimum: 100, Maximum: 999999999, HasMin: true, HasMax: true}),
		}},
		{Method: "GET", Path: "/cluster/resources", Returns: "array", handle: handleClusterResources, Params: []Param{
			opt(Param{Name: "type", Type: "string", Enum: []string{"vm", "storage", "node", "sdn"}}),
		}},
		{Method: "GET", Path: "/cluster/ha/resources/{sid}", Returns: "object", handle: handleHAResource, Params: []Param{
			{Name: "sid", Type: "string", Format: "pve-ha-resource-or-vm-id"},
		}},
		{Method: "GET", Path: "/nodes", Returns: "array", handle: handleNodes},
		{Method: "GET", Path: "/nodes/{node}/qemu", Protected: true, Returns: "array", handle: handleQemuList, Params: []Param{
			pNode, boolParam("full"),
		}},
		{Method: "POST", Path: "/nodes/{node}/qemu", Protected: true, Returns: "string", handle: handleCreate, Params: qemuCreateParams()},
		{Method: "DELETE", Path: "/nodes/{node}/qemu/{vmid}", Protected: true, Returns: "string", handle: handleDestroy, Params: with(vm,
			boolParam("purge"), boolParam("destroy-unreferenced-disks"), boolParam("skiplock"))},
		{Method: "POST", Path: "/nodes/{node}/qemu/{vmid}/clone", Protected: true, Returns: "string", handle: handleClone, Params: with(vm,
			Param{Name: "newid", Type: "integer", Format: "pve-vmid", Minimum: 100, Maximum: 999999999, HasMin: true, HasMax: true},
			opt(Param{Name: "name", Type: "string", Format: "dns-name"}),
			strParam("description"),
			opt(Param{Name: "pool", Type: "string", Format: "pve-poolid"}),
			opt(Param{Name: "snapname", Type: "string", Format: "pve-configid", MaxLength: 40}),
			opt(pStorage),
			opt(Param{Name: "format", Type: "string", Enum: []string{"raw", "qcow2", "vmdk"}}),
			boolParam("full"),
			opt(Param{Name: "target", Type: "string", Format: "pve-node"}),
			intParam("bwlimit", 0, 0, false),
		)},
		{Method: "GET", Path: "/nodes/{node}/qemu/{vmid}/config", Returns: "object", handle: handleGetConfig, Params: with(vm,
			boolParam("current"),
			opt(Param{Name: "snapshot", Type: "string", Format: "pve-configid", MaxLength: 40}),
		)},
		{Method: "PUT", Path: "/nodes/{node}/qemu/{vmid}/config", Protected: true, Returns: "null", handle: handlePutConfig, Params: qemuPutConfigParams()},
		{Method: "POST", Path: "/nodes/{node}/qemu/{vmid}/config", Protected: true, Returns: "string", handle: handlePostConfig, Params: qemuPostConfigParams()},
		{Method: "GET", Path: "/nodes/{node}/qemu/{vmid}/pending", Returns: "array", handle: handleGetPending, Params: vm},
		{Method: "GET", Path: "/nodes/{node}/qemu/{vmid}/status/current", Protected: true, Returns: "object", handle: handleStatusCurrent, Params: vm},
		{Method: "POST", Path: "/nodes/{node}/qemu/{vmid}/status/start", Protected: true, Returns: "string", handle: handleStart, Params: with(vm,
			boolParam("skiplock"),
			strParam("stateuri"),
			opt(Param{Name: "migratedfrom", Type: "string", Format: "pve-node"}),
			opt(Param{Name: "migration_type", Type: "string", Enum: []string{"secure", "insecure"}}),
			opt(Param{Name: "migration_network", Type: "string", Format: "CIDR"}),
			strParam("machine"),
			strParam("targetstorage"),
			intParam("timeout", 0, 0, false),
			strParam("force-cpu"),
			strParam("nets-host-mtu"),
			boolParam("with-conntrack-state"),
		)},
		{Method: "POST", Path: "/nodes/{node}/qemu/{vmid}/status/stop", Protected: true, Returns: "string", handle: handleStop, Params: with(vm,
			boolParam("skiplock"),
			opt(Param{Name: "migratedfrom", Type: "string", Format: "pve-node"}),
			intParam("timeout", 0, 0, false),
			boolParam("keepActive"),
			boolParam("overrule-shutdown"),
		)},
		{Method: "POST", Path: "/nodes/{node}/qemu/{vmid}/status/shutdown", Protected: true, Returns: "string", handle: handleShutdown, Params: with(vm,
			boolParam("skiplock"),
			intParam("timeout", 0, 0, false),
			boolParam("forceStop"),
			boolParam("keepActive"),
		)},
		{Method: "POST", Path: "/nodes/{node}/qemu/{vmid}/status/reboot", Protected: true, Returns: "string", handle: handleReboot, Params: with(vm,
			intParam("timeout", 0, 0, false),
		)},
		{Method: "PUT", Path: "/nodes/{node}/qemu/{vmid}/resize", Protected: true, Returns: "string", handle: handleResize, Params: with(vm,
			boolParam("skiplock"),
			Param{Name: "disk", Type: "string", Enum: driveNames},
			Param{Name: "size", Type: "string", Pattern: `\+?\d+(\.\d+)?[KMGT]?`},
			opt(Param{Name: "digest", Type: "string", MaxLength: 40}),
		)},
		{Method: "PUT", Path: "/nodes/{node}/qemu/{vmid}/cloudinit", Protected: true, Returns: "null", handle: handleCloudinitUpdate, Params: vm},
		{Method: "GET", Path: "/nodes/{node}/qemu/{vmid}/agent/network-get-interfaces", Protected: true, Returns: "object", handle: handleAgentInterfaces, Params: vm},
		{Method: "GET", Path: "/nodes/{node}/tasks", Returns: "array", handle: handleTaskList, Params: []Param{
			pNode,
			intParam("start", 0, 0, false),
			intParam("limit", 0, 0, false),
			opt(Param{Name: "userfilter", Type: "string"}),
			opt(Param{Name: "typefilter", Type: "string"}),
			opt(Param{Name: "vmid", Type: "integer", Format: "pve-vmid", Minimum: 100, Maximum: 999999999, HasMin: true, HasMax: true}),
			boolParam("errors"),
			{Name: "since", Type: "integer", Optional: true},
			{Name: "until", Type: "integer", Optional: true},
			opt(Param{Name: "source", Type: "string", Enum: []string{"archive", "active", "all"}}),
			opt(Param{Name: "statusfilter", Type: "string", Format: "pve-task-status-type-list"}),
		}},
		{Method: "GET", Path: "/nodes/{node}/tasks/{upid}/status", Protected: true, Returns: "object", handle: handleTaskStatus, Params: []Param{pNode, pUPID}},
		{Method: "GET", Path: "/nodes/{node}/tasks/{upid}/log", Protected: true, Returns: "array", handle: handleTaskLog, Params: []Param{
			pNode, pUPID,
			intParam("start", 0, 0, false),
			intParam("limit", 0, 0, false),
			boolParam("download"),
		}},
		{Method: "GET", Path: "/nodes/{node}/storage", Protected: true, Returns: "array", handle: handleStorageList, Params: []Param{
			pNode,
			opt(Param{Name: "content", Type: "string", Format: "pve-storage-content-list"}),
			boolParam("enabled"),
			opt(Param{Name: "format", Type: "boolean"}),
			opt(pStorage),
			opt(Param{Name: "target", Type: "string", Format: "pve-node"}),
		}},
		{Method: "GET", Path: "/nodes/{node}/storage/{storage}/content", Protected: true, Returns: "array", handle: handleContentList, Params: []Param{
			pNode, pStorage,
			opt(Param{Name: "content", Type: "string", Format: "pve-storage-content"}),
			opt(Param{Name: "vmid", Type: "integer", Format: "pve-vmid", Minimum: 100, Maximum: 999999999, HasMin: true, HasMax: true}),
		}},
		{Method: "POST", Path: "/nodes/{node}/storage/{storage}/content", Protected: true, Returns: "string", handle: handleContentAlloc, Params: []Param{
			pNode, pStorage,
			{Name: "filename", Type: "string"},
			{Name: "vmid", Type: "integer", Format: "pve-vmid", Minimum: 100, Maximum: 999999999, HasMin: true, HasMax: true},
			{Name: "size", Type: "string", Pattern: `\d+[MG]?`},
			opt(Param{Name: "format", Type: "string", Enum: []string{"raw", "qcow2", "subvol", "vmdk"}}),
		}},
		{Method: "GET", Path: "/nodes/{node}/storage/{storage}/content/{volume}", Protected: true, Returns: "object", handle: handleContentInfo, Params: []Param{
			pNode, opt(pStorage), {Name: "volume", Type: "string"},
		}},
		{Method: "DELETE", Path: "/nodes/{node}/storage/{storage}/content/{volume}", Protected: true, Returns: "string", handle: handleContentDelete, Params: []Param{
			pNode, opt(pStorage), {Name: "volume", Type: "string"},
			intParam("delay", 1, 30, true),
		}},
		{Method: "POST", Path: "/nodes/{node}/storage/{storage}/upload", Protected: true, Upload: true, Returns: "string", handle: handleUpload, Params: []Param{
			pNode, pStorage,
			{Name: "content", Type: "string", Format: "pve-storage-content"},
			{Name: "filename", Type: "string", MaxLength: 255},
			strParam("checksum"),
			opt(Param{Name: "checksum-algorithm", Type: "string", Enum: []string{"md5", "sha1", "sha224", "sha256", "sha384", "sha512"}}),
			strParam("tmpfilename"),
		}},
	}
}
