package pve

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// maxResponseBody bounds what is read of one API response.
const maxResponseBody = 64 << 20

// errNotEnvelope: a 2xx answer that is not PVE's {"data": ...} JSON.
var errNotEnvelope = errors.New("response is not a json api envelope")

// request is one API call. Paths are relative to /api2/json and have their
// dynamic segments escaped (see pathf).
type request struct {
	method string
	path   string
	query  url.Values
	form   url.Values // urlencoded body for POST and PUT
	// body, when set, is sent as is with contentType and contentLength.
	body          io.Reader
	contentType   string
	contentLength int64
	// noTimeout lifts the per-attempt timeout (uploads).
	noTimeout bool
}

// pathf formats an API path, escaping every argument as one path segment.
func pathf(format string, args ...any) string {
	esc := make([]any, len(args))
	for i, a := range args {
		esc[i] = url.PathEscape(fmt.Sprint(a))
	}
	return fmt.Sprintf(format, esc...)
}

// send makes one attempt of r and decodes the response's data into out,
// which may be nil.
func (c *Client) send(ctx context.Context, r request, out any) error {
	u := c.base + r.path
	if len(r.query) > 0 {
		u += "?" + r.query.Encode()
	}
	var body io.Reader
	contentType := r.contentType
	switch {
	case r.body != nil:
		body = r.body
	case r.form != nil && (r.method == http.MethodPost || r.method == http.MethodPut):
		body = strings.NewReader(r.form.Encode())
		contentType = "application/x-www-form-urlencoded"
	}
	attemptCtx := ctx
	if !r.noTimeout {
		var cancel context.CancelFunc
		attemptCtx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(attemptCtx, r.method, u, body)
	if err != nil {
		return fmt.Errorf("pve %s %s: %w", r.method, r.path, err)
	}
	if r.contentLength > 0 {
		req.ContentLength = r.contentLength
	}
	req.Header.Set("Authorization", c.authHeader)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.userAgent)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}

	start := c.clock.Now()
	resp, err := c.http.Do(req)
	if err != nil {
		err = c.transportError(ctx, attemptCtx, r, err)
		c.log.DebugContext(ctx, "pve request failed", "method", r.method, "path", r.path, "duration", c.clock.Now().Sub(start), "err", err)
		return err
	}
	defer resp.Body.Close()
	if sd, ok := out.(streamDecoder); ok && resp.StatusCode >= 200 && resp.StatusCode <= 299 {
		decoded, err := sd.decodeStream(io.LimitReader(resp.Body, maxResponseBody), resp.ContentLength)
		if err != nil {
			err = c.transportError(ctx, attemptCtx, r, fmt.Errorf("reading response: %w", err))
			c.log.DebugContext(ctx, "pve request failed", "method", r.method, "path", r.path, "status", resp.StatusCode, "duration", c.clock.Now().Sub(start), "err", err)
			return err
		}
		c.log.DebugContext(ctx, "pve request", "method", r.method, "path", r.path, "status", resp.StatusCode, "duration", c.clock.Now().Sub(start))
		if decoded {
			return nil
		}
		// An answer the stream decoder does not take (see streamDecoder):
		// ask again and decode it with encoding/json.
		resp.Body.Close()
		return c.send(ctx, r, sd.jsonValue())
	}
	data, err := readBody(resp)
	if err != nil {
		err = c.transportError(ctx, attemptCtx, r, fmt.Errorf("reading response: %w", err))
		c.log.DebugContext(ctx, "pve request failed", "method", r.method, "path", r.path, "status", resp.StatusCode, "duration", c.clock.Now().Sub(start), "err", err)
		return err
	}
	c.log.DebugContext(ctx, "pve request", "method", r.method, "path", r.path, "status", resp.StatusCode, "duration", c.clock.Now().Sub(start))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return parseAPIError(r, resp, data)
	}
	if out == nil {
		return nil
	}
	return decodeData(r, data, out)
}

// readBody reads a response body, at most maxResponseBody bytes of it, into
// a buffer sized by the Content-Length when the server sent one (PVE does,
// unless it compresses the answer).
func readBody(resp *http.Response) ([]byte, error) {
	r := io.LimitReader(resp.Body, maxResponseBody)
	size := 4 << 10
	if n := resp.ContentLength; n >= 0 && n < maxResponseBody {
		size = int(n) + 1 // room for the read that meets the end
	}
	b := make([]byte, 0, size)
	for {
		if len(b) == cap(b) {
			b = append(make([]byte, 0, min(2*cap(b), maxResponseBody+1)), b...)
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
}

// streamDecoder is data that decodes a whole 2xx answer, {"data": ...}, as
// it arrives, faster and with less memory than encoding/json. decodeStream
// reports false, leaving the value as it was, when it cannot decode the
// answer exactly as encoding/json would (invalid JSON included); send then
// requests it again and decodes it into jsonValue, the same value without
// the stream decoder, so that encoding/json gives the answer or the error.
// An error from decodeStream is a failed read of the body.
type streamDecoder interface {
	decodeStream(r io.Reader, size int64) (bool, error)
	jsonValue() any
}

// decodeData decodes the data member of a 2xx answer's body into out, a
// non-nil pointer to a zero value, with numbers in interface values as
// json.Number. The body is decoded in one pass; when that fails, it is
// decoded again by decodeDataStrictly, for its errors: errNotEnvelope when
// the body is not a JSON object, else "decoding response data". (One
// difference remains: a body with the data member twice, which PVE never
// sends, is decoded twice into out rather than once from the last one.)
func decodeData(r request, body []byte, out any) error {
	rv := reflect.ValueOf(out)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return decodeDataStrictly(r, body, out)
	}
	env := struct {
		Data any `json:"data"`
	}{Data: out}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&env); err == nil && isJSONSpace(body[dec.InputOffset():]) {
		return nil
	}
	// out may hold part of the data: decode into a fresh value.
	fresh := reflect.New(rv.Type().Elem())
	err := decodeDataStrictly(r, body, fresh.Interface())
	rv.Elem().Set(fresh.Elem())
	return err
}

// decodeDataStrictly is decodeData in two passes: the body as an envelope,
// then its data.
func decodeDataStrictly(r request, body []byte, out any) error {
	var env struct {
		Data json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		return fmt.Errorf("pve %s %s: %w: %v", r.method, r.path, errNotEnvelope, err)
	}
	if len(env.Data) == 0 {
		env.Data = json.RawMessage("null")
	}
	dec := json.NewDecoder(bytes.NewReader(env.Data))
	dec.UseNumber()
	if err := dec.Decode(out); err != nil {
		return fmt.Errorf("pve %s %s: decoding response data: %w", r.method, r.path, err)
	}
	return nil
}

// isJSONSpace reports whether b is only JSON white space.
func isJSONSpace(b []byte) bool {
	for _, c := range b {
		if c != ' ' && c != '\t' && c != '\n' && c != '\r' {
			return false
		}
	}
	return true
}

// transportError classifies an error of the HTTP exchange itself.
func (c *Client) transportError(ctx, attemptCtx context.Context, r request, err error) error {
	wrapped := fmt.Errorf("pve %s %s: %w", r.method, r.path, err)
	if ctx.Err() == nil && attemptCtx.Err() != nil {
		return &attemptTimeoutError{Err: wrapped}
	}
	if isTLSVerifyError(err) {
		return &TLSError{Endpoint: c.base, Err: err}
	}
	var oe *net.OpError
	var dnsErr *net.DNSError
	if (errors.As(err, &oe) && oe.Op == "dial") || errors.As(err, &dnsErr) {
		return fmt.Errorf("%w at %s: %w", ErrUnreachable, c.base, wrapped)
	}
	return wrapped
}

func isTLSVerifyError(err error) bool {
	var unknownAuthority x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var invalid x509.CertificateInvalidError
	var verify *tls.CertificateVerificationError
	return errors.As(err, &unknownAuthority) || errors.As(err, &hostname) ||
		errors.As(err, &invalid) || errors.As(err, &verify)
}

// parseAPIError builds an *APIError from a non-2xx answer. PVE puts its
// message in the status line; since 2025 also in the body's "message".
func parseAPIError(r request, resp *http.Response, data []byte) *APIError {
	ae := &APIError{Method: r.method, Path: r.path, Status: resp.StatusCode}
	var body struct {
		Message *string        `json:"message"`
		Errors  map[string]any `json:"errors"`
	}
	if json.Unmarshal(data, &body) == nil {
		if body.Message != nil {
			ae.Message = strings.TrimSpace(*body.Message)
		}
		if len(body.Errors) > 0 {
			ae.Errors = make(map[string]string, len(body.Errors))
			for k, v := range body.Errors {
				s, ok := v.(string)
				if !ok {
					b, _ := json.Marshal(v)
					s = string(b)
				}
				ae.Errors[k] = strings.TrimSpace(s)
			}
		}
	}
	if ae.Message == "" {
		ae.Message = strings.TrimSpace(strings.TrimPrefix(resp.Status, strconv.Itoa(resp.StatusCode)))
	}
	if ae.Message == "" {
		if text := strings.TrimSpace(string(data)); text != "" && len(text) < 512 && !strings.HasPrefix(text, "{") {
			ae.Message = text
		} else {
			ae.Message = http.StatusText(resp.StatusCode)
		}
	}
	return ae
}

// withRetry runs fn until it succeeds, fails permanently, runs out of
// attempts or the context's deadline would pass during the next backoff.
func (c *Client) withRetry(ctx context.Context, op string, fn func(ctx context.Context) error) error {
	for attempt := 1; ; attempt++ {
		err := fn(ctx)
		if err == nil || !IsTransient(err) || ctx.Err() != nil {
			return err
		}
		if attempt >= c.retry.MaxAttempts {
			return fmt.Errorf("%s: giving up after %d attempts: %w", op, attempt, err)
		}
		d := c.backoff(attempt)
		if dl, ok := ctx.Deadline(); ok && c.clock.Now().Add(d).After(dl) {
			return fmt.Errorf("%s: no time left for another attempt before the deadline: %w", op, err)
		}
		c.log.WarnContext(ctx, "pve: retrying after transient error", "op", op, "attempt", attempt, "delay", d, "err", err)
		if serr := c.sleep(ctx, d); serr != nil {
			return fmt.Errorf("%w; retry interrupted: %w", err, serr)
		}
	}
}

// backoff returns the delay before retry number attempt (1 for the first
// retry): full jitter, uniform in [0, min(MaxDelay, BaseDelay*2^(attempt-1))].
func (c *Client) backoff(attempt int) time.Duration {
	ceiling := c.retry.MaxDelay
	if attempt < 31 {
		if d := c.retry.BaseDelay << (attempt - 1); d > 0 && d < ceiling {
			ceiling = d
		}
	}
	return time.Duration(c.jitter(int64(ceiling) + 1))
}

// get sends an idempotent GET with retries.
func (c *Client) get(ctx context.Context, path string, query url.Values, out any) error {
	return c.withRetry(ctx, "GET "+path, func(ctx context.Context) error {
		return c.send(ctx, request{method: http.MethodGet, path: path, query: query}, out)
	})
}

// startTask sends r, whose answer is a task UPID (or null when PVE finished
// the work synchronously), and returns the UPID.
func (c *Client) startTask(ctx context.Context, r request) (string, error) {
	var upid *string
	if err := c.send(ctx, r, &upid); err != nil {
		return "", err
	}
	if upid == nil {
		return "", nil
	}
	return *upid, nil
}

// runTask sends r and waits for the task it starts.
func (c *Client) runTask(ctx context.Context, r request) (TaskStatus, error) {
	upid, err := c.startTask(ctx, r)
	if err != nil {
		return TaskStatus{}, err
	}
	if upid == "" {
		return TaskStatus{Status: "stopped", ExitStatus: "OK"}, nil
	}
	return c.WaitTask(ctx, upid)
}
