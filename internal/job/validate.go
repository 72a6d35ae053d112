package job

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
	"unicode/utf8"
)

// ErrInvalid is bad input: a request, an artifact name or a glob. Errors
// wrapping it are *FieldError when a field is at fault.
var ErrInvalid = errors.New("invalid job input")

// FieldError names the field at fault and says what to do.
type FieldError struct {
	// Field is the JSON name of the field, e.g. "timeout" or "env.FOO".
	Field string
	// Problem says what is wrong and how to fix it.
	Problem string
}

// Error implements error.
func (e *FieldError) Error() string { return e.Field + ": " + e.Problem }

// Unwrap makes errors.Is(err, ErrInvalid) true.
func (e *FieldError) Unwrap() error { return ErrInvalid }

func fieldErr(field, format string, args ...any) error {
	return &FieldError{Field: field, Problem: fmt.Sprintf(format, args...)}
}

// Limits on a registration.
const (
	maxTextBytes  = 4096
	maxTaskBytes  = 64 << 10
	maxEnvEntries = 128
	maxEnvValue   = 32 << 10
	maxGlobs      = 64
)

// Normalize checks r and returns it with defaults filled in (the timeout) and
// its timeout parsed. Every error is a *FieldError.
func (r RegisterRequest) Normalize() (RegisterRequest, time.Duration, error) {
	if strings.TrimSpace(r.Repo) == "" {
		return r, 0, fieldErr("repo", "required: the URL of the git repository to clone")
	}
	if err := plainText("repo", r.Repo, maxTextBytes); err != nil {
		return r, 0, err
	}
	if strings.HasPrefix(r.Repo, "-") {
		return r, 0, fieldErr("repo", "must not start with '-'")
	}
	if r.Ref == "" {
		return r, 0, fieldErr("ref", "required: a branch, tag or commit")
	}
	if err := plainText("ref", r.Ref, 256); err != nil {
		return r, 0, err
	}
	if strings.HasPrefix(r.Ref, "-") || strings.ContainsAny(r.Ref, " \t~^:?*[\\") || strings.Contains(r.Ref, "..") {
		return r, 0, fieldErr("ref", "%q is not a git branch, tag or commit name", r.Ref)
	}
	if strings.TrimSpace(r.Task) == "" {
		return r, 0, fieldErr("task", "required: the shell command to run in the checkout")
	}
	if len(r.Task) > maxTaskBytes || !utf8.ValidString(r.Task) || strings.ContainsRune(r.Task, 0) {
		return r, 0, fieldErr("task", "must be UTF-8 text without NUL bytes, at most %d bytes", maxTaskBytes)
	}
	timeout := DefaultTimeout
	if r.Timeout != "" {
		d, err := time.ParseDuration(r.Timeout)
		if err != nil || d <= 0 || d > MaxTimeout {
			return r, 0, fieldErr("timeout", "%q must be a positive Go duration up to %s, such as 30m or 2h", r.Timeout, MaxTimeout)
		}
		timeout = d
	}
	r.Timeout = timeout.String()
	if len(r.Artifacts) > maxGlobs {
		return r, 0, fieldErr("artifacts", "at most %d globs", maxGlobs)
	}
	for i, g := range r.Artifacts {
		if err := CheckGlob(g); err != nil {
			return r, 0, fieldErr(fmt.Sprintf("artifacts[%d]", i), "%v", err)
		}
	}
	if len(r.Env) > maxEnvEntries {
		return r, 0, fieldErr("env", "at most %d variables", maxEnvEntries)
	}
	for _, k := range sortedKeys(r.Env) {
		if !envName(k) {
			return r, 0, fieldErr("env."+k, "not a valid variable name: use letters, digits and _, not starting with a digit")
		}
		if strings.HasPrefix(k, "AGENTLAB_") {
			return r, 0, fieldErr("env."+k, "names starting with AGENTLAB_ are reserved for the runner")
		}
		v := r.Env[k]
		if len(v) > maxEnvValue || !utf8.ValidString(v) || strings.ContainsRune(v, 0) {
			return r, 0, fieldErr("env."+k, "value must be UTF-8 text without NUL bytes, at most %d bytes", maxEnvValue)
		}
	}
	if err := plainText("owner", r.Owner, 256); err != nil {
		return r, 0, err
	}
	return r, timeout, nil
}

// plainText refuses control characters and invalid UTF-8.
func plainText(field, s string, max int) error {
	if len(s) > max {
		return fieldErr(field, "longer than %d bytes", max)
	}
	if !utf8.ValidString(s) {
		return fieldErr(field, "not valid UTF-8")
	}
	for _, c := range s {
		if c < 0x20 || c == 0x7f {
			return fieldErr(field, "contains a control character (%U)", c)
		}
	}
	return nil
}

func envName(k string) bool {
	if k == "" {
		return false
	}
	for i, c := range k {
		switch {
		case c == '_', c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z':
		case c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// SortedKeys returns the keys of env, sorted.
func sortedKeys(env map[string]string) []string {
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// EnvKeys returns the names of env's variables, sorted.
func EnvKeys(env map[string]string) []string { return sortedKeys(env) }
