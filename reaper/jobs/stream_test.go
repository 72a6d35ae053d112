package jobs

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func TestStream(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789abcdef"), copyBuffer/16*5+3) // 5 buffers and a bit
	tests := []struct {
		name    string
		src     io.Reader
		dst     io.Writer
		wantN   int64
		wantErr error
	}{
		{"whole", bytes.NewReader(data), &bytes.Buffer{}, int64(len(data)), nil},
		{"one byte at a time", iotest.OneByteReader(bytes.NewReader(data[:1000])), &bytes.Buffer{}, 1000, nil},
		{"empty", strings.NewReader(""), &bytes.Buffer{}, 0, nil},
		{"truncated", io.MultiReader(bytes.NewReader(data[:100]), iotest.ErrReader(io.ErrUnexpectedEOF)), &bytes.Buffer{}, 100, io.ErrUnexpectedEOF},
		{"disk full", bytes.NewReader(data), failWriter{}, -1, errDiskFull},
		{"disk full is the reaper's", bytes.NewReader(data), failWriter{}, -1, ErrStorage},
	}
	for _, tt := range tests {
		h := sha256.New()
		n, err := stream(tt.dst, h, tt.src)
		if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
			t.Errorf("%s: err = %v; want %v", tt.name, err, tt.wantErr)
			continue
		}
		if tt.wantN >= 0 && n != tt.wantN {
			t.Errorf("%s: n = %d; want %d", tt.name, n, tt.wantN)
		}
		if buf, ok := tt.dst.(*bytes.Buffer); ok && err == nil {
			want := sha256.Sum256(data[:n])
			if !bytes.Equal(buf.Bytes(), data[:n]) || !bytes.Equal(h.Sum(nil), want[:]) {
				t.Errorf("%s: bytes or hash differ from the source", tt.name)
			}
		}
	}
}

var errDiskFull = errors.New("no space left on device")

type failWriter struct{}

func (failWriter) Write(p []byte) (int, error) { return 0, errDiskFull }
