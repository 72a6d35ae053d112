// Package writeback writes large files the way a stream should reach a
// disk: written back while they are still being written, and out of the
// page cache once on disk. The reaper writes artifact uploads through it,
// and tools/uploadbench its baseline, so both write a disk the same way.
package writeback

import (
	"errors"
	"os"
)

// Window is how many bytes are written before the kernel is asked to start
// writing them to disk.
const Window = 8 << 20

// File writes to an *os.File and keeps the disk busy while the data is
// still arriving: after every Window bytes it starts the writeback of that
// window, waits for the one before it and drops that one from the page
// cache.
//
// Without it a large file sits dirty in the page cache until the final
// fsync, which then writes all of it while the writer waits: a stream takes
// its transfer time plus its flush time, instead of the longer of the two.
// With it, the page cache a file occupies stays at about two windows
// whatever its size, so one large file neither fills the host's dirty page
// budget (which the VMs' disks share on a Proxmox host) nor evicts other
// cached data, and the pages it frees are those its next windows reuse. It
// suits files written once and read rarely, later: artifacts.
//
// On file systems that keep file data outside the page cache (ZFS) the
// hints do nothing; where they fail as not supported, File stops giving
// them. Either way Sync (fsync) is still what makes the file durable.
type File struct {
	f         *os.File
	off       int64 // bytes written
	started   int64 // writeback started for [0, started)
	waited    int64 // written back and dropped: [0, waited)
	noHinting bool  // the hints are not supported here
}

// New returns a File writing to f at its current offset, which must be 0.
func New(f *os.File) *File { return &File{f: f} }

// Write writes p to the file and, past a window's end, moves the writeback
// along. An error of the writeback (the disk failed) is returned as a write
// error: once reported to one call, the kernel does not report it again at
// fsync.
func (w *File) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	w.off += int64(n)
	if err != nil || w.noHinting || w.off-w.started < Window {
		return n, err
	}
	if err := startWriteback(w.f, w.started, w.off-w.started); err != nil {
		return n, w.hintFailed(err)
	}
	if w.started > w.waited {
		if err := waitWriteback(w.f, w.waited, w.started-w.waited); err != nil {
			return n, w.hintFailed(err)
		}
		dropCache(w.f, w.waited, w.started-w.waited)
		w.waited = w.started
	}
	w.started = w.off
	return n, nil
}

// Sync commits the file to disk (fsync).
func (w *File) Sync() error { return w.f.Sync() }

// hintFailed stops the hints when the file system does not support them,
// and returns any other error.
func (w *File) hintFailed(err error) error {
	if errors.Is(err, errors.ErrUnsupported) {
		w.noHinting = true
		return nil
	}
	return err
}
