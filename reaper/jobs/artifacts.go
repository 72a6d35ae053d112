package jobs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/agentlab/terraform-provider-agentlab/internal/job"
	"github.com/agentlab/terraform-provider-agentlab/internal/writeback"
	"github.com/agentlab/terraform-provider-agentlab/reaper"
)

// Errors of an upload.
var (
	// ErrTooLarge is an upload over artifacts.max_bytes.
	ErrTooLarge = errors.New("artifact larger than artifacts.max_bytes")
	// ErrTruncated is an upload whose body ended before its announced
	// length, or broke off.
	ErrTruncated = errors.New("artifact upload truncated")
	// ErrStorage is an upload the reaper could not write to its disk (full,
	// failing): the reaper's fault, not the client's.
	ErrStorage = errors.New("artifact storage failed")
)

// tempPrefix starts the name of a file being uploaded; such files left by a
// crash are removed by RemovePartial.
const tempPrefix = ".upload-"

// copyBuffer is the size of the buffer uploads are copied through.
const copyBuffer = 1 << 20

// Upload streams an artifact of job id to disk, hashing it on the way, and
// records it once complete: the bytes go to a temporary file renamed into
// place only when the whole body arrived within MaxBytes, and every failure
// removes the temporary file. size is the announced length, or -1. An
// artifact of the same name is replaced.
func (s *Service) Upload(ctx context.Context, id, name string, body io.Reader, size int64) (job.Artifact, error) {
	if err := job.CheckName(name); err != nil {
		return job.Artifact{}, err
	}
	if size > s.opts.MaxBytes {
		return job.Artifact{}, fmt.Errorf("%w: %d bytes announced, the limit is %d", ErrTooLarge, size, s.opts.MaxBytes)
	}
	dir, err := s.jobDir(id)
	if err != nil {
		return job.Artifact{}, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return job.Artifact{}, fmt.Errorf("artifact directory: %w", err)
	}
	f, err := os.CreateTemp(dir, tempPrefix+"*")
	if err != nil {
		return job.Artifact{}, fmt.Errorf("artifact file: %w", err)
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	// The file is written back while the upload arrives, so the fsync
	// below has little left to write (see writeback.File).
	wb := writeback.New(f)
	h := sha256.New()
	n, err := stream(wb, h, io.LimitReader(body, s.opts.MaxBytes+1))
	switch {
	case n > s.opts.MaxBytes:
		return job.Artifact{}, fmt.Errorf("%w: the limit is %d bytes", ErrTooLarge, s.opts.MaxBytes)
	case errors.Is(err, ErrStorage):
		return job.Artifact{}, fmt.Errorf("after %d bytes: %w", n, err)
	case err != nil:
		return job.Artifact{}, fmt.Errorf("%w after %d bytes: %w", ErrTruncated, n, err)
	case size >= 0 && n != size:
		return job.Artifact{}, fmt.Errorf("%w: got %d of %d bytes", ErrTruncated, n, size)
	}
	if err := wb.Sync(); err != nil {
		return job.Artifact{}, fmt.Errorf("artifact file: %w", err)
	}
	if err := f.Close(); err != nil {
		return job.Artifact{}, fmt.Errorf("artifact file: %w", err)
	}
	a := reaper.ArtifactFile{
		Artifact:  job.Artifact{Name: name, Size: n, SHA256: hex.EncodeToString(h.Sum(nil))},
		Path:      filepath.Join(dir, fileName(name)),
		CreatedAt: s.clock.Now().UTC(),
	}
	if err := os.Rename(tmp, a.Path); err != nil {
		return job.Artifact{}, fmt.Errorf("artifact file: %w", err)
	}
	ok = true
	old, err := s.store.PutArtifact(ctx, id, a)
	if err != nil {
		os.Remove(a.Path)
		return job.Artifact{}, err
	}
	if old != "" && old != a.Path {
		os.Remove(old)
	}
	s.m.ArtifactBytes(n)
	s.log.Info("artifact uploaded", "job", id, "name", name, "size", n, "sha256", a.SHA256)
	return a.Artifact, nil
}

// Artifacts lists a job's artifacts.
func (s *Service) Artifacts(ctx context.Context, id string) ([]job.Artifact, error) {
	if _, err := s.load(ctx, id); err != nil {
		return nil, err
	}
	files, err := s.store.Artifacts(ctx, id)
	if err != nil {
		return nil, err
	}
	out := make([]job.Artifact, 0, len(files))
	for _, f := range files {
		out = append(out, f.Artifact)
	}
	return out, nil
}

// OpenArtifact opens an artifact's file for reading; the caller closes it.
func (s *Service) OpenArtifact(ctx context.Context, id, name string) (*os.File, job.Artifact, error) {
	if _, err := s.load(ctx, id); err != nil {
		return nil, job.Artifact{}, err
	}
	files, err := s.store.Artifacts(ctx, id)
	if err != nil {
		return nil, job.Artifact{}, err
	}
	for _, a := range files {
		if a.Name == name {
			f, err := os.Open(a.Path)
			if err != nil {
				return nil, job.Artifact{}, fmt.Errorf("artifact %s of %s: %w", name, id, err)
			}
			return f, a.Artifact, nil
		}
	}
	return nil, job.Artifact{}, fmt.Errorf("artifact %q of %s: %w", name, id, job.ErrNotFound)
}

// RemovePartial removes the temporary files of uploads a crash interrupted.
func (s *Service) RemovePartial() error {
	matches, err := filepath.Glob(filepath.Join(s.opts.Dir, job.IDPrefix+"*", tempPrefix+"*"))
	if err != nil {
		return err
	}
	var errs []error
	for _, m := range matches {
		if err := os.Remove(m); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// jobDir is the directory of a job's artifacts.
func (s *Service) jobDir(id string) (string, error) {
	if !job.ValidID(id) {
		return "", fmt.Errorf("%q: %w", id, job.ErrNotFound)
	}
	return filepath.Join(s.opts.Dir, id), nil
}

// fileName is the file an artifact is kept in: a hash of its name, so no
// name, however odd, decides where a file goes.
func fileName(name string) string {
	sum := sha256.Sum256([]byte(name))
	return "a-" + hex.EncodeToString(sum[:16])
}
