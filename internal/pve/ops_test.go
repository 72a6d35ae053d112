package pve

import (
	"bytes"
	"context"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
)

func TestUpdateConfigLostAnswerWithDigest(t *testing.T) {
	var puts atomic.Int32
	cfg := `{"cores":1,"digest":"d1"}`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodPut:
			if err := r.ParseForm(); err != nil {
				t.Error(err)
			}
			if got := r.PostForm.Get("digest"); got != "d1" {
				t.Errorf("got digest %q; want d1", got)
			}
			if got := r.PostForm.Get("delete"); got != "serial0,vga" {
				t.Errorf("got delete %q; want serial0,vga", got)
			}
			if puts.Add(1) == 1 {
				cfg = `{"cores":4,"digest":"d2"}` // applied, then the answer is lost
				dropConnection(t, w)
				return
			}
			// qemu-server's text for a stale digest on a config update
			writeRaw(t, w, 500, "checksum mismatch (file change by other user?)", `{"data":null}`)
		case http.MethodGet:
			writeData(w, cfg)
		}
	}))
	t.Cleanup(srv.Close)
	c, _ := newTestClient(t, srv)
	ref := VMRef{Node: "pve", VMID: 100}
	err := c.UpdateConfig(context.Background(), ref, ConfigUpdate{
		Set: map[string]string{"cores": "4"}, Delete: []string{"serial0", "vga"}, Digest: "d1"})
	if err != nil {
		t.Fatalf("UpdateConfig: %v; want success: the change is in place", err)
	}
	if got := puts.Load(); got != 2 {
		t.Errorf("got %d puts; want 2", got)
	}

	// the same refusal without an earlier lost answer is a real conflict
	puts.Store(1)
	err = c.UpdateConfig(context.Background(), ref, ConfigUpdate{Set: map[string]string{"cores": "4"}, Delete: []string{"serial0", "vga"}, Digest: "d1"})
	if err == nil {
		t.Error("got nil error for a stale digest; want the conflict")
	}
}

func TestUpdateConfigNoop(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("unexpected request %s %s", r.Method, r.URL.Path)
	}))
	t.Cleanup(srv.Close)
	c, _ := newTestClient(t, srv)
	if err := c.UpdateConfig(context.Background(), VMRef{Node: "pve", VMID: 100}, ConfigUpdate{}); err != nil {
		t.Errorf("got %v; want nil", err)
	}
	err := c.UpdateConfig(context.Background(), VMRef{Node: "pve", VMID: 100}, ConfigUpdate{Set: map[string]string{"a": "1"}, Delete: []string{"a"}})
	if err == nil {
		t.Error("got nil error for a key both set and deleted; want one")
	}
}

func TestUploadISO(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789"), 5000)
	var posts atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet { // the active task list, then the task's status
			if strings.HasSuffix(r.URL.Path, "/tasks") {
				writeData(w, `[]`)
				return
			}
			writeData(w, `{"status":"stopped","exitstatus":"OK"}`)
			return
		}
		if r.URL.Path != "/api2/json/nodes/pve/storage/local/upload" {
			t.Errorf("got path %q", r.URL.Path)
		}
		if len(r.TransferEncoding) > 0 || r.ContentLength <= int64(len(data)) {
			t.Errorf("got transfer encoding %v, length %d; want a Content-Length (PVE refuses chunked uploads)", r.TransferEncoding, r.ContentLength)
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			t.Fatal(err)
		}
		if int64(len(body)) != r.ContentLength {
			t.Errorf("got %d body bytes; want Content-Length %d", len(body), r.ContentLength)
		}
		if posts.Add(1) == 1 {
			writeRaw(t, w, 596, "Broken pipe", "")
			return
		}
		// PVE's parser wants the content field first, then the file part named
		// "filename" carrying the file name.
		_, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if err != nil {
			t.Fatal(err)
		}
		mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
		p1, err := mr.NextPart()
		if err != nil {
			t.Fatal(err)
		}
		if v, _ := io.ReadAll(p1); p1.FormName() != "content" || string(v) != "iso" {
			t.Errorf("got first part %q=%q; want content=iso", p1.FormName(), v)
		}
		p2, err := mr.NextPart()
		if err != nil {
			t.Fatal(err)
		}
		file, _ := io.ReadAll(p2)
		if p2.FormName() != "filename" || p2.FileName() != "seed.iso" || !bytes.Equal(file, data) {
			t.Errorf("got file part name %q file %q with %d bytes; want filename, seed.iso, the data", p2.FormName(), p2.FileName(), len(file))
		}
		if !strings.Contains(string(body), `Content-Disposition: form-data; name="filename"; filename="seed.iso"`) {
			t.Error("file part header does not match what PVE's multipart parser expects")
		}
		writeData(w, `"UPID:pve:00000001:00000001:65000001:imgcopy::root@pam!test:"`)
	}))
	t.Cleanup(srv.Close)
	c, _ := newTestClient(t, srv)

	volid, err := c.UploadISO(context.Background(), "pve", "local", "seed.iso", bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatalf("UploadISO: %v", err)
	}
	if volid != "local:iso/seed.iso" {
		t.Errorf("got volid %q; want local:iso/seed.iso", volid)
	}
	if got := posts.Load(); got != 2 {
		t.Errorf("got %d uploads; want 2 (a seekable body is retried)", got)
	}

	// a reader that cannot seek is not retried
	posts.Store(0)
	_, err = c.UploadISO(context.Background(), "pve", "local", "seed.iso", io.MultiReader(bytes.NewReader(data)), int64(len(data)))
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != 596 {
		t.Errorf("got %v; want the 596 error", err)
	}
	if got := posts.Load(); got != 1 {
		t.Errorf("got %d uploads; want 1", got)
	}
}

func TestWaitForIP(t *testing.T) {
	const cfg = `{"net0":"virtio=BC:24:11:2E:4F:10,bridge=vmbr0"}`
	answers := []func(t *testing.T, w http.ResponseWriter){
		func(t *testing.T, w http.ResponseWriter) {
			writeRaw(t, w, 500, "QEMU guest agent is not running", `{"data":null}`)
		},
		func(t *testing.T, w http.ResponseWriter) { writeRaw(t, w, 596, "Connection timed out", "") },
		func(t *testing.T, w http.ResponseWriter) {
			// booted, but only loopback and link-local so far
			writeData(w, `{"result":[
				{"name":"lo","hardware-address":"00:00:00:00:00:00","ip-addresses":[{"ip-address":"127.0.0.1","ip-address-type":"ipv4","prefix":8}]},
				{"name":"ens18","hardware-address":"bc:24:11:2e:4f:10","ip-addresses":[{"ip-address":"169.254.3.4","ip-address-type":"ipv4","prefix":16},{"ip-address":"fe80::1","ip-address-type":"ipv6","prefix":64}]}]}`)
		},
		func(t *testing.T, w http.ResponseWriter) {
			writeData(w, `{"result":[
				{"name":"docker0","hardware-address":"02:42:ac:11:00:01","ip-addresses":[{"ip-address":"172.17.0.1","ip-address-type":"ipv4","prefix":16}]},
				{"name":"ens18","hardware-address":"bc:24:11:2e:4f:10","ip-addresses":[{"ip-address":"10.77.0.5","ip-address-type":"ipv4","prefix":16}]}]}`)
		},
	}
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/config") {
			writeData(w, cfg)
			return
		}
		n := int(calls.Add(1))
		answers[min(n, len(answers))-1](t, w)
	}))
	t.Cleanup(srv.Close)
	c, clk := newTestClient(t, srv)
	ip, err := c.WaitForIP(context.Background(), VMRef{Node: "pve", VMID: 101})
	if err != nil {
		t.Fatalf("WaitForIP: %v", err)
	}
	if want := netip.MustParseAddr("10.77.0.5"); ip != want {
		t.Errorf("got %v; want %v (the address on net0's MAC, not docker0's)", ip, want)
	}
	if got := calls.Load(); got != 4 {
		t.Errorf("got %d agent calls; want 4", got)
	}
	sleeps := clk.Sleeps()
	if len(sleeps) != 3 || sleeps[0] != agentPollMin || sleeps[1] <= sleeps[0] {
		t.Errorf("got sleeps %v; want 3 growing from %v", sleeps, agentPollMin)
	}
}

func TestWaitForIPPermanentErrors(t *testing.T) {
	tests := []struct {
		reason string
		want   string
	}{
		{"No QEMU guest agent configured", "agent is not enabled"},
		{"VM 101 not running", "not running"},
	}
	for _, tt := range tests {
		t.Run(tt.reason, func(t *testing.T) {
			var calls atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if strings.HasSuffix(r.URL.Path, "/config") {
					writeData(w, `{}`)
					return
				}
				calls.Add(1)
				writeRaw(t, w, 500, tt.reason, `{"data":null}`)
			}))
			t.Cleanup(srv.Close)
			c, _ := newTestClient(t, srv)
			_, err := c.WaitForIP(context.Background(), VMRef{Node: "pve", VMID: 101})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v; want an error saying %q", err, tt.want)
			}
			if got := calls.Load(); got != 1 {
				t.Errorf("got %d calls; want 1", got)
			}
		})
	}
}

func TestPickIPv4WithoutMACMatch(t *testing.T) {
	ifaces := []AgentInterface{
		{Name: "lo", MAC: "00:00:00:00:00:00", IPAddresses: []AgentAddress{{Address: "127.0.0.1", Type: "ipv4"}}},
		{Name: "eth0", MAC: "aa:aa:aa:aa:aa:aa", IPAddresses: []AgentAddress{{Address: "2001:db8::1", Type: "ipv6"}, {Address: "192.0.2.7", Type: "ipv4"}}},
	}
	if got, want := pickIPv4(ifaces, map[string]bool{"bc:24:11:2e:4f:10": true}), netip.MustParseAddr("192.0.2.7"); got != want {
		t.Errorf("got %v; want %v", got, want)
	}
	if got := pickIPv4(ifaces[:1], nil); got.IsValid() {
		t.Errorf("got %v; want none", got)
	}
}

func TestDestroyRunningVM(t *testing.T) {
	var (
		running  atomic.Bool
		deleted  atomic.Bool
		stops    atomic.Int32
		deletes  atomic.Int32
		upid     = `"UPID:pve:00000001:00000001:65000001:qmdestroy:100:root@pam!test:"`
		firstDel atomic.Bool
	)
	running.Store(true)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		switch {
		case deleted.Load() && r.Method == http.MethodGet && strings.HasSuffix(p, "/status/current"):
			writeRaw(t, w, 500, "Configuration file 'nodes/pve/qemu-server/100.conf' does not exist", `{"data":null}`)
		case strings.HasSuffix(p, "/status/current"):
			if running.Load() {
				writeData(w, `{"status":"running","vmid":100}`)
			} else {
				writeData(w, `{"status":"stopped","vmid":100}`)
			}
		case strings.HasSuffix(p, "/status/stop"):
			stops.Add(1)
			running.Store(false)
			writeData(w, upid)
		case r.Method == http.MethodDelete:
			deletes.Add(1)
			if q := r.URL.Query(); q.Get("purge") != "1" || q.Get("destroy-unreferenced-disks") != "1" {
				t.Errorf("got query %v; want purge=1&destroy-unreferenced-disks=1", q)
			}
			if !firstDel.Swap(true) {
				running.Store(true) // somebody started it again in between
				writeRaw(t, w, 500, "VM 100 is running - destroy failed", `{"data":null}`)
				return
			}
			deleted.Store(true)
			writeData(w, upid)
		case strings.HasSuffix(p, "/tasks"):
			writeData(w, `[]`) // every task has finished
		case strings.Contains(p, "/tasks/"):
			writeData(w, `{"status":"stopped","exitstatus":"OK"}`)
		default:
			t.Errorf("unexpected %s %s", r.Method, p)
		}
	}))
	t.Cleanup(srv.Close)
	c, _ := newTestClient(t, srv)
	ref := VMRef{Node: "pve", VMID: 100}
	if err := c.Destroy(context.Background(), ref); err != nil {
		t.Fatalf("Destroy: %v", err)
	}
	if stops.Load() != 2 || deletes.Load() != 2 {
		t.Errorf("got %d stops and %d deletes; want 2 and 2", stops.Load(), deletes.Load())
	}
	if err := c.Destroy(context.Background(), ref); err != nil {
		t.Errorf("Destroy of a gone vm: %v; want success", err)
	}
}

func TestResizeRules(t *testing.T) {
	var puts atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasSuffix(r.URL.Path, "/config"):
			writeData(w, `{"scsi0":"local-lvm:vm-100-disk-0,size=8G","ide2":"local-lvm:vm-100-cloudinit,media=cdrom"}`)
		case strings.HasSuffix(r.URL.Path, "/resize"):
			puts.Add(1)
			if err := r.ParseForm(); err != nil {
				t.Error(err)
			}
			if r.PostForm.Get("disk") != "scsi0" || r.PostForm.Get("size") != "20G" {
				t.Errorf("got form %v; want disk=scsi0 size=20G", r.PostForm)
			}
			writeData(w, `null`) // older PVE answers synchronously
		}
	}))
	t.Cleanup(srv.Close)
	c, _ := newTestClient(t, srv)
	ref := VMRef{Node: "pve", VMID: 100}
	ctx := context.Background()
	if err := c.Resize(ctx, ref, "scsi0", "8G"); err != nil || puts.Load() != 0 {
		t.Errorf("same size: got %v after %d puts; want a no-op", err, puts.Load())
	}
	if err := c.Resize(ctx, ref, "scsi0", "8192M"); err != nil || puts.Load() != 0 {
		t.Errorf("same size in MiB: got %v after %d puts; want a no-op", err, puts.Load())
	}
	if err := c.Resize(ctx, ref, "scsi0", "4G"); !errors.Is(err, ErrShrink) {
		t.Errorf("shrink: got %v; want ErrShrink", err)
	}
	if err := c.Resize(ctx, ref, "scsi0", "+4G"); err == nil {
		t.Error("relative size: got nil error; want one")
	}
	if err := c.Resize(ctx, ref, "ide2", "4G"); err == nil {
		t.Error("cd-rom: got nil error; want one")
	}
	if err := c.Resize(ctx, ref, "scsi1", "4G"); err == nil || IsNotFound(err) {
		t.Errorf("missing disk: got %v; want an error that is not IsNotFound", err)
	}
	if err := c.Resize(ctx, ref, "scsi0", "20G"); err != nil || puts.Load() != 1 {
		t.Errorf("grow: got %v after %d puts; want one resize", err, puts.Load())
	}
}
