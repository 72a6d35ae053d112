package writeback

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// startWriteback asks the kernel to start writing the dirty pages of f in
// [off, off+n) to disk, without waiting for it.
func startWriteback(f *os.File, off, n int64) error {
	return syncFileRange(f, off, n, unix.SYNC_FILE_RANGE_WRITE)
}

// waitWriteback writes the dirty pages of f in [off, off+n) to disk and
// waits until they are there (the data, not the metadata: fsync still makes
// the file durable).
func waitWriteback(f *os.File, off, n int64) error {
	return syncFileRange(f, off, n,
		unix.SYNC_FILE_RANGE_WAIT_BEFORE|unix.SYNC_FILE_RANGE_WRITE|unix.SYNC_FILE_RANGE_WAIT_AFTER)
}

// dropCache tells the kernel the pages of f in [off, off+n), on disk now,
// will not be needed again soon. It is advice: an error changes nothing.
func dropCache(f *os.File, off, n int64) {
	if rc, err := f.SyscallConn(); err == nil {
		_ = rc.Control(func(fd uintptr) { _ = unix.Fadvise(int(fd), off, n, unix.FADV_DONTNEED) })
	}
}

// syncFileRange is sync_file_range(2) on f; errors that mean the file
// does not support it wrap errors.ErrUnsupported.
func syncFileRange(f *os.File, off, n int64, flags int) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return fmt.Errorf("sync_file_range: %w: %w", errors.ErrUnsupported, err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		for {
			if serr = unix.SyncFileRange(int(fd), off, n, flags); serr != unix.EINTR {
				return
			}
		}
	}); err != nil {
		return fmt.Errorf("sync_file_range: %w: %w", errors.ErrUnsupported, err)
	}
	switch serr {
	case nil:
		return nil
	case unix.ENOSYS, unix.EINVAL, unix.ESPIPE, unix.EOPNOTSUPP:
		return fmt.Errorf("sync_file_range: %w: %w", errors.ErrUnsupported, serr)
	default:
		return fmt.Errorf("writeback of bytes %d to %d: %w", off, off+n, serr)
	}
}
