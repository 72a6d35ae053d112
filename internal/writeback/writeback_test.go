package writeback

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// TestFile writes through File in writes of several sizes and checks the
// bytes on disk and how far the writeback got.
func TestFile(t *testing.T) {
	data := make([]byte, 3*Window+12345)
	for i := range data {
		data[i] = byte(i * 7)
	}
	tests := []struct {
		name  string
		chunk int
	}{
		{"1 MiB writes", 1 << 20},
		{"odd writes", 100_003},
		{"one write", len(data)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "f")
			f, err := os.Create(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			w := New(f)
			for off := 0; off < len(data); off += tt.chunk {
				p := data[off:min(off+tt.chunk, len(data))]
				if n, err := w.Write(p); n != len(p) || err != nil {
					t.Fatalf("Write(%d bytes) = %d, %v; want %d, nil", len(p), n, err, len(p))
				}
			}
			if err := w.Sync(); err != nil {
				t.Fatalf("Sync() = %v", err)
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, data) {
				t.Fatalf("file differs from what was written (%d bytes; want %d)", len(got), len(data))
			}
			if w.off != int64(len(data)) {
				t.Errorf("off = %d; want %d", w.off, len(data))
			}
			if runtime.GOOS != "linux" {
				return
			}
			// Past each window's end the writeback of that window starts
			// and the one before it is waited for: at the end less than a
			// window has not been started, and one window (up to the write
			// that crossed its end) is started but not waited for.
			if tt.chunk < Window {
				if w.off-w.started >= Window || w.started-w.waited <= 0 || w.started-w.waited >= int64(Window+tt.chunk) {
					t.Errorf("written %d, writeback started up to %d, waited up to %d; want less than a window between each",
						w.off, w.started, w.waited)
				}
			}
		})
	}
}

// TestFileUnsupported writes to a pipe, where sync_file_range fails with
// ESPIPE: File stops hinting and the writes go on.
func TestFileUnsupported(t *testing.T) {
	r, wp, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer wp.Close()
	done := make(chan int64)
	go func() {
		var n int64
		buf := make([]byte, 1<<20)
		for {
			k, err := r.Read(buf)
			n += int64(k)
			if err != nil {
				done <- n
				return
			}
		}
	}()
	w := New(wp)
	chunk := make([]byte, 1<<20)
	total := 2*Window + 1
	for written := 0; written < total; written += len(chunk) {
		p := chunk[:min(len(chunk), total-written)]
		if _, err := w.Write(p); err != nil {
			t.Fatalf("Write = %v; want nil (the hints are advice)", err)
		}
	}
	wp.Close()
	if n := <-done; n != int64(total) {
		t.Errorf("the pipe carried %d bytes; want %d", n, total)
	}
	if !w.noHinting {
		t.Errorf("the hints are still on after sync_file_range failed on a pipe")
	}
}

// TestHintFailed keeps a real writeback error and drops an unsupported one.
func TestHintFailed(t *testing.T) {
	eio := errors.New("input/output error")
	tests := []struct {
		err       error
		want      error
		noHinting bool
	}{
		{errors.ErrUnsupported, nil, true},
		{eio, eio, false},
	}
	for _, tt := range tests {
		w := &File{}
		if got := w.hintFailed(tt.err); !errors.Is(got, tt.want) || (tt.want == nil) != (got == nil) {
			t.Errorf("hintFailed(%v) = %v; want %v", tt.err, got, tt.want)
		}
		if w.noHinting != tt.noHinting {
			t.Errorf("hintFailed(%v): noHinting = %v; want %v", tt.err, w.noHinting, tt.noHinting)
		}
	}
}
