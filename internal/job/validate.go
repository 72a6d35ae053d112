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
// its timeout parsed. The error holds a *FieldError for each field at fault
// (see FieldErrors), so one answer names every mistake.
func (r RegisterRequest) Normalize() (RegisterRequest, time.Duration, error) {
	timeout, terr := checkTimeout(r.Timeout)
	errs := []error{checkRepo(r.Repo), checkRef(r.Ref), checkTask(r.Task), terr}
	errs = append(errs, checkGlobs(r.Artifacts)...)
	errs = append(errs, checkEnv(r.Env)...)
	errs = append(errs, plainText("owner", r.Owner, 256))
	if err := errors.Join(errs...); err != nil {
		return r, 0, err
	}
	r.Timeout = timeout.String()
	return r, timeout, nil
}

// FieldErrors returns the field errors err holds, in order: one for a
// single field's problem, several for Normalize's joined answer.
func FieldErrors(err error) []*FieldError {
	if fe, ok := err.(*FieldError); ok {
		return []*FieldError{fe}
	}
	var out []*FieldError
	switch e := err.(type) {
	case interface{ Unwrap() []error }:
		for _, x := range e.Unwrap() {
			out = append(out, FieldErrors(x)...)
		}
	case interface{ Unwrap() error }:
		out = FieldErrors(e.Unwrap())
	}
	return out
}

func checkRepo(repo string) error {
	if strings.TrimSpace(repo) == "" {
		return fieldErr("repo", "required: the URL of the git repository to clone")
	}
	if err := plainText("repo", repo, maxTextBytes); err != nil {
		return err
	}
	if strings.HasPrefix(repo, "-") {
		return fieldErr("repo", "must not start with '-'")
	}
	return nil
}

func checkRef(ref string) error {
	if ref == "" {
		return fieldErr("ref", "required: a branch, tag or commit")
	}
	if err := plainText("ref", ref, 256); err != nil {
		return err
	}
	if strings.HasPrefix(ref, "-") || strings.ContainsAny(ref, " \t~^:?*[\\") || strings.Contains(ref, "..") {
		return fieldErr("ref", "%q is not a git branch, tag or commit name", ref)
	}
	return nil
}

func checkTask(task string) error {
	if strings.TrimSpace(task) == "" {
		return fieldErr("task", "required: the shell command to run in the checkout")
	}
	if len(task) > maxTaskBytes || !utf8.ValidString(task) || strings.ContainsRune(task, 0) {
		return fieldErr("task", "must be UTF-8 text without NUL bytes, at most %d bytes", maxTaskBytes)
	}
	return nil
}

// checkTimeout parses timeout; empty is DefaultTimeout.
func checkTimeout(timeout string) (time.Duration, error) {
	if timeout == "" {
		return DefaultTimeout, nil
	}
	d, err := time.ParseDuration(timeout)
	if err != nil || d <= 0 || d > MaxTimeout {
		return 0, fieldErr("timeout", "%q must be a positive Go duration up to %s, such as 30m or 2h", timeout, MaxTimeout)
	}
	return d, nil
}

// checkGlobs returns one error per bad glob.
func checkGlobs(globs []string) []error {
	if len(globs) > maxGlobs {
		return []error{fieldErr("artifacts", "at most %d globs", maxGlobs)}
	}
	var errs []error
	for i, g := range globs {
		if err := CheckGlob(g); err != nil {
			errs = append(errs, fieldErr(fmt.Sprintf("artifacts[%d]", i), "%v", err))
		}
	}
	return errs
}

// checkEnv returns one error per bad variable, in name order.
func checkEnv(env map[string]string) []error {
	if len(env) > maxEnvEntries {
		return []error{fieldErr("env", "at most %d variables", maxEnvEntries)}
	}
	var errs []error
	for _, k := range sortedKeys(env) {
		v := env[k]
		switch {
		case !envName(k):
			errs = append(errs, fieldErr("env."+k, "not a valid variable name: use letters, digits and _, not starting with a digit"))
		case strings.HasPrefix(k, "AGENTLAB_"):
			errs = append(errs, fieldErr("env."+k, "names starting with AGENTLAB_ are reserved for the runner"))
		case len(v) > maxEnvValue || !utf8.ValidString(v) || strings.ContainsRune(v, 0):
			errs = append(errs, fieldErr("env."+k, "value must be UTF-8 text without NUL bytes, at most %d bytes", maxEnvValue))
		}
	}
	return errs
}

// MaxCancelWhyBytes is the longest explanation a cancel may carry.
const MaxCancelWhyBytes = 256

// CancelledReason is the reason a job cancelled for why ends with:
// "cancelled", or "cancelled: why". A why that is not one line of plain
// text, at most MaxCancelWhyBytes long, is a *FieldError on "reason".
func CancelledReason(why string) (string, error) {
	if why == "" {
		return "cancelled", nil
	}
	if err := plainText("reason", why, MaxCancelWhyBytes); err != nil {
		return "", err
	}
	return "cancelled: " + why, nil
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
