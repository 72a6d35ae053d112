//go:build !linux

package writeback

import (
	"errors"
	"os"
)

// startWriteback is Linux's sync_file_range; elsewhere Sync does all the
// writing.
func startWriteback(*os.File, int64, int64) error { return errors.ErrUnsupported }

// waitWriteback is Linux's sync_file_range; elsewhere Sync does all the
// writing.
func waitWriteback(*os.File, int64, int64) error { return errors.ErrUnsupported }

// dropCache is Linux's posix_fadvise; elsewhere it does nothing.
func dropCache(*os.File, int64, int64) {}
