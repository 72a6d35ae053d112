package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/agentlab/terraform-provider-agentlab/internal/job"
	"github.com/agentlab/terraform-provider-agentlab/reaper"
)

// Client calls the control API.
type Client struct {
	// BaseURL is the API's address, e.g. "http://127.0.0.1:8847"; for a Unix
	// socket any host does ("http://reaper").
	BaseURL string
	// Token, when set, is sent as a bearer token (needed over TCP).
	Token string
	// HTTP is the HTTP client to use.
	HTTP *http.Client
}

// NewUnixClient returns a client that talks to the socket at path.
func NewUnixClient(path string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}
	return &Client{BaseURL: "http://reaper", HTTP: &http.Client{Transport: tr, Timeout: 5 * time.Minute}}
}

// Error is an error answer from the API.
type Error struct {
	// Status is the HTTP status.
	Status int
	// Message is the API's error text.
	Message string
}

// Error implements error.
func (e *Error) Error() string { return e.Message }

// Is makes errors.Is work with the reaper's errors for 401, 404 and 409.
func (e *Error) Is(target error) bool {
	switch target {
	case reaper.ErrNotFound:
		return e.Status == http.StatusNotFound
	case reaper.ErrUnauthorized:
		return e.Status == http.StatusUnauthorized
	case reaper.ErrConflict, job.ErrTransition:
		return e.Status == http.StatusConflict
	case job.ErrNotFound:
		return e.Status == http.StatusNotFound
	case job.ErrInvalid:
		return e.Status == http.StatusBadRequest
	}
	return false
}

// Status returns the reaper's status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var st Status
	err := c.do(ctx, http.MethodGet, "/v1/status", nil, &st)
	return st, err
}

// Leases lists the leases of present sandboxes, or of all ever seen.
func (c *Client) Leases(ctx context.Context, all bool) ([]reaper.Lease, error) {
	p := "/v1/leases"
	if all {
		p += "?all=true"
	}
	var resp LeasesResponse
	err := c.do(ctx, http.MethodGet, p, nil, &resp)
	return resp.Leases, err
}

// Renew sets vmid's lease to expire d from now. When max_ttl caps the
// renewal, the lease is extended to the cap and Renew returns the renewal
// with an *Error of status 409.
func (c *Client) Renew(ctx context.Context, vmid int, d time.Duration) (reaper.Renewal, error) {
	return c.renew(ctx, vmid, RenewRequest{Duration: d.String()})
}

// ForceRenew is Renew allowing a duration shorter than reaper.MinRenewal.
func (c *Client) ForceRenew(ctx context.Context, vmid int, d time.Duration) (reaper.Renewal, error) {
	return c.renew(ctx, vmid, RenewRequest{Duration: d.String(), Force: true})
}

func (c *Client) renew(ctx context.Context, vmid int, req RenewRequest) (reaper.Renewal, error) {
	var resp RenewResponse
	err := c.do(ctx, http.MethodPost, "/v1/leases/"+strconv.Itoa(vmid)+"/renew", req, &resp)
	return resp.Renewal, err
}

// Keep tags sandbox vmid agentlab-keep for the operator (keep), or removes
// the tag (!keep), and returns the lease after it.
func (c *Client) Keep(ctx context.Context, vmid int, keep bool) (reaper.Lease, error) {
	method := http.MethodPost
	if !keep {
		method = http.MethodDelete
	}
	var l reaper.Lease
	err := c.do(ctx, method, "/v1/leases/"+strconv.Itoa(vmid)+"/keep", nil, &l)
	return l, err
}

// Orphans returns the orphans the reaper found.
func (c *Client) Orphans(ctx context.Context) ([]reaper.Orphan, error) {
	var resp OrphansResponse
	err := c.do(ctx, http.MethodGet, "/v1/orphans", nil, &resp)
	return resp.Orphans, err
}

// Events returns the events matching f, oldest first.
func (c *Client) Events(ctx context.Context, f reaper.EventFilter) ([]reaper.Event, error) {
	q := url.Values{}
	if f.VMID != 0 {
		q.Set("vmid", strconv.Itoa(f.VMID))
	}
	if !f.Since.IsZero() {
		q.Set("since", f.Since.UTC().Format(time.RFC3339))
	}
	if f.Limit != 0 {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	p := "/v1/events"
	if len(q) > 0 {
		p += "?" + q.Encode()
	}
	var resp EventsResponse
	err := c.do(ctx, http.MethodGet, p, nil, &resp)
	return resp.Events, err
}

// do sends a request and decodes the answer into out; error answers are
// decoded into out too (a capped renewal carries its result) and returned
// as *Error.
func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.BaseURL+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach agentlab-reaper: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return errorAnswer(resp, method, path, out)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("read answer: %w", err)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("decode answer of %s %s: %w", method, path, err)
	}
	return nil
}

// errorAnswer reads an error answer into an *Error; the body is decoded into
// out too when out is not nil (a capped renewal carries its result).
func errorAnswer(resp *http.Response, method, path string, out any) error {
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("read answer: %w", err)
	}
	var e ErrorResponse
	if json.Unmarshal(data, &e) != nil || e.Error == "" {
		e.Error = fmt.Sprintf("%s %s: %s", method, path, resp.Status)
	}
	if out != nil {
		_ = json.Unmarshal(data, out)
	}
	return &Error{Status: resp.StatusCode, Message: e.Error}
}

// IsUnavailable reports whether err says the reaper could not be reached
// (not running, or a wrong socket path).
func IsUnavailable(err error) bool {
	var ae *Error
	return err != nil && !errors.As(err, &ae)
}
