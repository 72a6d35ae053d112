package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/agentlab/terraform-provider-agentlab/internal/job"
	"github.com/agentlab/terraform-provider-agentlab/reaper"
)

const jobColumns = `id, repo, ref, task, timeout, artifact_globs, env, keep_sandbox, owner, status, reason,
	exit_code, node, vmid, workspace, bootstrap_sha256, bootstrap_used, token_sha256, created_at, started_at,
	finished_at, last_seen, sandbox_seen, sandbox_fate, log_size`

// CreateJob inserts a new job.
func (db *DB) CreateJob(ctx context.Context, j reaper.Job) error {
	globs, env, err := jobJSON(j)
	if err != nil {
		return err
	}
	_, err = db.db.ExecContext(ctx, `INSERT INTO jobs (`+jobColumns+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		j.ID, j.Repo, j.Ref, j.Task, int64(j.TimeoutDuration), globs, env, j.KeepSandbox, j.Owner, string(j.Status),
		j.Reason, exitCode(j.ExitCode), j.Node, j.VMID, j.Workspace, j.BootstrapSHA256, j.BootstrapUsed, j.TokenSHA256,
		j.CreatedAt.UnixMilli(), millis(j.StartedAt), millis(j.FinishedAt), j.LastSeen.UnixMilli(), j.SandboxSeen,
		string(j.SandboxFate), j.LogSize)
	if err != nil {
		return fmt.Errorf("create job %s: %w", j.ID, err)
	}
	return nil
}

// Job returns one job, or an error wrapping job.ErrNotFound.
func (db *DB) Job(ctx context.Context, id string) (reaper.Job, error) {
	j, err := getJob(ctx, db.db, `WHERE id = ?`, id)
	if errors.Is(err, job.ErrNotFound) {
		return reaper.Job{}, fmt.Errorf("%s: %w", id, job.ErrNotFound)
	}
	return j, err
}

// JobByToken returns the job whose job token has the given hex sha256, or
// an error wrapping reaper.ErrUnauthorized.
func (db *DB) JobByToken(ctx context.Context, sha256Hex string) (reaper.Job, error) {
	if sha256Hex == "" {
		return reaper.Job{}, reaper.ErrUnauthorized
	}
	j, err := getJob(ctx, db.db, `WHERE token_sha256 = ?`, sha256Hex)
	if errors.Is(err, job.ErrNotFound) {
		return reaper.Job{}, fmt.Errorf("unknown job token: %w", reaper.ErrUnauthorized)
	}
	return j, err
}

// JobByBootstrap returns the job whose bootstrap token has the given hex
// sha256, or an error wrapping reaper.ErrUnauthorized.
func (db *DB) JobByBootstrap(ctx context.Context, sha256Hex string) (reaper.Job, error) {
	j, err := getJob(ctx, db.db, `WHERE bootstrap_sha256 = ?`, sha256Hex)
	if errors.Is(err, job.ErrNotFound) {
		return reaper.Job{}, fmt.Errorf("unknown bootstrap token: %w", reaper.ErrUnauthorized)
	}
	return j, err
}

// Jobs returns every job, newest first.
func (db *DB) Jobs(ctx context.Context) ([]reaper.Job, error) {
	rows, err := db.db.QueryContext(ctx, `SELECT `+jobColumns+` FROM jobs ORDER BY created_at DESC, id`)
	if err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	defer rows.Close()
	var out []reaper.Job
	for rows.Next() {
		j, err := scanJob(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, j)
	}
	return out, rows.Err()
}

// UpdateJob reads job id, lets fn change it and writes it back, in one
// transaction; when fn returns an error nothing is written. Only the
// fields that may change after registration are written.
func (db *DB) UpdateJob(ctx context.Context, id string, fn func(*reaper.Job) error) (reaper.Job, error) {
	tx, err := db.db.BeginTx(ctx, nil)
	if err != nil {
		return reaper.Job{}, fmt.Errorf("update job %s: %w", id, err)
	}
	defer tx.Rollback()
	j, err := getJob(ctx, tx, `WHERE id = ?`, id)
	if errors.Is(err, job.ErrNotFound) {
		return reaper.Job{}, fmt.Errorf("%s: %w", id, job.ErrNotFound)
	}
	if err != nil {
		return reaper.Job{}, err
	}
	if err := fn(&j); err != nil {
		return j, err
	}
	_, err = tx.ExecContext(ctx, `UPDATE jobs SET status = ?, reason = ?, exit_code = ?, node = ?, vmid = ?,
		workspace = ?, bootstrap_used = ?, token_sha256 = ?, started_at = ?, finished_at = ?, last_seen = ?,
		sandbox_seen = ?, sandbox_fate = ? WHERE id = ?`,
		string(j.Status), j.Reason, exitCode(j.ExitCode), j.Node, j.VMID, j.Workspace, j.BootstrapUsed, j.TokenSHA256,
		millis(j.StartedAt), millis(j.FinishedAt), j.LastSeen.UnixMilli(), j.SandboxSeen, string(j.SandboxFate), id)
	if err != nil {
		return reaper.Job{}, fmt.Errorf("update job %s: %w", id, err)
	}
	if err := tx.Commit(); err != nil {
		return reaper.Job{}, fmt.Errorf("update job %s: %w", id, err)
	}
	return j, nil
}

// DeleteJob removes a job with its log and artifact rows (not the files).
func (db *DB) DeleteJob(ctx context.Context, id string) error {
	if _, err := db.db.ExecContext(ctx, `DELETE FROM jobs WHERE id = ?`, id); err != nil {
		return fmt.Errorf("delete job %s: %w", id, err)
	}
	return nil
}

// AppendLog appends data to the job's log, keeping it to at most limit bytes
// (limit; what does not fit is dropped), and records at as the runner's last sign
// of life. It returns how many bytes were kept and the log's new size.
func (db *DB) AppendLog(ctx context.Context, id string, data []byte, limit int64, at time.Time) (kept int, size int64, err error) {
	tx, err := db.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, 0, fmt.Errorf("append log of %s: %w", id, err)
	}
	defer tx.Rollback()
	if err := tx.QueryRowContext(ctx, `SELECT log_size FROM jobs WHERE id = ?`, id).Scan(&size); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return 0, 0, fmt.Errorf("job %s: %w", id, job.ErrNotFound)
		}
		return 0, 0, fmt.Errorf("append log of %s: %w", id, err)
	}
	if room := limit - size; int64(len(data)) > room {
		data = data[:max(room, 0)]
	}
	if len(data) > 0 {
		if _, err := tx.ExecContext(ctx, `INSERT INTO job_logs (job_id, offset, data) VALUES (?, ?, ?)`, id, size, data); err != nil {
			return 0, 0, fmt.Errorf("append log of %s: %w", id, err)
		}
	}
	size += int64(len(data))
	if _, err := tx.ExecContext(ctx, `UPDATE jobs SET log_size = ?, last_seen = ? WHERE id = ?`, size, at.UnixMilli(), id); err != nil {
		return 0, 0, fmt.Errorf("append log of %s: %w", id, err)
	}
	return len(data), size, tx.Commit()
}

// ReadLog returns up to limit bytes of the job's log from offset on.
func (db *DB) ReadLog(ctx context.Context, id string, offset int64, limit int) ([]byte, error) {
	rows, err := db.db.QueryContext(ctx, `SELECT offset, data FROM job_logs
		WHERE job_id = ? AND offset + length(data) > ? ORDER BY offset`, id, offset)
	if err != nil {
		return nil, fmt.Errorf("read log of %s: %w", id, err)
	}
	defer rows.Close()
	var out []byte
	for rows.Next() && len(out) < limit {
		var at int64
		var data []byte
		if err := rows.Scan(&at, &data); err != nil {
			return nil, fmt.Errorf("read log of %s: %w", id, err)
		}
		if at < offset {
			data = data[offset-at:]
		}
		out = append(out, data[:min(len(data), limit-len(out))]...)
	}
	return out, rows.Err()
}

// PutArtifact records an artifact, replacing one of the same name, and
// returns the path of the file it replaced ("" when none), for the caller
// to remove when it differs from the new one.
func (db *DB) PutArtifact(ctx context.Context, id string, a reaper.ArtifactFile) (string, error) {
	tx, err := db.db.BeginTx(ctx, nil)
	if err != nil {
		return "", fmt.Errorf("record artifact: %w", err)
	}
	defer tx.Rollback()
	var old string
	err = tx.QueryRowContext(ctx, `SELECT path FROM artifacts WHERE job_id = ? AND name = ?`, id, a.Name).Scan(&old)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("record artifact: %w", err)
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO artifacts (job_id, name, size, sha256, path, created_at) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (job_id, name) DO UPDATE SET size = excluded.size, sha256 = excluded.sha256, path = excluded.path,
		created_at = excluded.created_at`, id, a.Name, a.Size, a.SHA256, a.Path, a.CreatedAt.UnixMilli())
	if err != nil {
		return "", fmt.Errorf("record artifact: %w", err)
	}
	return old, tx.Commit()
}

// Artifacts returns the job's artifacts, by name.
func (db *DB) Artifacts(ctx context.Context, id string) ([]reaper.ArtifactFile, error) {
	rows, err := db.db.QueryContext(ctx, `SELECT name, size, sha256, path, created_at FROM artifacts
		WHERE job_id = ? ORDER BY name`, id)
	if err != nil {
		return nil, fmt.Errorf("list artifacts of %s: %w", id, err)
	}
	defer rows.Close()
	var out []reaper.ArtifactFile
	for rows.Next() {
		var a reaper.ArtifactFile
		var created int64
		if err := rows.Scan(&a.Name, &a.Size, &a.SHA256, &a.Path, &created); err != nil {
			return nil, fmt.Errorf("list artifacts of %s: %w", id, err)
		}
		a.CreatedAt = time.UnixMilli(created).UTC()
		out = append(out, a)
	}
	return out, rows.Err()
}

type queryer interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func getJob(ctx context.Context, q queryer, where string, args ...any) (reaper.Job, error) {
	j, err := scanJob(q.QueryRowContext(ctx, `SELECT `+jobColumns+` FROM jobs `+where, args...))
	if errors.Is(err, sql.ErrNoRows) {
		return reaper.Job{}, job.ErrNotFound
	}
	return j, err
}

func scanJob(s scanner) (reaper.Job, error) {
	var (
		j                          reaper.Job
		timeout, created, lastSeen int64
		globs, env, status, fate   string
		exit                       sql.NullInt64
		started, finished          sql.NullInt64
		keep, used, seen           bool
	)
	err := s.Scan(&j.ID, &j.Repo, &j.Ref, &j.Task, &timeout, &globs, &env, &keep, &j.Owner, &status, &j.Reason,
		&exit, &j.Node, &j.VMID, &j.Workspace, &j.BootstrapSHA256, &used, &j.TokenSHA256, &created, &started,
		&finished, &lastSeen, &seen, &fate, &j.LogSize)
	if err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return j, err
		}
		return j, fmt.Errorf("read job: %w", err)
	}
	j.TimeoutDuration = time.Duration(timeout)
	j.Timeout = j.TimeoutDuration.String()
	j.KeepSandbox, j.BootstrapUsed, j.SandboxSeen = keep, used, seen
	j.Status, j.SandboxFate = job.Status(status), reaper.SandboxFate(fate)
	if exit.Valid {
		code := int(exit.Int64)
		j.ExitCode = &code
	}
	j.CreatedAt = time.UnixMilli(created).UTC()
	j.StartedAt, j.FinishedAt = fromMillis(started), fromMillis(finished)
	j.LastSeen = time.UnixMilli(lastSeen).UTC()
	if err := json.Unmarshal([]byte(globs), &j.ArtifactsGlobs); err != nil {
		return j, fmt.Errorf("job %s: artifact globs: %w", j.ID, err)
	}
	if err := json.Unmarshal([]byte(env), &j.Env); err != nil {
		return j, fmt.Errorf("job %s: env: %w", j.ID, err)
	}
	if j.ArtifactsGlobs == nil {
		j.ArtifactsGlobs = []string{}
	}
	j.EnvKeys = job.EnvKeys(j.Env)
	return j, nil
}

func jobJSON(j reaper.Job) (globs, env string, err error) {
	g := j.ArtifactsGlobs
	if g == nil {
		g = []string{}
	}
	e := j.Env
	if e == nil {
		e = map[string]string{}
	}
	gb, err := json.Marshal(g)
	if err != nil {
		return "", "", err
	}
	eb, err := json.Marshal(e)
	return string(gb), string(eb), err
}

func exitCode(c *int) any {
	if c == nil {
		return nil
	}
	return *c
}
