package pve_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentlab/terraform-provider-agentlab/internal/pve"
	"github.com/agentlab/terraform-provider-agentlab/internal/pvesim"
	"github.com/agentlab/terraform-provider-agentlab/internal/pvesim/pvesimtest"
)

const template = 9000

func simClient(t *testing.T, sim *pvesimtest.Sim, mod ...func(*pve.Config)) *pve.Client {
	t.Helper()
	cfg := pve.Config{Endpoint: sim.URL, APIToken: sim.Token, HTTPClient: sim.Client}
	for _, m := range mod {
		m(&cfg)
	}
	c, err := pve.New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("pve.New: %v", err)
	}
	return c
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func sandboxReq(nonce string) pve.CloneRequest {
	return pve.CloneRequest{
		Node: "pve", SourceVMID: template, Name: "sbx-" + nonce, Nonce: nonce,
		Description: "agentlab sandbox\n<!-- agentlab:nonce=" + nonce + " -->",
	}
}

// lifecycle runs the sandbox create flow and destroys the VM again.
func lifecycle(ctx context.Context, c *pve.Client, nonce string) error {
	ref, err := c.Clone(ctx, sandboxReq(nonce))
	if err != nil {
		if !ref.IsZero() {
			return errors.Join(err, c.Destroy(ctx, ref))
		}
		return fmt.Errorf("clone: %w", err)
	}
	if err := configureAndRun(ctx, c, ref); err != nil {
		return errors.Join(err, c.Destroy(ctx, ref))
	}
	return c.Destroy(ctx, ref)
}

func configureAndRun(ctx context.Context, c *pve.Client, ref pve.VMRef) error {
	cfg, err := c.Config(ctx, ref)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	nic, ok := cfg.NIC("net0")
	if !ok {
		return errors.New("clone has no net0")
	}
	nic.Bridge, nic.Firewall = "vmbr1", true
	err = c.UpdateConfig(ctx, ref, pve.ConfigUpdate{
		Set: map[string]string{
			"cores": "2", "memory": "2048", "net0": nic.String(),
			"tags":    pve.JoinTags([]string{"agentlab", "agentlab-exp-1767225600"}),
			"sshkeys": pve.EncodeSSHKeys([]string{testSSHKey()}),
			"ciuser":  "agent",
		},
		Delete: []string{"serial0", "vga"},
		Digest: cfg.Digest(),
	})
	if err != nil {
		return fmt.Errorf("update: %w", err)
	}
	if err := c.Resize(ctx, ref, cfg.BootDisk(), "20G"); err != nil {
		return fmt.Errorf("resize: %w", err)
	}
	if err := c.Start(ctx, ref); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	ip, err := c.WaitForIP(ctx, ref)
	if err != nil {
		return fmt.Errorf("wait for ip: %w", err)
	}
	if want := pvesim.GuestIPv4(ref.VMID); ip != want {
		return fmt.Errorf("got ip %v; want %v", ip, want)
	}
	return nil
}

// testSSHKey returns a well-formed ed25519 public key line.
func testSSHKey() string {
	pub := make([]byte, ed25519.PublicKeySize)
	for i := range pub {
		pub[i] = byte(i * 7)
	}
	var blob []byte
	for _, part := range [][]byte{[]byte("ssh-ed25519"), pub} {
		blob = binary.BigEndian.AppendUint32(blob, uint32(len(part)))
		blob = append(blob, part...)
	}
	return "ssh-ed25519 " + base64.StdEncoding.EncodeToString(blob) + " test@agentlab"
}

func TestSimLifecycle(t *testing.T) {
	sim := pvesimtest.Start(t)
	c := simClient(t, sim)
	ctx := testCtx(t)

	v, err := c.Ping(ctx)
	if err != nil || v.Version == "" {
		t.Fatalf("Ping: %+v, %v", v, err)
	}
	tmplCfg, err := c.Config(ctx, pve.VMRef{Node: "pve", VMID: template})
	if err != nil {
		t.Fatal(err)
	}
	tmplNIC, _ := tmplCfg.NIC("net0")

	ref, err := c.Clone(ctx, sandboxReq("life"))
	if err != nil {
		t.Fatalf("Clone: %v", err)
	}
	if ref.Node != "pve" || ref.VMID < 100 {
		t.Fatalf("got ref %v; want a vm on pve", ref)
	}
	cfg, err := c.Config(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Lock() != "" || cfg.Name() != "sbx-life" || !strings.Contains(cfg.Description(), "nonce=life") {
		t.Errorf("got lock %q name %q description %q; want a finished clone named sbx-life with the nonce", cfg.Lock(), cfg.Name(), cfg.Description())
	}
	nic, _ := cfg.NIC("net0")
	if nic.MAC == "" || nic.MAC == tmplNIC.MAC {
		t.Errorf("got clone MAC %q, template MAC %q; want a new MAC", nic.MAC, tmplNIC.MAC)
	}
	if got := cfg.BootDisk(); got != "scsi0" {
		t.Errorf("got boot disk %q; want scsi0", got)
	}

	if err := configureAndRun(ctx, c, ref); err != nil {
		t.Fatal(err)
	}
	cfg, err = c.Config(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Value("cores") != "2" || cfg.Value("memory") != "2048" {
		t.Errorf("got cores %q memory %q; want 2 and 2048", cfg.Value("cores"), cfg.Value("memory"))
	}
	if got, want := cfg.Tags(), []string{"agentlab", "agentlab-exp-1767225600"}; !slices.Equal(got, want) {
		t.Errorf("got tags %q; want %q", got, want)
	}
	if _, ok := cfg.Get("serial0"); ok {
		t.Error("serial0 was not deleted")
	}
	newNIC, _ := cfg.NIC("net0")
	if newNIC.MAC != nic.MAC || newNIC.Bridge != "vmbr1" || !newNIC.Firewall {
		t.Errorf("got net0 %+v; want MAC %s kept on vmbr1 with firewall", newNIC, nic.MAC)
	}
	if d, _ := cfg.Drive("scsi0"); d.SizeBytes != 20<<30 {
		t.Errorf("got scsi0 size %q; want 20G", d.Size)
	}
	// resizing to the same size is a no-op; shrinking is refused
	tasks := len(sim.Server.Tasks())
	if err := c.Resize(ctx, ref, "scsi0", "20G"); err != nil {
		t.Errorf("same-size resize: %v", err)
	}
	if got := len(sim.Server.Tasks()); got != tasks {
		t.Errorf("same-size resize started %d tasks; want none", got-tasks)
	}
	if err := c.Resize(ctx, ref, "scsi0", "10G"); !errors.Is(err, pve.ErrShrink) {
		t.Errorf("got %v; want ErrShrink", err)
	}
	if err := c.Resize(ctx, ref, "scsi7", "30G"); err == nil || pve.IsNotFound(err) {
		t.Errorf("got %v; want a missing-disk error that is not IsNotFound", err)
	}
	// a stale digest is refused
	err = c.UpdateConfig(ctx, ref, pve.ConfigUpdate{Set: map[string]string{"cores": "3"}, Digest: tmplCfg.Digest()})
	if err == nil {
		t.Error("update with a stale digest: got nil error; want one")
	}

	st, err := c.Status(ctx, ref)
	if err != nil || !st.Running() || st.VMID != ref.VMID {
		t.Errorf("got status %+v, %v; want running", st, err)
	}
	if err := c.Start(ctx, ref); err != nil {
		t.Errorf("start of a running vm: %v", err)
	}

	vms, err := c.ListVMs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, e := range vms {
		if e.VMID == ref.VMID {
			found = true
			if e.Node != "pve" || e.Status != "running" || e.Name != "sbx-life" || !e.HasTag("agentlab") || e.Template || e.Type != "qemu" {
				t.Errorf("got entry %+v; want running sbx-life tagged agentlab", e)
			}
		}
		if e.VMID == template && !e.Template {
			t.Errorf("got template entry %+v; want Template", e)
		}
	}
	if !found {
		t.Errorf("vm %d not listed in %+v", ref.VMID, vms)
	}

	if err := c.Shutdown(ctx, ref, 5*time.Second); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if st, _ := c.Status(ctx, ref); st.Running() {
		t.Errorf("got status %+v after shutdown; want stopped", st)
	}
	if _, err := c.WaitForIP(ctx, ref); err == nil {
		t.Error("WaitForIP of a stopped vm: got nil error; want one")
	}
	if err := c.Start(ctx, ref); err != nil {
		t.Fatal(err)
	}

	if err := c.Destroy(ctx, ref); err != nil {
		t.Fatalf("Destroy: %v", err)
	}
	if _, ok := sim.Server.VM(ref.VMID); ok {
		t.Errorf("vm %d still exists", ref.VMID)
	}
	for _, vol := range sim.Server.Volumes("") {
		if vol.VMID == ref.VMID {
			t.Errorf("volume %s of vm %d still exists", vol.Volid, ref.VMID)
		}
	}
	if err := c.Destroy(ctx, ref); err != nil {
		t.Errorf("second Destroy: %v; want success (already gone)", err)
	}
	if _, err := c.Config(ctx, ref); !pve.IsNotFound(err) {
		t.Errorf("Config after destroy: got %v; want IsNotFound", err)
	}
}

func TestSimParallelClones(t *testing.T) {
	sim := pvesimtest.Start(t)
	c := simClient(t, sim)
	ctx := testCtx(t)
	const n = 50
	refs := make([]pve.VMRef, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { refs[i], errs[i] = c.Clone(ctx, sandboxReq(fmt.Sprintf("p%02d", i))) })
	}
	wg.Wait()
	seen := map[int]bool{}
	for i := range n {
		if errs[i] != nil {
			t.Errorf("clone %d: %v", i, errs[i])
			continue
		}
		if seen[refs[i].VMID] {
			t.Errorf("vmid %d handed out twice", refs[i].VMID)
		}
		seen[refs[i].VMID] = true
		conf, ok := sim.Server.VMConfig(refs[i].VMID)
		if !ok || !strings.Contains(conf["description"], fmt.Sprintf("nonce=p%02d", i)) {
			t.Errorf("clone %d: vm %d has config %v; want its own nonce", i, refs[i].VMID, conf)
		}
	}
	if got, want := len(sim.Server.VMIDs()), n+1; got != want {
		t.Errorf("got %d guests; want %d", got, want)
	}
	st := sim.Server.Stats()
	if got := st.RequestCount("POST /nodes/{node}/qemu/{vmid}/clone"); got != n {
		t.Errorf("got %d clone requests; want %d (no VMID collisions)", got, n)
	}
	t.Logf("simulator: %s", st)
}

func TestSimFaultsAbsorbed(t *testing.T) {
	sim := pvesimtest.Start(t, func(o *pvesim.Options) {
		o.FaultRate = 0.1
		o.Seed = 7
	})
	c := simClient(t, sim, func(cfg *pve.Config) {
		cfg.Retry = pve.RetryPolicy{BaseDelay: 10 * time.Millisecond, MaxDelay: 200 * time.Millisecond}
	})
	ctx := testCtx(t)
	const n = 12
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { errs[i] = lifecycle(ctx, c, fmt.Sprintf("f%02d", i)) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("lifecycle %d: %v", i, err)
		}
	}
	if got := sim.Server.VMIDs(); !slices.Equal(got, []int{template}) {
		t.Errorf("got guests %v after all destroys; want only the template (no orphans)", got)
	}
	st := sim.Server.Stats()
	if st.FaultsInjected == 0 {
		t.Errorf("got no injected faults; the test proves nothing")
	}
	t.Logf("simulator: %s", st)
}

func TestSimNotFound(t *testing.T) {
	for _, legacy := range []bool{false, true} {
		t.Run(fmt.Sprintf("legacy errors %v", legacy), func(t *testing.T) {
			sim := pvesimtest.Start(t, func(o *pvesim.Options) { o.LegacyErrors = legacy })
			c := simClient(t, sim)
			ctx := testCtx(t)
			gone := pve.VMRef{Node: "pve", VMID: 4242}
			_, err := c.Config(ctx, gone)
			if !pve.IsNotFound(err) {
				t.Errorf("Config: got %v; want IsNotFound", err)
			}
			var ae *pve.APIError
			if !errors.As(err, &ae) || ae.Status != 500 || !strings.Contains(ae.Message, "does not exist") {
				t.Errorf("Config: got %v; want a 500 *APIError with PVE's message", err)
			}
			if _, err := c.Status(ctx, gone); !pve.IsNotFound(err) {
				t.Errorf("Status: got %v; want IsNotFound", err)
			}
			if err := c.Start(ctx, gone); !pve.IsNotFound(err) {
				t.Errorf("Start: got %v; want IsNotFound", err)
			}
			if err := c.UpdateConfig(ctx, gone, pve.ConfigUpdate{Set: map[string]string{"cores": "2"}}); !pve.IsNotFound(err) {
				t.Errorf("UpdateConfig: got %v; want IsNotFound", err)
			}
			if _, err := c.WaitForIP(ctx, gone); !pve.IsNotFound(err) {
				t.Errorf("WaitForIP: got %v; want IsNotFound", err)
			}
			if _, err := c.FindVM(ctx, gone.VMID); !pve.IsNotFound(err) {
				t.Errorf("FindVM: got %v; want IsNotFound", err)
			}
			if err := c.Destroy(ctx, gone); err != nil {
				t.Errorf("Destroy: got %v; want success", err)
			}
			req := sandboxReq("x")
			req.SourceVMID = 4343
			if _, err := c.Clone(ctx, req); !pve.IsNotFound(err) {
				t.Errorf("Clone of a missing template: got %v; want IsNotFound", err)
			}
			// permanent errors are not retried
			before := sim.Server.Stats().RequestCount("GET /nodes/{node}/qemu/{vmid}/config")
			_, _ = c.Config(ctx, gone)
			if got := sim.Server.Stats().RequestCount("GET /nodes/{node}/qemu/{vmid}/config") - before; got != 1 {
				t.Errorf("got %d config requests for a missing vm; want 1", got)
			}
		})
	}
}

func TestSimPing(t *testing.T) {
	sim := pvesimtest.Start(t)
	ctx := testCtx(t)
	bad := simClient(t, sim, func(cfg *pve.Config) { cfg.APIToken = sim.TokenID + "=wrong" })
	if _, err := bad.Ping(ctx); !errors.Is(err, pve.ErrUnauthorized) {
		t.Errorf("bad token: got %v; want ErrUnauthorized", err)
	}
	untrusted, err := pve.New(ctx, pve.Config{Endpoint: "https://" + sim.Host, APIToken: sim.Token})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := untrusted.Ping(ctx); !errors.Is(err, pve.ErrUntrustedCertificate) {
		t.Errorf("untrusted: got %v; want ErrUntrustedCertificate", err)
	}
	insecure, err := pve.New(ctx, pve.Config{Endpoint: sim.Host, APIToken: sim.Token, Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := insecure.Ping(ctx); err != nil {
		t.Errorf("insecure: %v", err)
	}
}

func TestSimStorage(t *testing.T) {
	sim := pvesimtest.Start(t)
	c := simClient(t, sim)
	ctx := testCtx(t)
	data := bytes.Repeat([]byte("cidata-"), 100000)
	volid, err := c.UploadISO(ctx, "pve", "local", "cidata-1.iso", bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatalf("UploadISO: %v", err)
	}
	if volid != "local:iso/cidata-1.iso" {
		t.Errorf("got volid %q; want local:iso/cidata-1.iso", volid)
	}
	got, ok := sim.Server.Volume("local", volid)
	if !ok || !bytes.Equal(got, data) {
		t.Errorf("uploaded volume: got %d bytes (exists %v); want %d bytes equal to the upload", len(got), ok, len(data))
	}
	vols, err := c.StorageContent(ctx, "pve", "local", "iso", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(vols) != 1 || vols[0].VolID != volid || vols[0].Size != int64(len(data)) || vols[0].Content != "iso" {
		t.Errorf("got content %+v; want the one iso of %d bytes", vols, len(data))
	}
	if err := c.DeleteVolume(ctx, "pve", volid); err != nil {
		t.Fatalf("DeleteVolume: %v", err)
	}
	if _, ok := sim.Server.Volume("local", volid); ok {
		t.Error("volume still exists after DeleteVolume")
	}
	if err := c.DeleteVolume(ctx, "pve", volid); err != nil {
		t.Errorf("second DeleteVolume: %v; want success (already gone)", err)
	}

	ws, err := c.AllocVolume(ctx, "pve", "local-lvm", 7001, "vm-7001-disk-0", "1G")
	if err != nil {
		t.Fatalf("AllocVolume: %v", err)
	}
	if ws != "local-lvm:vm-7001-disk-0" {
		t.Errorf("got volid %q; want local-lvm:vm-7001-disk-0", ws)
	}
	vols, err = c.StorageContent(ctx, "pve", "local-lvm", "", 7001)
	if err != nil || len(vols) != 1 || vols[0].VMID != 7001 || vols[0].Size != 1<<30 {
		t.Errorf("got %+v, %v; want the 1 GiB volume owned by 7001", vols, err)
	}
	if _, err := c.UploadISO(ctx, "pve", "local", "../evil.iso", bytes.NewReader(nil), 0); err == nil {
		t.Error("UploadISO with a path in the name: got nil error; want one")
	}
}

// TestSimTaskListShape waits for tasks and lists active ones against the
// simulator, which answers GET /nodes/{node}/tasks in PVE's shape (running
// tasks with status "RUNNING", ended ones with their endtime and exit
// status): each wait gets its exit status from the list without reading the
// task's status, and ActiveTasks reports a running clone as running.
func TestSimTaskListShape(t *testing.T) {
	sim := pvesimtest.Start(t, func(o *pvesim.Options) {
		o.Latency = pvesim.Latency{LinkedClone: 300 * time.Millisecond, Start: 100 * time.Millisecond}
	})
	c := simClient(t, sim)
	ctx := testCtx(t)
	ref, err := c.Clone(ctx, sandboxReq("shape"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx, ref); err != nil {
		t.Fatal(err)
	}
	// a failing task: its exit status comes from the list
	err = c.Start(ctx, pve.VMRef{Node: "pve", VMID: template})
	var te *pve.TaskError
	if !errors.As(err, &te) || !strings.Contains(te.ExitStatus, "template") {
		t.Errorf("got %v; want the start of a template to fail", err)
	}
	for route, byStatus := range sim.Server.Stats().Requests {
		if route == "GET /nodes/{node}/tasks/{upid}/status" {
			t.Errorf("got %v requests to %s; want none, the list gives every exit status", byStatus, route)
		}
	}

	slow := pvesimtest.Start(t, func(o *pvesim.Options) {
		o.Latency = pvesim.Latency{LinkedClone: time.Hour}
	})
	// the clone's POST answers at once; its task runs for an hour
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, slow.URL+"/nodes/pve/qemu/9000/clone", strings.NewReader("newid=150"))
	req.Header.Set("Authorization", slow.AuthHeader())
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := slow.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("clone: got %s; want 200", resp.Status)
	}
	running, err := simClient(t, slow).ActiveTasks(ctx, "pve", "qmclone")
	if err != nil {
		t.Fatal(err)
	}
	if len(running) != 1 || !running[0].Running() || running[0].Type != "qmclone" {
		t.Errorf("got active tasks %+v; want the clone, running", running)
	}
}

// TestSimDestroyRunning: DestroyRunning stops and destroys a running guest
// without reading its status, and still destroys a guest that had stopped
// (its stop does nothing) or is gone.
func TestSimDestroyRunning(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(ctx context.Context, c *pve.Client, ref pve.VMRef) error
	}{
		{"running", func(ctx context.Context, c *pve.Client, ref pve.VMRef) error { return c.Start(ctx, ref) }},
		{"stopped meanwhile", func(context.Context, *pve.Client, pve.VMRef) error { return nil }},
		{"gone", func(ctx context.Context, c *pve.Client, ref pve.VMRef) error { return c.Destroy(ctx, ref) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sim := pvesimtest.Start(t)
			c := simClient(t, sim)
			ctx := testCtx(t)
			ref, err := c.Clone(ctx, sandboxReq("dr"))
			if err != nil {
				t.Fatal(err)
			}
			if err := tc.setup(ctx, c, ref); err != nil {
				t.Fatal(err)
			}
			before := sim.Server.Stats().Requests["GET /nodes/{node}/qemu/{vmid}/status/current"]
			if err := c.DestroyRunning(ctx, ref); err != nil {
				t.Fatalf("DestroyRunning: %v", err)
			}
			if _, ok := sim.Server.VM(ref.VMID); ok {
				t.Errorf("vm %d exists; want it destroyed", ref.VMID)
			}
			after := sim.Server.Stats().Requests["GET /nodes/{node}/qemu/{vmid}/status/current"]
			if n := sumCounts(after) - sumCounts(before); n != 0 {
				t.Errorf("got %d status reads; want none", n)
			}
		})
	}
}

func sumCounts(byStatus map[int]int) int {
	n := 0
	for _, c := range byStatus {
		n += c
	}
	return n
}
