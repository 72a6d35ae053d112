package api

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/agentlab/terraform-provider-agentlab/internal/job"
)

// ErrChecksum is a downloaded artifact whose bytes do not match the sha256
// the reaper announced.
var ErrChecksum = errors.New("artifact checksum mismatch")

// RegisterJob registers a job (status requested) and returns it with its
// one-time bootstrap token, the only time the token is shown.
func (c *Client) RegisterJob(ctx context.Context, req job.RegisterRequest) (job.Registered, error) {
	var resp job.Registered
	err := c.do(ctx, http.MethodPost, "/v1/jobs", req, &resp)
	return resp, err
}

// SetJobSandbox records the job's sandbox (and its workspace volume, if
// any). From then on the reaper ends the VM when the job ends (unless
// keep_sandbox): the VM must carry the job's ID in its metadata block
// (lease.Metadata.JobID), or the reaper refuses to destroy it. Repeating it
// is harmless.
func (c *Client) SetJobSandbox(ctx context.Context, id string, sb job.SandboxRequest) (job.Job, error) {
	var j job.Job
	err := c.do(ctx, http.MethodPut, jobPath(id)+"/sandbox", sb, &j)
	return j, err
}

// SetJobStatus moves the job to a status the provider drives:
// provisioning or booting.
func (c *Client) SetJobStatus(ctx context.Context, id string, s job.Status) (job.Job, error) {
	var j job.Job
	err := c.do(ctx, http.MethodPost, jobPath(id)+"/status", job.StatusRequest{Status: s}, &j)
	return j, err
}

// Job returns one job.
func (c *Client) Job(ctx context.Context, id string) (job.Job, error) {
	var j job.Job
	err := c.do(ctx, http.MethodGet, jobPath(id), nil, &j)
	return j, err
}

// WatchJob returns job id once its status is no longer since (or it
// ended), or after hold: a long poll. held reports whether the reaper
// honoured the hold; an older reaper answers at once. It implements
// job.Watcher.
func (c *Client) WatchJob(ctx context.Context, id string, since job.Status, hold time.Duration) (j job.Job, held bool, err error) {
	q := url.Values{"wait": {hold.String()}}
	if since != "" {
		q.Set("status", string(since))
	}
	resp, err := c.stream(ctx, jobPath(id)+"?"+q.Encode())
	if err != nil {
		return job.Job{}, false, err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(&j); err != nil {
		return job.Job{}, false, fmt.Errorf("decode job %s: %w", id, err)
	}
	return j, resp.Header.Get(job.HeaderWait) != "", nil
}

// Jobs lists the jobs the reaper keeps, newest first.
func (c *Client) Jobs(ctx context.Context) ([]job.Job, error) {
	var resp job.ListResponse
	err := c.do(ctx, http.MethodGet, "/v1/jobs", nil, &resp)
	return resp.Jobs, err
}

// CancelJob ends the job as failed unless it already ended, with the
// reason "cancelled: why" ("cancelled" when why is empty; see
// job.CancelledReason), and destroys its sandbox unless keep_sandbox.
func (c *Client) CancelJob(ctx context.Context, id, why string) (job.Job, error) {
	var j job.Job
	p := jobPath(id)
	if why != "" {
		p += "?reason=" + url.QueryEscape(why)
	}
	err := c.do(ctx, http.MethodDelete, p, nil, &j)
	return j, err
}

// JobArtifacts lists the job's artifacts, by name.
func (c *Client) JobArtifacts(ctx context.Context, id string) ([]job.Artifact, error) {
	var resp job.ArtifactsResponse
	err := c.do(ctx, http.MethodGet, jobPath(id)+"/artifacts", nil, &resp)
	return resp.Artifacts, err
}

// LogChunk is a piece of a job's log.
type LogChunk struct {
	// Data are the log's bytes from the offset asked for.
	Data []byte
	// Next is the offset to ask for next.
	Next int64
	// Complete is set once the job ended and Next is the log's end.
	Complete bool
}

// JobLog returns the job's log from offset on.
func (c *Client) JobLog(ctx context.Context, id string, offset int64) (LogChunk, error) {
	resp, err := c.stream(ctx, jobPath(id)+"/log?offset="+strconv.FormatInt(offset, 10))
	if err != nil {
		return LogChunk{}, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return LogChunk{}, fmt.Errorf("read log: %w", err)
	}
	next, err := strconv.ParseInt(resp.Header.Get(job.HeaderLogOffset), 10, 64)
	if err != nil {
		next = offset + int64(len(data))
	}
	return LogChunk{Data: data, Next: next, Complete: resp.Header.Get(job.HeaderLogComplete) == "true"}, nil
}

// DownloadArtifact writes the artifact's bytes to w and checks them against
// the sha256 the reaper announces; a mismatch or a short body is an error
// (wrapping ErrChecksum for a mismatch), and then w holds bytes that must be
// thrown away. It returns the artifact's size and sha256.
func (c *Client) DownloadArtifact(ctx context.Context, id, name string, w io.Writer) (job.Artifact, error) {
	resp, err := c.stream(ctx, jobPath(id)+"/artifacts/"+escapeName(name))
	if err != nil {
		return job.Artifact{}, err
	}
	defer resp.Body.Close()
	want := resp.Header.Get(job.HeaderChecksum)
	if len(want) != sha256.Size*2 {
		return job.Artifact{}, fmt.Errorf("download %s of %s: the reaper sent no %s header", name, id, job.HeaderChecksum)
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(w, h), resp.Body)
	if err != nil {
		return job.Artifact{}, fmt.Errorf("download %s of %s: %w", name, id, err)
	}
	if resp.ContentLength >= 0 && n != resp.ContentLength {
		return job.Artifact{}, fmt.Errorf("download %s of %s: got %d of %d bytes", name, id, n, resp.ContentLength)
	}
	got := hex.EncodeToString(h.Sum(nil))
	if got != want {
		return job.Artifact{}, fmt.Errorf("%w: %s of %s has sha256 %s, the reaper announced %s", ErrChecksum, name, id, got, want)
	}
	return job.Artifact{Name: name, Size: n, SHA256: got}, nil
}

// stream sends a GET and returns the answer for the caller to read, or the
// error answer as *Error.
func (c *Client) stream(ctx context.Context, path string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.BaseURL+path, nil)
	if err != nil {
		return nil, err
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
		return nil, fmt.Errorf("cannot reach agentlab-reaper: %w", err)
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		return nil, errorAnswer(resp, http.MethodGet, path, nil)
	}
	return resp, nil
}

func jobPath(id string) string { return "/v1/jobs/" + url.PathEscape(id) }

// escapeName escapes each segment of an artifact name, keeping its slashes.
func escapeName(name string) string {
	u := url.URL{Path: name}
	return u.EscapedPath()
}
