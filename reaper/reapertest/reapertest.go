// Package reapertest creates AgentLab sandboxes in a Proxmox VE API (the
// simulator, in tests and benchmarks) the way the provider does: clone a
// template, then write the metadata block and the tags. It talks plain HTTP
// to the API, so tests of the reaper depend on neither the provider nor the
// client under test.
package reapertest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/agentlab/terraform-provider-agentlab/internal/lease"
)

// PVE is a Proxmox VE API to create sandboxes in.
type PVE struct {
	// Endpoint is the API base, ending in /api2/json.
	Endpoint string
	// Token is "user@realm!id=secret".
	Token string
	// HTTP is the client to use (trusting the server's certificate).
	HTTP *http.Client
	// Node is the node to create sandboxes on ("pve" when empty).
	Node string
	// Template is the VMID to clone (9000 when zero).
	Template int
	// PollEvery is the interval between task status polls (10 ms when zero).
	PollEvery time.Duration
}

// Sandbox describes a sandbox to create.
type Sandbox struct {
	VMID      int
	Name      string // "sbx-VMID" when empty
	Created   time.Time
	TTL       time.Duration
	MaxTTL    time.Duration
	OnExpiry  lease.Action
	Token     string   // heartbeat token; its sha256 goes into the metadata
	Workspace string   // workspace volume
	JobID     string   // the job the sandbox runs
	Tags      []string // extra tags (agentlab-keep, ...)
	Start     bool     // start the VM after configuring it
	Owner     string   // the metadata's owner ("reapertest" when empty)
}

// Metadata returns the metadata block the sandbox gets.
func (s Sandbox) Metadata() (lease.Metadata, error) {
	l, err := lease.New(s.Created, s.TTL, s.MaxTTL, s.OnExpiry)
	if err != nil {
		return lease.Metadata{}, err
	}
	owner := s.Owner
	if owner == "" {
		owner = "reapertest"
	}
	m := lease.Metadata{Owner: owner, Nonce: lease.NewNonce(), Lease: l, Workspace: s.Workspace, JobID: s.JobID}
	if s.Token != "" {
		sum := sha256.Sum256([]byte(s.Token))
		m.HeartbeatTokenSHA256 = hex.EncodeToString(sum[:])
	}
	return m, nil
}

func (p *PVE) node() string {
	if p.Node == "" {
		return "pve"
	}
	return p.Node
}

// Create clones the template into s.VMID and writes the sandbox's metadata
// and tags in one config update, as the provider does.
func (p *PVE) Create(ctx context.Context, s Sandbox) (lease.Metadata, error) {
	m, err := s.Metadata()
	if err != nil {
		return m, err
	}
	desc, err := lease.Encode("", m)
	if err != nil {
		return m, err
	}
	tags, err := lease.SandboxTags(s.Tags, m.ExpiresAt)
	if err != nil {
		return m, err
	}
	name := s.Name
	if name == "" {
		name = "sbx-" + strconv.Itoa(s.VMID)
	}
	if err := p.Clone(ctx, s.VMID, name); err != nil {
		return m, err
	}
	if err := p.SetConfig(ctx, s.VMID, map[string]string{"description": desc, "tags": tags}); err != nil {
		return m, err
	}
	if s.Start {
		if err := p.task(ctx, http.MethodPost, fmt.Sprintf("/nodes/%s/qemu/%d/status/start", p.node(), s.VMID), nil); err != nil {
			return m, err
		}
	}
	return m, nil
}

// Clone makes a linked clone of the template with the given VMID and name.
func (p *PVE) Clone(ctx context.Context, vmid int, name string) error {
	tmpl := p.Template
	if tmpl == 0 {
		tmpl = 9000
	}
	return p.task(ctx, http.MethodPost, fmt.Sprintf("/nodes/%s/qemu/%d/clone", p.node(), tmpl),
		url.Values{"newid": {strconv.Itoa(vmid)}, "name": {name}})
}

// SetConfig changes options of a VM (PUT .../config).
func (p *PVE) SetConfig(ctx context.Context, vmid int, set map[string]string) error {
	form := url.Values{}
	for k, v := range set {
		form.Set(k, v)
	}
	return p.Do(ctx, http.MethodPut, fmt.Sprintf("/nodes/%s/qemu/%d/config", p.node(), vmid), form, nil)
}

// Config reads a VM's config; ok is false when the VM does not exist.
func (p *PVE) Config(ctx context.Context, vmid int) (cfg map[string]any, ok bool, err error) {
	err = p.Do(ctx, http.MethodGet, fmt.Sprintf("/nodes/%s/qemu/%d/config", p.node(), vmid), nil, &cfg)
	if err != nil && strings.Contains(err.Error(), "does not exist") {
		return nil, false, nil
	}
	return cfg, err == nil, err
}

// Exists reports whether VM vmid exists.
func (p *PVE) Exists(ctx context.Context, vmid int) (bool, error) {
	_, ok, err := p.Config(ctx, vmid)
	return ok, err
}

// Lease reads VM vmid's metadata block.
func (p *PVE) Lease(ctx context.Context, vmid int) (lease.Metadata, error) {
	cfg, ok, err := p.Config(ctx, vmid)
	if err != nil {
		return lease.Metadata{}, err
	}
	if !ok {
		return lease.Metadata{}, fmt.Errorf("vm %d does not exist", vmid)
	}
	desc, _ := cfg["description"].(string)
	return lease.Decode(desc)
}

// task runs a request that answers with a task UPID and waits for the task.
func (p *PVE) task(ctx context.Context, method, path string, form url.Values) error {
	var upid string
	if err := p.Do(ctx, method, path, form, &upid); err != nil {
		return err
	}
	every := p.PollEvery
	if every <= 0 {
		every = 10 * time.Millisecond
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		var st struct {
			Status     string `json:"status"`
			ExitStatus string `json:"exitstatus"`
		}
		if err := p.Do(ctx, http.MethodGet, fmt.Sprintf("/nodes/%s/tasks/%s/status", p.node(), url.PathEscape(upid)), nil, &st); err != nil {
			return err
		}
		if st.Status == "stopped" {
			if st.ExitStatus != "OK" {
				return fmt.Errorf("%s %s: task failed: %s", method, path, st.ExitStatus)
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Do sends one API request and decodes the answer's data into out.
func (p *PVE) Do(ctx context.Context, method, path string, form url.Values, out any) error {
	u := p.Endpoint + path
	var body io.Reader
	if form != nil && method != http.MethodGet {
		body = strings.NewReader(form.Encode())
	} else if form != nil {
		u += "?" + form.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "PVEAPIToken="+p.Token)
	if body != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	hc := p.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Message string            `json:"message"`
			Errors  map[string]string `json:"errors"`
		}
		_ = json.Unmarshal(data, &e)
		return fmt.Errorf("%s %s: %s %s %v", method, path, resp.Status, strings.TrimSpace(e.Message), e.Errors)
	}
	if out == nil {
		return nil
	}
	var env struct {
		Data json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(data, &env); err != nil {
		return fmt.Errorf("%s %s: decode: %w", method, path, err)
	}
	return json.Unmarshal(env.Data, out)
}
