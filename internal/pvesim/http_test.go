package pvesim_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"mime/multipart"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/agentlab/terraform-provider-agentlab/internal/clock"
	"github.com/agentlab/terraform-provider-agentlab/internal/pvesim"
	"github.com/agentlab/terraform-provider-agentlab/internal/pvesim/pvesimtest"
)

// jsonType names the JSON type of a decoded value.
func jsonType(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "string"
	case float64:
		return "number"
	case bool:
		return "boolean"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return fmt.Sprintf("%T", v)
}

// cloneVM makes VM id from the template and returns nothing; it fails the test on error.
func cloneVM(t *testing.T, sim *pvesimtest.Sim, id int, extra string) {
	t.Helper()
	body := fmt.Sprintf("newid=%d&name=vm%d", id, id)
	if extra != "" {
		body += "&" + extra
	}
	if st := task(t, sim, "POST", "/nodes/pve/qemu/9000/clone", body); st != "OK" {
		t.Fatalf("clone %d: exitstatus %q; want OK", id, st)
	}
}

func TestJSONTypes(t *testing.T) {
	sim := pvesimtest.Start(t)
	cloneVM(t, sim, 101, "")
	do(t, sim, "PUT", "/nodes/pve/qemu/101/config", "tags=agentlab&cipassword=secret&onboot=1&ciuser=debian&ipconfig0=ip%3Ddhcp", "")
	task(t, sim, "POST", "/nodes/pve/qemu/101/status/start", "")

	tests := []struct {
		path  string
		pick  func(d any) map[string]any
		types map[string]string
	}{
		{"/version", asObject, map[string]string{"version": "string", "release": "string", "repoid": "string"}},
		{"/cluster/resources?type=vm", itemWithVMID(101), map[string]string{
			"id": "string", "vmid": "number", "node": "string", "type": "string", "status": "string",
			"name": "string", "template": "number", "maxcpu": "number", "cpu": "number", "maxmem": "number",
			"mem": "number", "maxdisk": "number", "disk": "number", "netin": "number", "netout": "number",
			"diskread": "number", "diskwrite": "number", "uptime": "number", "tags": "string",
		}},
		{"/nodes/pve/qemu/101/config", asObject, map[string]string{
			"cores": "number", "memory": "string", "agent": "string", "net0": "string", "scsi0": "string",
			"boot": "string", "tags": "string", "onboot": "number", "digest": "string", "cipassword": "string",
			"ciuser": "string", "ipconfig0": "string", "name": "string",
		}},
		{"/nodes/pve/qemu/9000/config", asObject, map[string]string{"template": "number", "cores": "number"}},
		{"/nodes/pve/qemu/101/status/current", asObject, map[string]string{
			"status": "string", "qmpstatus": "string", "name": "string", "vmid": "number", "uptime": "number",
			"pid": "number", "cpus": "number", "maxmem": "number", "mem": "number", "ha": "object", "agent": "number",
		}},
		{"/nodes/pve/qemu", itemWithVMID(101), map[string]string{"vmid": "number", "status": "string", "name": "string", "cpus": "number"}},
		{"/nodes/pve/storage", asFirst, map[string]string{"storage": "string", "type": "string", "content": "string",
			"active": "number", "enabled": "number", "shared": "number", "total": "number", "used": "number", "avail": "number"}},
		{"/nodes/pve/storage/local-lvm/content", asFirst, map[string]string{"volid": "string", "format": "string",
			"size": "number", "content": "string", "vmid": "number", "ctime": "number"}},
		{"/nodes", asFirst, map[string]string{"node": "string", "status": "string", "maxcpu": "number", "uptime": "number"}},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			obj := tt.pick(data(t, sim, "GET", tt.path, ""))
			for k, want := range tt.types {
				if got := jsonType(obj[k]); got != want {
					t.Errorf("%s: %s is %s (%v); want %s", tt.path, k, got, obj[k], want)
				}
			}
		})
	}

	cfg := data(t, sim, "GET", "/nodes/pve/qemu/101/config", "").(map[string]any)
	if got, want := cfg["cipassword"], "**********"; got != want {
		t.Errorf("cipassword = %v; want %v", got, want)
	}
	if !regexp.MustCompile(`^[0-9a-f]{40}$`).MatchString(cfg["digest"].(string)) {
		t.Errorf("digest = %v; want 40 hex digits", cfg["digest"])
	}
	if got := data(t, sim, "GET", "/cluster/nextid", ""); got != "100" {
		t.Errorf("nextid = %#v; want the JSON string \"100\"", got)
	}
}

func asObject(d any) map[string]any { m, _ := d.(map[string]any); return m }

func asFirst(d any) map[string]any {
	l, _ := d.([]any)
	if len(l) == 0 {
		return nil
	}
	m, _ := l[0].(map[string]any)
	return m
}

func itemWithVMID(id int) func(d any) map[string]any {
	return func(d any) map[string]any {
		l, _ := d.([]any)
		for _, e := range l {
			m := e.(map[string]any)
			if m["vmid"] == float64(id) {
				return m
			}
		}
		return nil
	}
}

func TestErrorTexts(t *testing.T) {
	sim := pvesimtest.Start(t, func(o *pvesim.Options) {
		o.Nodes = []string{"pve", "pve2"}
		o.Templates = []pvesim.Template{{VMID: 9000, Name: "debian-12-cloud"}, {VMID: 9001, Name: "other", Node: "pve2"}}
	})
	cloneVM(t, sim, 101, "")
	tests := []struct {
		name, method, path, body string
		status                   int
		message                  string
		errors                   map[string]string
	}{
		{"unknown path", "GET", "/nothing/here", "", 501, "Method 'GET /nothing/here' not implemented", nil},
		{"unknown method", "DELETE", "/version", "", 501, "Method 'DELETE /version' not implemented", nil},
		{"nextid taken", "GET", "/cluster/nextid?vmid=101", "", 400, "Parameter verification failed.", map[string]string{"vmid": "VM 101 already exists"}},
		{"ha resource", "GET", "/cluster/ha/resources/101", "", 500, "no such resource 'vm:101'", nil},
		{"unknown parameter", "PUT", "/nodes/pve/qemu/101/config", "bogus=1", 400, "Parameter verification failed.",
			map[string]string{"bogus": "property is not defined in schema and the schema does not allow additional properties"}},
		{"bad integer", "PUT", "/nodes/pve/qemu/101/config", "cores=many", 400, "Parameter verification failed.",
			map[string]string{"cores": "type check ('integer') failed - got 'many'"}},
		{"bad boolean", "PUT", "/nodes/pve/qemu/101/config", "onboot=yes", 400, "Parameter verification failed.",
			map[string]string{"onboot": "type check ('boolean') failed - got 'yes'"}},
		{"bad enum", "GET", "/cluster/resources?type=vms", "", 400, "Parameter verification failed.",
			map[string]string{"type": "value 'vms' does not have a value in the enumeration 'vm, storage, node, sdn'"}},
		{"missing required", "POST", "/nodes/pve/qemu/9000/clone", "", 400, "Parameter verification failed.",
			map[string]string{"newid": "property is missing and it is not optional"}},
		{"vmid too small", "GET", "/nodes/pve/qemu/99/config", "", 400, "Parameter verification failed.",
			map[string]string{"vmid": "invalid format - value does not look like a valid VM ID\n"}},
		{"missing VM", "GET", "/nodes/pve/qemu/555/config", "", 500, "Configuration file 'nodes/pve/qemu-server/555.conf' does not exist", nil},
		{"wrong node", "GET", "/nodes/pve2/qemu/101/config", "", 500, "Configuration file 'nodes/pve2/qemu-server/101.conf' does not exist", nil},
		{"unknown node", "GET", "/nodes/nope/qemu/101/config", "", 500, "hostname lookup 'nope' failed - failed to get address info for: nope: Name or service not known", nil},
		{"no options", "PUT", "/nodes/pve/qemu/101/config", "", 500, "no options specified", nil},
		{"digest mismatch", "PUT", "/nodes/pve/qemu/101/config", "cores=2&digest=0000000000000000000000000000000000000000", 500, "checksum mismatch (file change by other user?)", nil},
		{"delete unknown", "PUT", "/nodes/pve/qemu/101/config", "delete=nosuch", 400, "Parameter verification failed.",
			map[string]string{"delete": "unknown option 'nosuch'"}},
		{"skiplock needs root", "PUT", "/nodes/pve/qemu/101/config", "cores=2&skiplock=1", 400, "Parameter verification failed.",
			map[string]string{"skiplock": "Only root may use this option."}},
		{"clone exists", "POST", "/nodes/pve/qemu/9000/clone", "newid=101", 500, "unable to create VM 101: config file already exists", nil},
		{"clone storage linked", "POST", "/nodes/pve/qemu/9000/clone", "newid=102&storage=local-lvm", 500, "parameter 'storage' not allowed for linked clones", nil},
		{"clone storage without images", "POST", "/nodes/pve/qemu/9000/clone", "newid=102&full=1&storage=local", 400, "Parameter verification failed.",
			map[string]string{"storage": "storage 'local' does not support vm images"}},
		{"linked clone of a VM", "POST", "/nodes/pve/qemu/101/clone", "newid=102&full=0", 500, "Linked clone feature is not supported for 'local-lvm:vm-101-disk-0' (scsi0)", nil},
		{"clone to other node", "POST", "/nodes/pve/qemu/9000/clone", "newid=102&target=pve2", 500, "can't clone VM to node 'pve2' (VM uses local storage)", nil},
		{"clone missing source", "POST", "/nodes/pve/qemu/9001/clone", "newid=102", 500, "Configuration file 'nodes/pve/qemu-server/9001.conf' does not exist", nil},
		{"reboot stopped", "POST", "/nodes/pve/qemu/101/status/reboot", "", 500, "VM 101 not running", nil},
		{"agent stopped", "GET", "/nodes/pve/qemu/101/agent/network-get-interfaces", "", 500, "VM 101 is not running", nil},
		{"create exists", "POST", "/nodes/pve/qemu", "vmid=101", 500, "unable to create VM 101 - VM 101 already exists on node 'pve'", nil},
		{"bad upid", "GET", "/nodes/pve/tasks/nonsense/status", "", 400, "Parameter verification failed.", map[string]string{"upid": "unable to parse worker upid"}},
		{"no such task", "GET", "/nodes/pve/tasks/UPID:pve:00001234:00ABCDEF:6500AAAA:qmstart:101:root@pam:/status", "", 400,
			"Parameter verification failed.", map[string]string{"upid": "no such task"}},
		{"resize bad size", "PUT", "/nodes/pve/qemu/101/resize", "disk=scsi0&size=10X", 400, "Parameter verification failed.",
			map[string]string{"size": "value does not match the regex pattern"}},
		{"alloc illegal name", "POST", "/nodes/pve/storage/local-lvm/content", "filename=disk1&size=1G&vmid=150", 500, "illegal name 'disk1' - should be 'vm-150-*'", nil},
		{"body on GET", "GET", "/version", "a=b", 501, "Unexpected content for method 'GET'", nil},
		{"body too large", "PUT", "/nodes/pve/qemu/101/config", "description=" + strings.Repeat("x", 600*1024), 501, "for data too large", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := do(t, sim, tt.method, tt.path, tt.body, "")
			if a.status != tt.status || a.reason != tt.message {
				t.Errorf("status line = %d %q; want %d %q", a.status, a.reason, tt.status, tt.message)
			}
			body := a.json(t)
			if got, want := body["message"], tt.message+"\n"; got != want {
				t.Errorf("body message = %q; want %q", got, want)
			}
			if _, ok := body["data"]; !ok || body["data"] != nil {
				t.Errorf("body data = %v (present %v); want null", body["data"], ok)
			}
			if tt.errors != nil {
				errs, _ := body["errors"].(map[string]any)
				for k, want := range tt.errors {
					if errs[k] != want {
						t.Errorf("errors[%s] = %q; want %q", k, errs[k], want)
					}
				}
			}
		})
	}
}

func TestAuth(t *testing.T) {
	sim := pvesimtest.Start(t, func(o *pvesim.Options) { o.AuthFailureDelay = 50 * time.Millisecond })
	tests := []struct {
		name, auth string
		status     int
		reason     string
	}{
		{"token", "PVEAPIToken=" + sim.Token, 200, "OK"},
		{"token with space", "PVEAPIToken " + sim.Token, 200, "OK"},
		{"token escaped", "PVEAPIToken=" + url.PathEscape(sim.TokenID) + "=" + sim.TokenSecret, 200, "OK"},
		{"no credentials", "", 401, "No ticket"},
		{"bad secret", "PVEAPIToken=" + sim.TokenID + "=wrong", 401, "Authentication failed!"},
		{"unknown token", "PVEAPIToken=root@pam!nope=" + sim.TokenSecret, 401, "Authentication failed!"},
		{"bad ticket", "PVEAuthCookie=PVE:root@pam:00000000::forged", 401, "Authentication failed!"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			a := doAuth(t, sim, "GET", "/version", "", "", tt.auth)
			if a.status != tt.status || a.reason != tt.reason {
				t.Errorf("status line = %d %q; want %d %q", a.status, a.reason, tt.status, tt.reason)
			}
			if tt.status == 401 {
				if len(a.body) != 0 {
					t.Errorf("401 body = %q; want empty", a.body)
				}
				if d := time.Since(start); d < 50*time.Millisecond {
					t.Errorf("401 answered after %v; want the auth failure delay of 50ms", d)
				}
			}
		})
	}

	// Ticket in a cookie: GET works without CSRF, POST needs it.
	var login struct {
		Data struct {
			Ticket, CSRFPreventionToken, Username string
		} `json:"data"`
	}
	doJSON(t, sim, "POST", "/access/ticket", "username=root%40pam&password=pvesim", "", &login)
	if login.Data.Username != "root@pam" || !strings.HasPrefix(login.Data.Ticket, "PVE:root@pam:") {
		t.Fatalf("login = %+v; want a PVE:root@pam: ticket", login.Data)
	}
	req, _ := http.NewRequest("POST", sim.URL+"/nodes/pve/qemu/9000/clone", strings.NewReader("newid=140"))
	req.Header.Set("Cookie", "PVEAuthCookie="+url.QueryEscape(login.Data.Ticket))
	resp, err := sim.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got, want := resp.Status, "401 Permission denied - invalid csrf token"; got != want {
		t.Errorf("POST with ticket, no CSRF = %q; want %q", got, want)
	}
	req, _ = http.NewRequest("POST", sim.URL+"/nodes/pve/qemu/9000/clone", strings.NewReader("newid=140"))
	req.Header.Set("Cookie", "PVEAuthCookie="+url.QueryEscape(login.Data.Ticket))
	req.Header.Set("CSRFPreventionToken", login.Data.CSRFPreventionToken)
	resp, err = sim.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("POST with ticket and CSRF = %s; want 200", resp.Status)
	}
	// Tokens cannot log in.
	a := doAuth(t, sim, "POST", "/access/ticket", "username="+url.QueryEscape(sim.TokenID)+"&password="+sim.TokenSecret, "", "")
	if a.status != 401 || a.reason != "authentication failure" {
		t.Errorf("token login = %d %q; want 401 authentication failure", a.status, a.reason)
	}
}

func TestRequestBodies(t *testing.T) {
	sim := pvesimtest.Start(t)
	cloneVM(t, sim, 101, "")
	// JSON body with typed values.
	a := do(t, sim, "PUT", "/nodes/pve/qemu/101/config", `{"cores":3,"onboot":true,"name":"json-vm"}`, "application/json")
	if a.status != 200 {
		t.Fatalf("JSON PUT = %d %s %s; want 200", a.status, a.reason, a.body)
	}
	// The query string overrides the body.
	a = do(t, sim, "PUT", "/nodes/pve/qemu/101/config?cores=5", "cores=4", "")
	if a.status != 200 {
		t.Fatalf("PUT = %d %s", a.status, a.reason)
	}
	cfg, _ := sim.Server.VMConfig(101)
	if cfg["cores"] != "5" || cfg["onboot"] != "1" || cfg["name"] != "json-vm" {
		t.Errorf("config = cores %q onboot %q name %q; want 5, 1, json-vm", cfg["cores"], cfg["onboot"], cfg["name"])
	}
	// Form bodies need no Content-Type (the client library sends none).
	a = do(t, sim, "PUT", "/nodes/pve/qemu/101/config", "delete=onboot,name", "")
	if a.status != 200 {
		t.Fatalf("delete = %d %s", a.status, a.reason)
	}
	cfg, _ = sim.Server.VMConfig(101)
	if _, ok := cfg["onboot"]; ok {
		t.Errorf("onboot still set after delete")
	}
	if _, ok := cfg["name"]; ok {
		t.Errorf("name still set after delete")
	}
}

func TestConfigPendingOnRunningVM(t *testing.T) {
	sim := pvesimtest.Start(t)
	cloneVM(t, sim, 101, "")
	task(t, sim, "POST", "/nodes/pve/qemu/101/status/start", "")
	if a := do(t, sim, "PUT", "/nodes/pve/qemu/101/config", "cores=4&name=renamed&tags=B%3Ba", ""); a.status != 200 {
		t.Fatalf("PUT = %d %s", a.status, a.reason)
	}
	cur := data(t, sim, "GET", "/nodes/pve/qemu/101/config?current=1", "").(map[string]any)
	eff := data(t, sim, "GET", "/nodes/pve/qemu/101/config", "").(map[string]any)
	if cur["cores"] != float64(1) || eff["cores"] != float64(4) {
		t.Errorf("cores current=%v effective=%v; want 1 and 4 (pending)", cur["cores"], eff["cores"])
	}
	if cur["name"] != "renamed" || cur["tags"] != "a;b" {
		t.Errorf("current name=%v tags=%v; want renamed and a;b at once", cur["name"], cur["tags"])
	}
	pending := data(t, sim, "GET", "/nodes/pve/qemu/101/pending", "").([]any)
	found := false
	for _, p := range pending {
		m := p.(map[string]any)
		if m["key"] == "cores" {
			found = m["value"] == float64(1) && m["pending"] == float64(4)
		}
	}
	if !found {
		t.Errorf("pending = %v; want cores value 1 pending 4", pending)
	}
	// A POST config is a qmconfig task.
	if st := task(t, sim, "POST", "/nodes/pve/qemu/101/config", "memory=4096"); st != "OK" {
		t.Errorf("POST config exitstatus = %q; want OK", st)
	}
	task(t, sim, "POST", "/nodes/pve/qemu/101/status/stop", "")
	task(t, sim, "POST", "/nodes/pve/qemu/101/status/start", "")
	cur = data(t, sim, "GET", "/nodes/pve/qemu/101/config?current=1", "").(map[string]any)
	if cur["cores"] != float64(4) || cur["memory"] != "4096" {
		t.Errorf("after restart cores=%v memory=%v; want 4 and 4096", cur["cores"], cur["memory"])
	}
}

func TestPowerTasks(t *testing.T) {
	sim := pvesimtest.Start(t)
	cloneVM(t, sim, 101, "")
	if st := task(t, sim, "POST", "/nodes/pve/qemu/101/status/stop", ""); st != "OK" {
		t.Errorf("stop of a stopped VM = %q; want OK", st)
	}
	if st := task(t, sim, "POST", "/nodes/pve/qemu/101/status/start", ""); st != "OK" {
		t.Errorf("start = %q; want OK", st)
	}
	if st := task(t, sim, "POST", "/nodes/pve/qemu/101/status/start", ""); st != "VM 101 already running" {
		t.Errorf("second start = %q; want VM 101 already running", st)
	}
	if st := task(t, sim, "POST", "/nodes/pve/qemu/101/status/reboot", ""); st != "OK" {
		t.Errorf("reboot = %q; want OK", st)
	}
	if st := task(t, sim, "POST", "/nodes/pve/qemu/101/status/shutdown", "forceStop=1"); st != "OK" {
		t.Errorf("shutdown = %q; want OK", st)
	}
	if st := task(t, sim, "POST", "/nodes/pve/qemu/9000/status/start", ""); st != "you can't start a vm if it's a template" {
		t.Errorf("template start = %q; want you can't start a vm if it's a template", st)
	}
	if st := task(t, sim, "POST", "/nodes/pve/qemu/777/status/start", ""); st != "Configuration file 'nodes/pve/qemu-server/777.conf' does not exist" {
		t.Errorf("start of a missing VM = %q; want the missing config error as a task error", st)
	}
	sim.Server.SetLock(101, "clone")
	if st := task(t, sim, "POST", "/nodes/pve/qemu/101/status/start", ""); st != "VM is locked (clone)" {
		t.Errorf("locked start = %q; want VM is locked (clone)", st)
	}
}

func TestTaskStatusAndLog(t *testing.T) {
	sim := pvesimtest.Start(t)
	upid := data(t, sim, "POST", "/nodes/pve/qemu/9000/clone", "newid=101").(string)
	re := regexp.MustCompile(`^UPID:pve:[0-9A-F]{8}:[0-9A-F]{8,9}:[0-9A-F]{8}:qmclone:9000:root@pam!test:$`)
	if !re.MatchString(upid) {
		t.Fatalf("UPID %q does not match %s", upid, re)
	}
	st := data(t, sim, "GET", "/nodes/pve/tasks/"+upid+"/status", "").(map[string]any)
	want := map[string]any{"upid": upid, "node": "pve", "type": "qmclone", "id": "9000", "user": "root@pam",
		"tokenid": "test", "status": "stopped", "exitstatus": "OK"}
	for k, v := range want {
		if st[k] != v {
			t.Errorf("status[%s] = %v; want %v", k, st[k], v)
		}
	}
	for _, k := range []string{"pid", "pstart", "starttime"} {
		if jsonType(st[k]) != "number" {
			t.Errorf("status[%s] = %v; want a number", k, st[k])
		}
	}
	var log struct {
		Data  []map[string]any `json:"data"`
		Total int              `json:"total"`
	}
	doJSON(t, sim, "GET", "/nodes/pve/tasks/"+upid+"/log", "", "", &log)
	if log.Total != len(log.Data) || log.Total == 0 {
		t.Fatalf("log total %d, %d lines; want equal and > 0", log.Total, len(log.Data))
	}
	last := log.Data[len(log.Data)-1]
	if last["t"] != "TASK OK" || last["n"] != float64(log.Total) {
		t.Errorf("last log line = %v; want n=%d t=TASK OK", last, log.Total)
	}
	// A failed task ends with TASK ERROR.
	sim.Server.SetLock(101, "backup")
	upid = data(t, sim, "PUT", "/nodes/pve/qemu/101/resize", "disk=scsi0&size=%2B1G").(string)
	doJSON(t, sim, "GET", "/nodes/pve/tasks/"+upid+"/log", "", "", &log)
	if got := log.Data[len(log.Data)-1]["t"]; got != "TASK ERROR: VM is locked (backup)" {
		t.Errorf("last log line = %v; want TASK ERROR: VM is locked (backup)", got)
	}
	list := data(t, sim, "GET", "/nodes/pve/tasks?vmid=101&errors=1", "").([]any)
	if len(list) != 1 || list[0].(map[string]any)["status"] != "VM is locked (backup)" {
		t.Errorf("task list with errors=1 = %v; want the failed resize", list)
	}
}

func TestClusterResourcesShowLockAndTags(t *testing.T) {
	sim := pvesimtest.Start(t, func(o *pvesim.Options) {
		o.Latency = pvesim.Latency{LinkedClone: time.Hour}
	})
	upid := data(t, sim, "POST", "/nodes/pve/qemu/9000/clone", "newid=101").(string)
	// The clone runs for an hour: its target exists at once, locked.
	waitFor(t, func() bool { _, ok := sim.Server.VM(101); return ok })
	cfg := data(t, sim, "GET", "/nodes/pve/qemu/101/config", "").(map[string]any)
	if len(cfg) != 2 || cfg["lock"] != "clone" {
		t.Errorf("target config during clone = %v; want only lock=clone and digest", cfg)
	}
	res := itemWithVMID(101)(data(t, sim, "GET", "/cluster/resources?type=vm", ""))
	if res["lock"] != "clone" {
		t.Errorf("resources lock = %v; want clone", res["lock"])
	}
	a := do(t, sim, "PUT", "/nodes/pve/qemu/101/config", "cores=2", "")
	if a.status != 500 || a.reason != "VM is locked (clone)" {
		t.Errorf("config during clone = %d %q; want 500 VM is locked (clone)", a.status, a.reason)
	}
	st := data(t, sim, "GET", "/nodes/pve/tasks/"+upid+"/status", "").(map[string]any)
	if st["status"] != "running" {
		t.Errorf("clone status = %v; want running", st["status"])
	}
	if _, ok := st["exitstatus"]; ok {
		t.Errorf("running task has exitstatus %v; want none", st["exitstatus"])
	}
}

// waitFor waits for cond, which the simulator's own goroutines make true.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second) // generous: only a failing test waits it out
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within 30s")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestGuestAgent(t *testing.T) {
	fake := clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	sim := pvesimtest.Start(t, func(o *pvesim.Options) {
		o.Clock = fake
		o.Latency = pvesim.Latency{GuestAgentIP: 10 * time.Second}
	})
	cloneVM(t, sim, 101, "")
	path := "/nodes/pve/qemu/101/agent/network-get-interfaces"
	task(t, sim, "POST", "/nodes/pve/qemu/101/status/start", "")
	if a := do(t, sim, "GET", path, "", ""); a.reason != "QEMU guest agent is not running" {
		t.Errorf("agent right after start = %d %q; want QEMU guest agent is not running", a.status, a.reason)
	}
	fake.Advance(6 * time.Second)
	res := data(t, sim, "GET", path, "").(map[string]any)["result"].([]any)
	if strings.Contains(fmt.Sprint(res), "10.77.") {
		t.Errorf("agent at 6s = %v; want no IPv4 yet", res)
	}
	fake.Advance(5 * time.Second)
	res = data(t, sim, "GET", path, "").(map[string]any)["result"].([]any)
	cfg, _ := sim.Server.VMConfig(101)
	mac := strings.ToLower(strings.TrimPrefix(strings.Split(cfg["net0"], ",")[0], "virtio="))
	var eth map[string]any
	for _, i := range res {
		if m := i.(map[string]any); m["hardware-address"] == mac {
			eth = m
		}
	}
	if eth == nil {
		t.Fatalf("no interface with MAC %s in %v", mac, res)
	}
	addr := eth["ip-addresses"].([]any)[0].(map[string]any)
	if addr["ip-address"] != "10.77.0.102" || addr["ip-address-type"] != "ipv4" || addr["prefix"] != float64(16) {
		t.Errorf("first address = %v; want 10.77.0.102 ipv4 /16", addr)
	}
	do(t, sim, "PUT", "/nodes/pve/qemu/101/config", "agent=0", "")
	task(t, sim, "POST", "/nodes/pve/qemu/101/status/stop", "")
	task(t, sim, "POST", "/nodes/pve/qemu/101/status/start", "")
	if a := do(t, sim, "GET", path, "", ""); a.reason != "No QEMU guest agent configured" {
		t.Errorf("agent disabled = %q; want No QEMU guest agent configured", a.reason)
	}
}

func TestDestroyFreesOnlyOwnVolumes(t *testing.T) {
	sim := pvesimtest.Start(t)
	cloneVM(t, sim, 101, "")
	// A workspace: a volume owned by an unused VMID, attached to VM 101.
	volid := data(t, sim, "POST", "/nodes/pve/storage/local-lvm/content", "filename=vm-999-disk-0&size=1G&vmid=999").(string)
	if volid != "local-lvm:vm-999-disk-0" {
		t.Fatalf("alloc = %q; want local-lvm:vm-999-disk-0", volid)
	}
	uploadISO(t, sim, "cidata-101.iso", []byte("ISO"))
	if a := do(t, sim, "PUT", "/nodes/pve/qemu/101/config", "scsi1="+url.QueryEscape(volid)+"&ide2="+url.QueryEscape("local:iso/cidata-101.iso,media=cdrom")+"&scsi2=local-lvm%3A2", ""); a.status != 200 {
		t.Fatalf("attach = %d %s", a.status, a.reason)
	}
	cfg, _ := sim.Server.VMConfig(101)
	if cfg["scsi1"] != "local-lvm:vm-999-disk-0,size=1G" || cfg["scsi2"] != "local-lvm:vm-101-disk-1,size=2G" {
		t.Errorf("scsi1 = %q, scsi2 = %q; want the workspace and a new 2G disk", cfg["scsi1"], cfg["scsi2"])
	}
	if st := task(t, sim, "DELETE", "/nodes/pve/qemu/101?purge=1&destroy-unreferenced-disks=1", ""); st != "OK" {
		t.Fatalf("destroy = %q; want OK", st)
	}
	have := map[string]bool{}
	for _, v := range sim.Server.Volumes("pve") {
		have[v.Volid] = true
	}
	for volid, want := range map[string]bool{
		"local-lvm:vm-101-disk-0": false, "local-lvm:vm-101-disk-1": false, "local-lvm:vm-999-disk-0": true,
		"local-lvm:base-9000-disk-0": true, "local:iso/cidata-101.iso": true,
	} {
		if have[volid] != want {
			t.Errorf("after destroy, %s exists = %v; want %v", volid, have[volid], want)
		}
	}
}

func uploadISO(t *testing.T, sim *pvesimtest.Sim, name string, content []byte) string {
	t.Helper()
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	w.WriteField("content", "iso")
	fw, _ := w.CreateFormFile("filename", name)
	fw.Write(content)
	w.Close()
	a := do(t, sim, "POST", "/nodes/pve/storage/local/upload", buf.String(), w.FormDataContentType())
	if a.status != 200 {
		t.Fatalf("upload = %d %s %s", a.status, a.reason, a.body)
	}
	var out struct{ Data string }
	json.Unmarshal(a.body, &out)
	return out.Data
}

func TestStorage(t *testing.T) {
	sim := pvesimtest.Start(t)
	upid := uploadISO(t, sim, "seed.iso", []byte("hello iso"))
	if !strings.Contains(upid, ":imgcopy::") {
		t.Errorf("upload UPID %q; want an imgcopy task with an empty id", upid)
	}
	got, ok := sim.Server.Volume("local", "local:iso/seed.iso")
	if !ok || string(got) != "hello iso" {
		t.Errorf("Volume(local:iso/seed.iso) = %q, %v; want the uploaded bytes", got, ok)
	}
	items := data(t, sim, "GET", "/nodes/pve/storage/local/content?content=iso", "").([]any)
	if len(items) != 1 || items[0].(map[string]any)["volid"] != "local:iso/seed.iso" || items[0].(map[string]any)["size"] != float64(9) {
		t.Errorf("iso content = %v; want seed.iso of 9 bytes", items)
	}
	// Snippets cannot be uploaded through the API.
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	w.WriteField("content", "snippets")
	fw, _ := w.CreateFormFile("filename", "user.yaml")
	fw.Write([]byte("#cloud-config"))
	w.Close()
	a := do(t, sim, "POST", "/nodes/pve/storage/local/upload", buf.String(), w.FormDataContentType())
	if errs, _ := a.json(t)["errors"].(map[string]any); a.status != 400 || errs["content"] != "upload content type 'snippets' not allowed" {
		t.Errorf("snippets upload = %d %s; want 400 with errors.content upload content type 'snippets' not allowed", a.status, a.body)
	}
	// Delete is a task imgdel whose id names the owner and storage.
	data(t, sim, "POST", "/nodes/pve/storage/local-lvm/content", "filename=vm-150-disk-0&size=512M&vmid=150")
	upid = data(t, sim, "DELETE", "/nodes/pve/storage/local-lvm/content/local-lvm:vm-150-disk-0", "").(string)
	if !strings.Contains(upid, ":imgdel:150@local-lvm:") {
		t.Errorf("delete UPID %q; want imgdel with id 150@local-lvm", upid)
	}
	if d := data(t, sim, "DELETE", "/nodes/pve/storage/local/content/local:iso%2Fseed.iso?delay=5", ""); d != nil {
		t.Errorf("delete with delay answered %v; want null", d)
	}
	if _, ok := sim.Server.Volume("local", "iso/seed.iso"); ok {
		t.Errorf("seed.iso still exists after delete")
	}
	// Deleting a file that is gone from a directory storage only warns, as
	// Plugin::free_image does: the task succeeds with "WARNINGS: 1".
	upid = data(t, sim, "DELETE", "/nodes/pve/storage/local/content/local:iso%2Fseed.iso", "").(string)
	st := data(t, sim, "GET", "/nodes/pve/tasks/"+upid+"/status", "").(map[string]any)
	if st["exitstatus"] != "WARNINGS: 1" {
		t.Errorf("delete of a missing iso: exitstatus %v; want WARNINGS: 1", st["exitstatus"])
	}
	var log struct {
		Data []map[string]any `json:"data"`
	}
	doJSON(t, sim, "GET", "/nodes/pve/tasks/"+upid+"/log", "", "", &log)
	if n := len(log.Data); n < 2 || log.Data[n-1]["t"] != "TASK WARNINGS: 1" ||
		log.Data[n-2]["t"] != "WARN: disk image '/var/lib/vz/template/iso/seed.iso' does not exist" {
		t.Errorf("delete of a missing iso: log %v; want the WARN line, then TASK WARNINGS: 1", log.Data)
	}
}

func TestLegacyErrorBody(t *testing.T) {
	sim := pvesimtest.Start(t, func(o *pvesim.Options) { o.LegacyErrors = true })
	a := do(t, sim, "GET", "/nodes/pve/qemu/555/config", "", "")
	if a.reason != "Configuration file 'nodes/pve/qemu-server/555.conf' does not exist" {
		t.Errorf("status line reason = %q; want the message", a.reason)
	}
	if got := strings.TrimSpace(string(a.body)); got != `{"data":null}` {
		t.Errorf("legacy body = %s; want {\"data\":null}", got)
	}
}

func TestCreateVM(t *testing.T) {
	sim := pvesimtest.Start(t, func(o *pvesim.Options) { o.Latency = pvesim.Latency{Create: time.Hour} })
	upid := data(t, sim, "POST", "/nodes/pve/qemu",
		"vmid=150&name=fresh&memory=2048&cores=2&net0=virtio%2Cbridge%3Dvmbr0&scsi0=local-lvm%3A4&ide2=local-lvm%3Acloudinit&tags=x").(string)
	if !strings.Contains(upid, ":qmcreate:150:") {
		t.Errorf("create UPID %q; want qmcreate for 150", upid)
	}
	if cfg, _ := sim.Server.VMConfig(150); cfg["lock"] != "create" {
		t.Errorf("config while creating = %v; want lock=create", cfg)
	}
	sim2 := pvesimtest.Start(t)
	if st := task(t, sim2, "POST", "/nodes/pve/qemu", "vmid=150&name=fresh&memory=2048&net0=virtio%2Cbridge%3Dvmbr0&scsi0=local-lvm%3A4&ide2=local-lvm%3Acloudinit&start=1"); st != "OK" {
		t.Fatalf("create = %q; want OK", st)
	}
	vm, _ := sim2.Server.VM(150)
	if !vm.Running {
		t.Errorf("VM created with start=1 is not running")
	}
	if got, want := vm.Config["scsi0"], "local-lvm:vm-150-disk-0,size=4G"; got != want {
		t.Errorf("scsi0 = %q; want %q", got, want)
	}
	if got, want := vm.Config["ide2"], "local-lvm:vm-150-cloudinit,media=cdrom"; got != want {
		t.Errorf("ide2 = %q; want %q", got, want)
	}
	if !regexp.MustCompile(`^virtio=BC:24:11:[0-9A-F:]{8},bridge=vmbr0$`).MatchString(vm.Config["net0"]) {
		t.Errorf("net0 = %q; want a generated BC:24:11 MAC", vm.Config["net0"])
	}
}

func TestCloneOptions(t *testing.T) {
	sim := pvesimtest.Start(t, func(o *pvesim.Options) { o.Pools = []string{"dev"} })
	cloneVM(t, sim, 101, "pool=dev&description="+url.QueryEscape("lease: 1h\n\n"))
	res := itemWithVMID(101)(data(t, sim, "GET", "/cluster/resources?type=vm", ""))
	if res["pool"] != "dev" {
		t.Errorf("resources pool = %v; want dev", res["pool"])
	}
	cfg, _ := sim.Server.VMConfig(101)
	if cfg["description"] != "lease: 1h" {
		t.Errorf("description = %q; want %q", cfg["description"], "lease: 1h")
	}
	if a := do(t, sim, "POST", "/nodes/pve/qemu/9000/clone", "newid=102&pool=nope", ""); a.reason != "pool 'nope' does not exist" {
		t.Errorf("clone into a missing pool = %d %q; want pool 'nope' does not exist", a.status, a.reason)
	}
	sim.Server.SetLock(9000, "backup")
	if a := do(t, sim, "POST", "/nodes/pve/qemu/9000/clone", "newid=102", ""); a.status != 500 || a.reason != "VM is locked (backup)" {
		t.Errorf("clone of a locked template = %d %q; want 500 VM is locked (backup)", a.status, a.reason)
	}
}
