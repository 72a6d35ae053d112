package pvesim

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// maxPost is PVE's limit on request bodies other than uploads (512 KiB).
const maxPost = 512 * 1024

// call is one API request on its way through the simulator.
type call struct {
	s      *Server
	w      http.ResponseWriter
	r      *http.Request
	route  *Route
	rel    string            // path relative to /api2/json
	vars   map[string]string // path variables
	params map[string]string // validated parameters, path variables included
	user   string            // authenticated user: root@pam or root@pam!tok
	upload *uploadedFile
	status int
	kind   string // kind of call for the capacity model (capacity.go)
}

// uploadedFile is the file part of a multipart upload.
type uploadedFile struct {
	name string
	data []byte
}

func (c *call) routeKey() string {
	if c.route == nil {
		return "unknown"
	}
	return c.route.Method + " " + c.route.Path
}

func (c *call) serve() {
	s := c.s
	defer drainBody(c.r)
	if !s.sleep(c.r.Context(), s.opts.Latency.API) {
		c.writeError(errorf(503, "server shutting down"))
		return
	}
	// Match on the escaped path so that an escaped slash stays inside its
	// segment (a volume "local:iso%2Fx.iso"), as PVE's router does.
	rel, ok := strings.CutPrefix(c.r.URL.EscapedPath(), "/api2/json")
	if !ok || (rel != "" && rel[0] != '/') {
		c.writeError(errorf(501, "no such uri"))
		return
	}
	if rel == "" {
		rel = "/"
	}
	if len(rel) > 1 {
		rel = strings.TrimSuffix(rel, "/")
	}
	c.rel = rel
	method := c.r.Method
	if method == http.MethodHead {
		method = http.MethodGet
	}
	route, vars, _ := s.routes.match(method, rel)
	c.route, c.vars = route, vars
	c.kind = callKind(route)

	if route == nil || !route.NoAuth {
		if err := c.authenticate(); err != nil {
			s.sleep(c.r.Context(), s.opts.AuthFailureDelay)
			c.writeError(err)
			return
		}
	}
	if route == nil {
		shown, err := url.PathUnescape(rel)
		if err != nil {
			shown = rel
		}
		c.writeError(errorf(501, "Method '%s %s' not implemented", c.r.Method, shown))
		return
	}
	// A known call from an authenticated client takes an API worker.
	release, qerr := s.acquireWorker(c.r.Context(), route)
	if qerr != nil {
		c.writeError(qerr)
		return
	}
	defer release()
	if !s.sleep(c.r.Context(), s.serviceTime(c.kind)) {
		c.writeError(errorf(503, "server shutting down"))
		return
	}
	raw, err := c.readParams()
	if err != nil {
		c.writeError(asAPIError(err))
		return
	}
	if ferr := s.injectFault(c); ferr != nil {
		c.writeError(ferr)
		return
	}
	params, perr := validateParams(route, raw, vars)
	if perr != nil {
		c.writeError(perr)
		return
	}
	c.params = params
	if _, ok := vars["node"]; ok {
		if err := c.checkNode(); err != nil {
			c.writeError(asAPIError(err))
			return
		}
	}
	data, herr := route.handle(c)
	// What the answer shows is on disk before it is sent (persist.go).
	if derr := s.waitDurable(); derr != nil {
		c.writeError(asAPIError(derr))
		return
	}
	if herr != nil {
		c.writeError(asAPIError(herr))
		return
	}
	if lerr := s.loseAnswer(c); lerr != nil {
		c.writeError(lerr)
		return
	}
	c.writeData(data)
}

func asAPIError(err error) *apiError {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	return fail("%s", err.Error())
}

// readParams collects the parameters of the request as PVE does: the body
// (urlencoded unless Content-Type is application/json; multipart for uploads),
// overridden by the query string.
func (c *call) readParams() (map[string][]string, error) {
	r := c.r
	params := map[string][]string{}
	hasBody := r.ContentLength > 0 || (r.ContentLength < 0 && r.Body != nil && r.Body != http.NoBody)
	if hasBody {
		if r.Method != http.MethodPost && r.Method != http.MethodPut {
			return nil, errorf(501, "Unexpected content for method '%s'", r.Method)
		}
		ctype := r.Header.Get("Content-Type")
		mt, mparams, _ := mime.ParseMediaType(ctype)
		switch {
		case c.route.Upload:
			if mt != "multipart/form-data" || mparams["boundary"] == "" {
				return nil, fail("upload 'Content-Type '%s' not implemented", ctype)
			}
			up, err := readMultipart(r, params)
			if err != nil {
				return nil, err
			}
			c.upload = up
		case r.ContentLength > maxPost:
			return nil, errorf(501, "for data too large")
		case ctype == "" || mt == "application/x-www-form-urlencoded" || mt == "application/json":
			body, err := io.ReadAll(io.LimitReader(r.Body, maxPost+1))
			if err != nil {
				return nil, fail("unable to read request body - %v", err)
			}
			if len(body) > maxPost {
				return nil, errorf(501, "for data too large")
			}
			if mt == "application/json" {
				if err := decodeJSONParams(body, params); err != nil {
					return nil, err
				}
			} else {
				decodeURLEncoded(string(body), params)
			}
		default:
			return nil, errorf(506, "upload 'Content-Type '%s' not implemented", ctype)
		}
	}
	q := map[string][]string{}
	decodeURLEncoded(r.URL.RawQuery, q)
	for k, v := range q {
		params[k] = v
	}
	return params, nil
}

// decodeURLEncoded decodes like PVE's decode_urlencoded: pairs split on & and ;,
// '+' is a space, %XX escapes; a repeated key collects all its values.
func decodeURLEncoded(data string, into map[string][]string) {
	if data == "" {
		return
	}
	for _, kv := range strings.FieldsFunc(data, func(r rune) bool { return r == '&' || r == ';' }) {
		k, v, hasV := strings.Cut(kv, "=")
		k = pveUnescape(k)
		if !hasV {
			if _, ok := into[k]; !ok {
				into[k] = nil
			}
			continue
		}
		into[k] = append(into[k], pveUnescape(v))
	}
}

func pveUnescape(s string) string {
	if !strings.ContainsAny(s, "+%") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '+':
			b.WriteByte(' ')
		case s[i] == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]):
			n, _ := strconv.ParseUint(s[i+1:i+3], 16, 8)
			b.WriteByte(byte(n))
			i += 2
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

// decodeJSONParams turns a JSON object body into parameter values.
func decodeJSONParams(body []byte, into map[string][]string) error {
	if len(strings.TrimSpace(string(body))) == 0 {
		return nil
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.UseNumber()
	var obj map[string]any
	if err := dec.Decode(&obj); err != nil {
		return errorf(400, "malformed JSON body: %v", err)
	}
	for k, v := range obj {
		switch v := v.(type) {
		case nil:
		case []any:
			vals := make([]string, 0, len(v))
			for _, e := range v {
				vals = append(vals, jsonScalar(e))
			}
			into[k] = vals
		case map[string]any:
			into[k] = []string{"\x00HASH"}
		default:
			into[k] = []string{jsonScalar(v)}
		}
	}
	return nil
}

func jsonScalar(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case bool:
		if v {
			return "1"
		}
		return "0"
	case json.Number:
		return v.String()
	case nil:
		return ""
	}
	return fmt.Sprint(v)
}

// writeData writes a successful answer {"data": ...}.
func (c *call) writeData(data any) {
	body := map[string]any{"data": data}
	if lt, ok := data.(listWithTotal); ok {
		body = map[string]any{"data": lt.items, "total": lt.total}
	}
	buf, err := json.Marshal(body)
	if err != nil {
		c.writeError(fail("unable to encode result: %v", err))
		return
	}
	c.status = http.StatusOK
	h := c.w.Header()
	setCommonHeaders(h)
	h.Set("Content-Type", "application/json;charset=UTF-8")
	h.Set("Content-Length", strconv.Itoa(len(buf)))
	c.w.WriteHeader(http.StatusOK)
	_, _ = c.w.Write(buf)
	c.s.countRequest(c.routeKey(), c.kind, http.StatusOK)
}

// listWithTotal is a list answer that also carries "total", like task logs.
type listWithTotal struct {
	items any
	total int
}

func setCommonHeaders(h http.Header) {
	h.Set("Cache-Control", "max-age=0")
	h.Set("Pragma", "no-cache")
	h.Set("Server", "pve-api-daemon/3.0")
	h.Set("Expires", "Thu, 01 Jan 1970 00:00:00 GMT")
}

// writeError writes an error answer as PVE does: the message on the status
// line and in the JSON body (unless LegacyErrors), per-parameter errors in
// "errors".
//
// errNoAnswer closes the connection instead: nothing is written.
func (c *call) writeError(e *apiError) {
	if e == errNoAnswer {
		c.status = 0
		c.s.countRequest(c.routeKey(), c.kind, 0)
		panic(http.ErrAbortHandler)
	}
	c.status = e.status
	setStatusReason(c.r, e.status, e.reason())
	h := c.w.Header()
	setCommonHeaders(h)
	var buf []byte
	switch {
	case e.emptyBody:
	case e.nonJSON:
		h.Set("Content-Type", "text/plain;charset=UTF-8")
		buf = []byte(e.message + "\n")
	default:
		body := map[string]any{"data": nil}
		if !c.s.opts.LegacyErrors {
			body["message"] = e.message + "\n"
		}
		if len(e.errors) > 0 {
			body["errors"] = e.errors
		}
		buf, _ = json.Marshal(body)
		h.Set("Content-Type", "application/json;charset=UTF-8")
	}
	h.Set("Content-Length", strconv.Itoa(len(buf)))
	c.w.WriteHeader(e.status)
	if len(buf) > 0 {
		_, _ = c.w.Write(buf)
	}
	c.s.countRequest(c.routeKey(), c.kind, e.status)
}
