package sqlite

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestLockIsExclusiveAndReleased(t *testing.T) {
	db := filepath.Join(t.TempDir(), "reaper.db")
	first, err := AcquireLock(db)
	if err != nil {
		t.Fatalf("first AcquireLock = %v; want nil", err)
	}
	_, err = AcquireLock(db)
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second AcquireLock = %v; want ErrLocked", err)
	}
	for _, want := range []string{"process " + strconv.Itoa(os.Getpid()), LockPath(db), "stop that reaper first"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("second AcquireLock error %q lacks %q", err, want)
		}
	}
	if err := first.Release(); err != nil {
		t.Fatalf("Release = %v", err)
	}
	again, err := AcquireLock(db)
	if err != nil {
		t.Fatalf("AcquireLock after Release = %v; want nil", err)
	}
	again.Release()
}
