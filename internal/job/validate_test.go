package job

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"
)

func TestNormalize(t *testing.T) {
	ok := RegisterRequest{Repo: "https://example.com/r.git", Ref: "main", Task: "make test"}
	r, d, err := ok.Normalize()
	if err != nil || d != DefaultTimeout || r.Timeout != "30m0s" {
		t.Fatalf("Normalize(minimal) = %v, %v, %v; want default timeout", r.Timeout, d, err)
	}
	tests := []struct {
		mod   func(*RegisterRequest)
		field string
	}{
		{func(r *RegisterRequest) { r.Repo = "" }, "repo"},
		{func(r *RegisterRequest) { r.Repo = "--upload-pack=x" }, "repo"},
		{func(r *RegisterRequest) { r.Repo = "a\nb" }, "repo"},
		{func(r *RegisterRequest) { r.Ref = "" }, "ref"},
		{func(r *RegisterRequest) { r.Ref = "-b" }, "ref"},
		{func(r *RegisterRequest) { r.Ref = "a..b" }, "ref"},
		{func(r *RegisterRequest) { r.Task = " " }, "task"},
		{func(r *RegisterRequest) { r.Timeout = "soon" }, "timeout"},
		{func(r *RegisterRequest) { r.Timeout = "-1m" }, "timeout"},
		{func(r *RegisterRequest) { r.Timeout = "9999h" }, "timeout"},
		{func(r *RegisterRequest) { r.Artifacts = []string{"ok/*", "/abs"} }, "artifacts[1]"},
		{func(r *RegisterRequest) { r.Env = map[string]string{"1X": "v"} }, "env.1X"},
		{func(r *RegisterRequest) { r.Env = map[string]string{"AGENTLAB_TOKEN": "v"} }, "env.AGENTLAB_TOKEN"},
		{func(r *RegisterRequest) { r.Env = map[string]string{"OK": "a\x00"} }, "env.OK"},
	}
	for _, tt := range tests {
		req := ok
		tt.mod(&req)
		_, _, err := req.Normalize()
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != tt.field || !errors.Is(err, ErrInvalid) {
			t.Errorf("Normalize(%+v) = %v; want a FieldError on %s", req, err, tt.field)
		}
	}
	// Every field at fault is named at once, in the fields' order.
	bad := ok
	bad.Repo, bad.Timeout, bad.Artifacts = "", "5 minutes", []string{"../x", "ok/*", "/abs"}
	bad.Env = map[string]string{"1BAD": "x", "AGENTLAB_X": "y", "OK": "z"}
	_, _, err = bad.Normalize()
	var fields []string
	for _, fe := range FieldErrors(fmt.Errorf("register: %w", err)) {
		fields = append(fields, fe.Field)
	}
	if want := []string{"repo", "timeout", "artifacts[0]", "artifacts[2]", "env.1BAD", "env.AGENTLAB_X"}; !slices.Equal(fields, want) || !errors.Is(err, ErrInvalid) {
		t.Errorf("Normalize(several bad fields): field errors on %v (%v); want %v", fields, err, want)
	}
	full := ok
	full.Timeout, full.Env, full.Artifacts = "90s", map[string]string{"B": "2", "A": "1"}, []string{"out/**"}
	r, d, err = full.Normalize()
	if err != nil || d != 90*time.Second || r.Timeout != "1m30s" {
		t.Fatalf("Normalize(full) = %v, %v; want 1m30s", d, err)
	}
	if keys := EnvKeys(r.Env); len(keys) != 2 || keys[0] != "A" {
		t.Errorf("EnvKeys = %v; want [A B]", keys)
	}
}
