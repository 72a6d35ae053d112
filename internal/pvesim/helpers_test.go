package pvesim_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/agentlab/terraform-provider-agentlab/internal/pvesim/pvesimtest"
)

// answer is a raw HTTP answer of the simulator.
type answer struct {
	status int
	reason string // the status line after the code
	body   []byte
	header http.Header
}

func (a answer) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(a.body, &m); err != nil {
		t.Fatalf("decode %q: %v", a.body, err)
	}
	return m
}

// do sends a request with the simulator's token. body is form-encoded unless
// ctype says otherwise.
func do(t *testing.T, sim *pvesimtest.Sim, method, path, body, ctype string) answer {
	t.Helper()
	return doAuth(t, sim, method, path, body, ctype, sim.AuthHeader())
}

func doAuth(t *testing.T, sim *pvesimtest.Sim, method, path, body, ctype, auth string) answer {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, sim.URL+path, r)
	if err != nil {
		t.Fatalf("new request: %v", err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := sim.Client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	reason := strings.TrimSpace(strings.TrimPrefix(resp.Status, resp.Status[:3]))
	return answer{status: resp.StatusCode, reason: reason, body: b, header: resp.Header}
}

// doJSON sends a request and decodes a successful answer into out.
func doJSON(t *testing.T, sim *pvesimtest.Sim, method, path, body, ctype string, out any) {
	t.Helper()
	a := do(t, sim, method, path, body, ctype)
	if a.status != http.StatusOK {
		t.Fatalf("%s %s = %d %s %s; want 200", method, path, a.status, a.reason, a.body)
	}
	if err := json.Unmarshal(a.body, out); err != nil {
		t.Fatalf("decode %s: %v", a.body, err)
	}
}

// data returns the "data" member of a successful answer.
func data(t *testing.T, sim *pvesimtest.Sim, method, path, body string) any {
	t.Helper()
	var out struct {
		Data any `json:"data"`
	}
	doJSON(t, sim, method, path, body, "", &out)
	return out.Data
}

// task runs a call that answers a UPID and returns the task's exit status.
func task(t *testing.T, sim *pvesimtest.Sim, method, path, body string) string {
	t.Helper()
	upid, ok := data(t, sim, method, path, body).(string)
	if !ok || !strings.HasPrefix(upid, "UPID:") {
		t.Fatalf("%s %s answered %v; want a UPID", method, path, upid)
	}
	st := data(t, sim, "GET", "/nodes/"+strings.Split(upid, ":")[1]+"/tasks/"+upid+"/status", "").(map[string]any)
	if st["status"] != "stopped" {
		t.Fatalf("task %s status = %v; want stopped (zero latency)", upid, st["status"])
	}
	return st["exitstatus"].(string)
}
