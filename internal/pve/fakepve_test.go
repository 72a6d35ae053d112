package pve

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"sync"
	"testing"
)

// fakePVE is a tiny PVE for the clone and allocation tests, whose timing
// and failures the tests control exactly. Task progress is counted in
// requests: a task finishes once the server has seen taskLength more
// requests, whoever makes them.
type fakePVE struct {
	t          *testing.T
	srv        *httptest.Server
	taskLength int

	mu         sync.Mutex
	tick       int
	vms        map[int]*fakeVM
	tasks      map[string]*fakeTask
	pid        int
	cloneCalls int
	// nextIDChecks counts /cluster/nextid?vmid=N requests.
	nextIDChecks int
	// resourceLists counts /cluster/resources requests.
	resourceLists int
	// beforeClone runs before a clone is processed; true means it answered.
	beforeClone func(call, vmid int, w http.ResponseWriter) bool
	// afterClone runs after a clone was accepted; true means it answered
	// (e.g. dropped the connection).
	afterClone func(call, vmid int, w http.ResponseWriter) bool
	// cloneExit, when set, gives the exit status of clone call number call.
	cloneExit func(call int) string
}

type fakeVM struct {
	node string
	cfg  map[string]any
}

type fakeTask struct {
	done   int // tick at which it finishes
	exit   string
	finish func() // runs once when the task finishes
}

func newFakePVE(t *testing.T) *fakePVE {
	f := &fakePVE{t: t, taskLength: 3, vms: map[int]*fakeVM{}, tasks: map[string]*fakeTask{}}
	f.vms[9000] = &fakeVM{node: "pve", cfg: map[string]any{"name": "tmpl", "template": 1}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api2/json/cluster/nextid", f.nextID)
	mux.HandleFunc("GET /api2/json/cluster/resources", f.resources)
	mux.HandleFunc("POST /api2/json/nodes/{node}/qemu/{vmid}/clone", f.clone)
	mux.HandleFunc("GET /api2/json/nodes/{node}/qemu/{vmid}/config", f.config)
	mux.HandleFunc("GET /api2/json/nodes/{node}/tasks/{upid}/status", f.taskStatus)
	mux.HandleFunc("GET /api2/json/nodes/{node}/tasks", f.activeTasks)
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.tick++
		for _, tk := range f.tasks {
			if tk.finish != nil && f.tick >= tk.done {
				tk.finish()
				tk.finish = nil
			}
		}
		f.mu.Unlock()
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakePVE) addVM(vmid int, description string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.vms[vmid] = &fakeVM{node: "pve", cfg: map[string]any{"name": "other", "description": description}}
}

func (f *fakePVE) vm(vmid int) (map[string]any, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.vms[vmid]
	if !ok {
		return nil, false
	}
	cp := map[string]any{}
	for k, x := range v.cfg {
		cp[k] = x
	}
	return cp, true
}

func (f *fakePVE) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.vms)
}

func (f *fakePVE) calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cloneCalls
}

func (f *fakePVE) nextID(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if s := r.URL.Query().Get("vmid"); s != "" {
		f.nextIDChecks++
		id, _ := strconv.Atoi(s)
		if _, ok := f.vms[id]; ok {
			writeRaw(f.t, w, 400, "Parameter verification failed.",
				fmt.Sprintf(`{"data":null,"errors":{"vmid":"VM %d already exists"},"message":"Parameter verification failed.\n"}`, id))
			return
		}
		writeData(w, strconv.Quote(s))
		return
	}
	id := 100
	for ; ; id++ {
		if _, ok := f.vms[id]; !ok {
			break
		}
	}
	writeData(w, strconv.Quote(strconv.Itoa(id)))
}

func (f *fakePVE) resources(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.resourceLists++
	var list []map[string]any
	ids := make([]int, 0, len(f.vms))
	for id := range f.vms {
		ids = append(ids, id)
	}
	sort.Ints(ids)
	for _, id := range ids {
		v := f.vms[id]
		e := map[string]any{"id": fmt.Sprintf("qemu/%d", id), "vmid": id, "node": v.node, "type": "qemu", "status": "stopped", "name": v.cfg["name"]}
		if l, ok := v.cfg["lock"]; ok {
			e["lock"] = l
		}
		if tm, ok := v.cfg["template"]; ok {
			e["template"] = tm
		}
		list = append(list, e)
	}
	b, _ := json.Marshal(list)
	writeData(w, string(b))
}

func (f *fakePVE) clone(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		f.t.Errorf("parse form: %v", err)
	}
	newid, _ := strconv.Atoi(r.PostForm.Get("newid"))
	f.mu.Lock()
	f.cloneCalls++
	call := f.cloneCalls
	f.mu.Unlock()
	if f.beforeClone != nil && f.beforeClone(call, newid, w) {
		return
	}
	f.mu.Lock()
	if _, ok := f.vms[newid]; ok {
		f.mu.Unlock()
		writeRaw(f.t, w, 500, fmt.Sprintf("unable to create VM %d: config file already exists", newid), `{"data":null}`)
		return
	}
	vm := &fakeVM{node: r.PathValue("node"), cfg: map[string]any{"lock": "clone"}}
	f.vms[newid] = vm
	exit := "OK"
	if f.cloneExit != nil {
		exit = f.cloneExit(call)
	}
	f.pid++
	upid := fmt.Sprintf("UPID:%s:%08X:00000001:6500%04X:qmclone:%s:root@pam!test:", vm.node, f.pid, f.pid, r.PathValue("vmid"))
	name, desc := r.PostForm.Get("name"), r.PostForm.Get("description")
	f.tasks[upid] = &fakeTask{done: f.tick + f.taskLength, exit: exit, finish: func() {
		if exit != "OK" {
			delete(f.vms, newid)
			return
		}
		delete(vm.cfg, "lock")
		vm.cfg["name"], vm.cfg["description"] = name, desc
	}}
	f.mu.Unlock()
	if f.afterClone != nil && f.afterClone(call, newid, w) {
		return
	}
	writeData(w, strconv.Quote(upid))
}

func (f *fakePVE) config(w http.ResponseWriter, r *http.Request) {
	id, _ := strconv.Atoi(r.PathValue("vmid"))
	f.mu.Lock()
	v, ok := f.vms[id]
	var b []byte
	if ok && v.node == r.PathValue("node") {
		b, _ = json.Marshal(v.cfg)
	}
	f.mu.Unlock()
	if b == nil {
		writeRaw(f.t, w, 500, fmt.Sprintf("Configuration file 'nodes/%s/qemu-server/%d.conf' does not exist", r.PathValue("node"), id), `{"data":null}`)
		return
	}
	writeData(w, string(b))
}

func (f *fakePVE) taskStatus(w http.ResponseWriter, r *http.Request) {
	upid := r.PathValue("upid")
	f.mu.Lock()
	tk, ok := f.tasks[upid]
	var body string
	switch {
	case !ok:
	case tk.finish != nil:
		body = fmt.Sprintf(`{"upid":%q,"status":"running"}`, upid)
	default:
		body = fmt.Sprintf(`{"upid":%q,"status":"stopped","exitstatus":%q}`, upid, tk.exit)
	}
	f.mu.Unlock()
	if !ok {
		writeRaw(f.t, w, 400, "no such task", `{"data":null}`)
		return
	}
	writeData(w, body)
}

// activeTasks lists the tasks of a node as PVE's GET /nodes/{node}/tasks
// does, filtered by vmid and type: with source=active the running ones
// (status "RUNNING"); with source=all those and then the finished ones, with
// their endtime and exit status.
func (f *fakePVE) activeTasks(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	source := q.Get("source")
	if source != "active" && source != "all" {
		writeRaw(f.t, w, 400, "fake: only source=active and source=all are served", `{"data":null}`)
		return
	}
	f.mu.Lock()
	var running, archive []map[string]any
	for upid, tk := range f.tasks {
		u, err := ParseUPID(upid)
		if err != nil || u.Node != r.PathValue("node") || (q.Get("vmid") != "" && u.ID != q.Get("vmid")) ||
			(q.Get("typefilter") != "" && u.Type != q.Get("typefilter")) {
			continue
		}
		switch {
		case tk.finish != nil:
			running = append(running, map[string]any{"upid": upid, "status": "RUNNING", "saved": "0"})
		case source == "all":
			archive = append(archive, map[string]any{"upid": upid, "status": tk.exit, "endtime": u.StartTime.Unix() + 1})
		}
	}
	f.mu.Unlock()
	b, _ := json.Marshal(append(running, archive...))
	writeData(w, string(b))
}
