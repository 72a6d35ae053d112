package pve

import (
	"errors"
	"fmt"
	"testing"
)

func TestErrLocked(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"api", &APIError{Status: 500, Message: "VM is locked (clone)"}, true},
		{"task", &TaskError{ExitStatus: "VM is locked (backup)"}, true},
		{"wrapped", fmt.Errorf("destroy pve/101: giving up after 10 attempts: %w", &TaskError{ExitStatus: "VM is locked (clone)"}), true},
		{"flock timeout is not a config lock", &APIError{Status: 500, Message: "can't lock file '/var/lock/qemu-server/lock-101.conf' - got timeout"}, false},
		{"other", &APIError{Status: 500, Message: "VM 101 is running - destroy failed"}, false},
		{"nil", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := errors.Is(tt.err, ErrLocked); got != tt.want {
				t.Errorf("errors.Is(%v, ErrLocked) = %v; want %v", tt.err, got, tt.want)
			}
		})
	}
}
