package jobs

import (
	"fmt"
	"hash"
	"io"
	"sync/atomic"
)

// streamBuffers is how many copyBuffer-sized buffers one upload uses.
const streamBuffers = 4

// stream copies src to dst and into h in a three-stage pipeline (read,
// write, hash), so the network, the disk and the hash work at once; memory
// stays at streamBuffers buffers whatever the size. It returns the bytes
// read, and the first read error or the first write error (wrapping
// ErrStorage).
func stream(dst io.Writer, h hash.Hash, src io.Reader) (int64, error) {
	free := make(chan []byte, streamBuffers)
	for range streamBuffers {
		free <- make([]byte, copyBuffer)
	}
	toWrite := make(chan []byte, streamBuffers)
	toHash := make(chan []byte, streamBuffers)
	hashed := make(chan struct{})
	var writeErr error
	var writeFailed atomic.Bool
	go func() { // writer: owns writeErr until it closes toHash
		defer close(toHash)
		for b := range toWrite {
			if writeErr == nil {
				if _, err := dst.Write(b); err != nil {
					writeErr = err
					writeFailed.Store(true)
				}
			}
			toHash <- b
		}
	}()
	go func() { // hasher
		defer close(hashed)
		for b := range toHash {
			h.Write(b)
			free <- b[:cap(b)]
		}
	}()
	var n int64
	var readErr error
	for readErr == nil && !writeFailed.Load() {
		b := <-free
		k, err := fill(src, b)
		n += int64(k)
		if k > 0 {
			toWrite <- b[:k]
		} else {
			free <- b
		}
		if err == io.EOF {
			break
		}
		readErr = err
	}
	close(toWrite)
	<-hashed // the writer and the hasher are done
	if readErr != nil {
		return n, readErr
	}
	if writeErr != nil {
		return n, fmt.Errorf("%w: %w", ErrStorage, writeErr)
	}
	return n, nil
}

// fill reads into b until it is full or src ends: io.EOF when src ended,
// another error when reading failed.
func fill(src io.Reader, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		k, err := src.Read(b[n:])
		n += k
		if err != nil {
			if err == io.EOF { // exactly EOF: io.ErrUnexpectedEOF is a truncated body
				return n, io.EOF
			}
			return n, err
		}
	}
	return n, nil
}
