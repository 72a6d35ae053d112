package pve

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"sort"
	"strings"
	"syscall"
)

// Sentinel errors. Test for them with errors.Is; the errors the package
// returns carry more detail (status, PVE's message, the endpoint).
var (
	// ErrUnauthorized: PVE rejected the credentials (HTTP 401).
	ErrUnauthorized = errors.New("proxmox ve rejected the api token")
	// ErrForbidden: the token lacks a privilege (HTTP 403).
	ErrForbidden = errors.New("permission denied")
	// ErrNotFound: the guest (or volume) does not exist. See IsNotFound.
	ErrNotFound = errors.New("not found")
	// ErrUntrustedCertificate: the server's TLS certificate is not trusted.
	ErrUntrustedCertificate = errors.New("tls certificate not trusted")
	// ErrUnreachable: no connection to the endpoint could be made.
	ErrUnreachable = errors.New("proxmox ve endpoint unreachable")
	// ErrNotProxmox: the endpoint answered, but not like a PVE API.
	ErrNotProxmox = errors.New("endpoint is not a proxmox ve api")
	// ErrVMIDInUse: the requested VMID already exists.
	ErrVMIDInUse = errors.New("vmid already in use")
	// ErrNoFreeVMID: no free VMID is left in the configured range.
	ErrNoFreeVMID = errors.New("no free vmid")
	// ErrShrink: a resize asked for a size smaller than the disk.
	ErrShrink = errors.New("shrinking disks is not supported")
	// ErrInvalidConfig: the Config given to New is invalid.
	ErrInvalidConfig = errors.New("invalid proxmox ve client configuration")
	// ErrLocked: the guest's config carries a lock ("VM is locked (clone)"),
	// left by a running or an interrupted operation. An API token cannot
	// override it (skiplock is root-only); a running operation clears it,
	// an interrupted one needs `qm unlock VMID` on the node.
	ErrLocked = errors.New("vm is locked")
)

// APIError is an error answer from the PVE API.
type APIError struct {
	Method string // HTTP method of the request
	Path   string // API path of the request, without the /api2/json prefix
	// Status is the HTTP status code (e.g. 500, or 596 from the proxy layer).
	Status int
	// Message is PVE's message: the body's "message" when present, else the
	// reason phrase of the status line (where PVE always puts it).
	Message string
	// Errors holds per-parameter errors (400 "Parameter verification failed.").
	Errors map[string]string
}

// Error implements error.
func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "pve %s %s: %d %s", e.Method, e.Path, e.Status, e.Message)
	if len(e.Errors) > 0 {
		keys := make([]string, 0, len(e.Errors))
		for k := range e.Errors {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b.WriteString(" (")
		for i, k := range keys {
			if i > 0 {
				b.WriteString("; ")
			}
			fmt.Fprintf(&b, "%s: %s", k, e.Errors[k])
		}
		b.WriteString(")")
	}
	return b.String()
}

// Is makes errors.Is(err, ErrUnauthorized), ErrForbidden, ErrNotFound,
// ErrVMIDInUse, ErrShrink and ErrLocked work on API errors.
func (e *APIError) Is(target error) bool {
	switch target {
	case ErrUnauthorized:
		return e.Status == 401
	case ErrForbidden:
		return e.Status == 403
	case ErrNotFound:
		return notFoundText(e.Message)
	case ErrVMIDInUse:
		return alreadyExists(e)
	case ErrShrink:
		return strings.Contains(e.Message, "shrinking disks is not supported")
	case ErrLocked:
		return lockedText(e.text())
	}
	return false
}

// text returns the message and the per-parameter errors as one string, for
// matching.
func (e *APIError) text() string {
	if len(e.Errors) == 0 {
		return e.Message
	}
	var b strings.Builder
	b.WriteString(e.Message)
	for _, v := range e.Errors {
		b.WriteString("\n")
		b.WriteString(v)
	}
	return b.String()
}

// TaskError is a PVE task that ended with an error exit status.
type TaskError struct {
	UPID       string
	Node       string
	Type       string // e.g. qmclone, qmstart
	ID         string // the task's object id, e.g. the VMID
	ExitStatus string // PVE's exit status, the error text
}

// Error implements error.
func (e *TaskError) Error() string {
	return fmt.Sprintf("pve task %s %s on %s failed: %s", e.Type, e.ID, e.Node, e.ExitStatus)
}

// Is makes errors.Is(err, ErrNotFound), ErrVMIDInUse, ErrShrink and
// ErrLocked work on task errors.
func (e *TaskError) Is(target error) bool {
	switch target {
	case ErrNotFound:
		return notFoundText(e.ExitStatus)
	case ErrVMIDInUse:
		return alreadyExistsText(e.ExitStatus)
	case ErrShrink:
		return strings.Contains(e.ExitStatus, "shrinking disks is not supported")
	case ErrLocked:
		return lockedText(e.ExitStatus)
	}
	return false
}

// TLSError is a TLS handshake failure, typically an untrusted certificate.
type TLSError struct {
	Endpoint string
	Err      error
}

// Error implements error.
func (e *TLSError) Error() string {
	return fmt.Sprintf("tls certificate of %s is not trusted (%v): set insecure = true or provide a trusted certificate", e.Endpoint, e.Err)
}

// Unwrap returns ErrUntrustedCertificate and the underlying error.
func (e *TLSError) Unwrap() []error { return []error{ErrUntrustedCertificate, e.Err} }

// waitError is a task wait that failed for another reason than the task
// itself (context, repeated polling failures). Never retried by re-issuing
// the operation: the task may still be running.
type waitError struct {
	UPID string
	Err  error
}

func (e *waitError) Error() string { return fmt.Sprintf("waiting for task %s: %v", e.UPID, e.Err) }
func (e *waitError) Unwrap() error { return e.Err }

// noRetryError marks an error that must not be retried even if its cause
// is transient (e.g. the request may have been carried out).
type noRetryError struct{ Err error }

func (e *noRetryError) Error() string { return e.Err.Error() }
func (e *noRetryError) Unwrap() error { return e.Err }

// attemptTimeoutError is one request attempt that hit the per-attempt
// timeout while the caller's context was still alive.
type attemptTimeoutError struct{ Err error }

func (e *attemptTimeoutError) Error() string { return "request attempt timed out: " + e.Err.Error() }
func (e *attemptTimeoutError) Unwrap() error { return e.Err }

// IsNotFound reports whether err says that the guest (or storage volume) an
// operation addressed does not exist, e.g. because it was deleted outside
// Terraform. A missing disk inside an existing VM's config is not "not found".
func IsNotFound(err error) bool { return errors.Is(err, ErrNotFound) }

var (
	reConfigMissing = regexp.MustCompile(`(?i)configuration file '[^']*' does not exist`)
	reVolumeMissing = regexp.MustCompile(`(?i)(volume '?[^ ']+'? does not exist|no such volume)`)
	reNoSuchVM      = regexp.MustCompile(`(?i)no such vm\b|vm \d+ does not exist`)
)

func notFoundText(s string) bool {
	return reConfigMissing.MatchString(s) || reVolumeMissing.MatchString(s) || reNoSuchVM.MatchString(s)
}

// alreadyExistsText matches PVE's texts for a VMID that is taken:
// "unable to create VM 101: config file already exists",
// "VM 101 already exists on node 'pve'", "VM 101 already exists".
func alreadyExistsText(s string) bool {
	s = strings.ToLower(s)
	return strings.Contains(s, "config file already exists") ||
		(strings.Contains(s, "vm ") && strings.Contains(s, "already exists"))
}

// lockedText matches qemu-server's refusal of a locked guest, "VM is locked
// (clone)"; not a config-file flock timeout ("can't lock file").
func lockedText(s string) bool {
	return strings.Contains(strings.ToLower(s), "vm is locked")
}

func alreadyExists(err error) bool {
	var ae *APIError
	if errors.As(err, &ae) {
		return alreadyExistsText(ae.text())
	}
	var te *TaskError
	if errors.As(err, &te) {
		return alreadyExistsText(te.ExitStatus)
	}
	return false
}

// transientText matches PVE's texts for conditions that pass by themselves:
// lock contention ("can't lock file ... got timeout", "VM is locked (clone)",
// cfs-lock "got lock request timeout"), a cluster without quorum for a
// moment, and proxy-level connection trouble.
func transientText(s string) bool {
	s = strings.ToLower(s)
	for _, m := range []string{
		"can't lock file", "got timeout", "vm is locked", "got lock request timeout",
		"no quorum", "connection timed out", "broken pipe", "temporarily unavailable",
	} {
		if strings.Contains(s, m) {
			return true
		}
	}
	return false
}

// IsTransient reports whether err is worth retrying: lock contention and
// timeouts reported by PVE (5xx "can't lock file", "got timeout",
// "VM is locked"), proxy and gateway errors (502, 503, 504, 596, 599), and
// connection failures (refused, reset, closed, timed out). Parameter errors,
// authentication and permission failures, "does not exist" and 501 are
// permanent. A cancelled or expired context is never transient.
func IsTransient(err error) bool {
	if err == nil {
		return false
	}
	var we *waitError
	var nr *noRetryError
	if errors.As(err, &we) || errors.As(err, &nr) {
		return false
	}
	var at *attemptTimeoutError
	if errors.As(err, &at) {
		return true
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var tlsErr *TLSError
	if errors.As(err, &tlsErr) {
		return false
	}
	var ae *APIError
	if errors.As(err, &ae) {
		switch ae.Status {
		case 502, 503, 504, 596, 599:
			return true
		case 400, 401, 403, 404, 501:
			return false
		}
		return ae.Status >= 500 && transientText(ae.text())
	}
	var te *TaskError
	if errors.As(err, &te) {
		return transientText(te.ExitStatus)
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, syscall.ETIMEDOUT) || errors.Is(err, syscall.EHOSTUNREACH) ||
		errors.Is(err, syscall.ENETUNREACH) {
		return true
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return dnsErr.IsTemporary || dnsErr.IsTimeout
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	var oe *net.OpError
	return errors.As(err, &oe)
}

// maybeProcessed reports whether a failed request may nevertheless have been
// carried out by PVE (the answer was lost on the way back). Only a refused
// connection or an answer from PVE's own API daemon (status 500 and below)
// prove that nothing happened.
func maybeProcessed(err error) bool {
	var ae *APIError
	if errors.As(err, &ae) {
		switch ae.Status {
		case 502, 504, 596, 599:
			return true
		}
		return false
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		return false
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return false
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "dial" {
		return false
	}
	return true
}
