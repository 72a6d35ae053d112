package pvesim

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
)

const (
	ticketLifetime = 2 * time.Hour
	cookieName     = "PVEAuthCookie"
	apiTokenName   = "PVEAPIToken"
)

var (
	userIDRE    = regexp.MustCompile(`^[^\s:/@!]+@[A-Za-z][A-Za-z0-9.\-_]+$`)
	tokenIDRE   = regexp.MustCompile(`^[^\s:/@!]+@[A-Za-z][A-Za-z0-9.\-_]+![A-Za-z][A-Za-z0-9.\-_]+$`)
	nodeNameRE  = regexp.MustCompile(`^[a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?$`)
	dnsNameRE   = regexp.MustCompile(`^(?:[a-zA-Z0-9](?:[a-zA-Z0-9\-]*[a-zA-Z0-9])?\.)*[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?$`)
	authValueRE = map[string]*regexp.Regexp{
		cookieName:   regexp.MustCompile(`(?:^|\s)` + cookieName + `(?:=| )([^;]*)`),
		apiTokenName: regexp.MustCompile(`(?:^|\s)` + apiTokenName + `(?:=| )([^;]*)`),
	}
)

// extractAuthValue finds "KEY=value" (or "KEY value") in a header like PVE's
// extract_auth_value, URI-unescaped.
func extractAuthValue(header, key string) string {
	if header == "" {
		return ""
	}
	m := authValueRE[key].FindStringSubmatch(header)
	if m == nil {
		return ""
	}
	return uriUnescape(m[1])
}

// uriUnescape decodes %XX escapes only ('+' stays), like URI::Escape.
func uriUnescape(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
			n, _ := strconv.ParseUint(s[i+1:i+3], 16, 8)
			b.WriteByte(byte(n))
			i += 2
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// authFailure is an unauthenticated answer: 401, reason on the status line, no body.
func authFailure(msg string) *apiError {
	return &apiError{status: http.StatusUnauthorized, message: msg, emptyBody: true}
}

// authenticate reads the credentials in PVE's order: ticket cookie, ticket in
// Authorization, API token in Authorization. Non-GET calls with a ticket need
// a valid CSRFPreventionToken header (uploads excepted).
func (c *call) authenticate() *apiError {
	r := c.r
	ticket := extractAuthValue(strings.Join(r.Header.Values("Cookie"), "; "), cookieName)
	authz := r.Header.Get("Authorization")
	if ticket == "" {
		ticket = extractAuthValue(authz, cookieName)
	}
	if ticket == "" {
		if tok := extractAuthValue(authz, apiTokenName); tok != "" {
			user, ok := c.s.verifyToken(tok)
			if !ok {
				return authFailure("Authentication failed!")
			}
			c.user = user
			return nil
		}
		return authFailure("No ticket")
	}
	user, ok := c.s.verifyTicket(ticket)
	if !ok {
		return authFailure("Authentication failed!")
	}
	c.user = user
	upload := c.route != nil && c.route.Upload
	if r.Method != http.MethodGet && r.Method != http.MethodHead && !upload {
		if !c.s.verifyCSRF(user, r.Header.Get("CSRFPreventionToken")) {
			return authFailure("Permission denied - invalid csrf token")
		}
	}
	return nil
}

// verifyToken checks "USER@REALM!TOKENID=SECRET" and returns the token id.
func (s *Server) verifyToken(v string) (string, bool) {
	id, secret, ok := strings.Cut(v, "=")
	if !ok {
		return "", false
	}
	want, ok := s.tokens[id]
	if !ok || subtle.ConstantTimeCompare([]byte(want), []byte(secret)) != 1 {
		return "", false
	}
	return id, true
}

func (s *Server) sign(data string) string {
	m := hmac.New(sha256.New, s.authKey)
	m.Write([]byte(data))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// newTicket returns a ticket "PVE:user@realm:HEX8::signature".
func (s *Server) newTicket(user string) string {
	plain := fmt.Sprintf("PVE:%s:%08X", user, s.clock.Now().Unix())
	return plain + "::" + s.sign(plain)
}

func (s *Server) verifyTicket(t string) (string, bool) {
	plain, sig, ok := strings.Cut(t, "::")
	if !ok || !hmac.Equal([]byte(sig), []byte(s.sign(plain))) {
		return "", false
	}
	parts := strings.Split(plain, ":")
	if len(parts) != 3 || parts[0] != "PVE" {
		return "", false
	}
	if !s.ageOK(parts[2]) {
		return "", false
	}
	if _, ok := s.users[parts[1]]; !ok {
		return "", false
	}
	return parts[1], true
}

func (s *Server) ageOK(hexTime string) bool {
	ts, err := strconv.ParseInt(hexTime, 16, 64)
	if err != nil {
		return false
	}
	age := s.clock.Now().Sub(time.Unix(ts, 0))
	return age >= -5*time.Minute && age <= ticketLifetime
}

// newCSRF returns a CSRF prevention token "HEX8:signature" for user.
func (s *Server) newCSRF(user string) string {
	ts := fmt.Sprintf("%08X", s.clock.Now().Unix())
	return ts + ":" + strings.TrimRight(s.sign(ts+":"+user), "=")
}

func (s *Server) verifyCSRF(user, tok string) bool {
	ts, sig, ok := strings.Cut(tok, ":")
	if !ok || !s.ageOK(ts) {
		return false
	}
	return hmac.Equal([]byte(sig), []byte(strings.TrimRight(s.sign(ts+":"+user), "=")))
}

// handleTicket is POST /access/ticket: username/password login. Tokens cannot log in.
func handleTicket(c *call) (any, error) {
	user, pw := c.str("username"), c.str("password")
	if realm := c.str("realm"); realm != "" && !strings.Contains(user, "@") {
		user += "@" + realm
	}
	want, ok := c.s.users[user]
	if !ok || subtle.ConstantTimeCompare([]byte(want), []byte(pw)) != 1 {
		return nil, errorf(http.StatusUnauthorized, "authentication failure")
	}
	return map[string]any{
		"username":            user,
		"ticket":              c.s.newTicket(user),
		"CSRFPreventionToken": c.s.newCSRF(user),
		"cap": map[string]any{
			"vms":     map[string]int{"VM.Allocate": 1, "VM.Audit": 1, "VM.Clone": 1, "VM.Config.Disk": 1, "VM.Config.Options": 1, "VM.PowerMgmt": 1},
			"storage": map[string]int{"Datastore.Allocate": 1, "Datastore.AllocateSpace": 1, "Datastore.AllocateTemplate": 1, "Datastore.Audit": 1},
			"nodes":   map[string]int{"Sys.Audit": 1, "Sys.Modify": 1},
			"access":  map[string]int{"User.Modify": 1},
			"dc":      map[string]int{"Sys.Audit": 1},
			"sdn":     map[string]int{"SDN.Use": 1},
			"mapping": map[string]int{"Mapping.Use": 1},
		},
	}, nil
}

// isRoot reports whether the caller is root@pam itself (not a token), which
// PVE requires for skiplock.
func (c *call) isRoot() bool { return c.user == "root@pam" }
