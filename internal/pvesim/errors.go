package pvesim

import (
	"fmt"
	"strings"
)

// apiError is an answer with an HTTP error status, as PVE raises them.
type apiError struct {
	status  int
	message string            // without trailing newline
	errors  map[string]string // per-parameter errors (400)
	// nonJSON answers come from PVE's proxy layer (59x): the body is the
	// plain message, not JSON. emptyBody answers (401) have no body at all.
	nonJSON   bool
	emptyBody bool
}

func (e *apiError) Error() string { return e.message }

// errorf returns an error with HTTP status code status.
func errorf(status int, format string, args ...any) *apiError {
	return &apiError{status: status, message: strings.TrimRight(fmt.Sprintf(format, args...), "\n")}
}

// fail is a 500 error, the status PVE gives to most failures raised with die.
func fail(format string, args ...any) *apiError { return errorf(500, format, args...) }

// paramError is PVE's 400 "Parameter verification failed." with an errors object.
func paramError(errs map[string]string) *apiError {
	return &apiError{status: 400, message: "Parameter verification failed.", errors: errs}
}

// paramErr1 is a paramError for one parameter.
func paramErr1(name, msg string) *apiError { return paramError(map[string]string{name: msg}) }

// reason returns the reason phrase for the status line: PVE puts the message
// there, on one line.
func (e *apiError) reason() string {
	msg := strings.NewReplacer("\r", " ", "\n", " ").Replace(e.message)
	return strings.TrimSpace(msg)
}
