// Package sqlite is the reaper's store: leases as last seen and the event log,
// in a SQLite database (pure Go, WAL mode). Schema migrations are embedded and
// applied when the database is opened.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

//go:embed migration/*.sql
var migrationFS embed.FS

// DB is the reaper's store. Create it with New, then Open it.
type DB struct {
	db *sql.DB

	// Path is the database file.
	Path string

	// Now returns the current time; it stamps events recorded without a time.
	// Tests replace it.
	Now func() time.Time
}

// New returns a store for the database file at path, not yet open.
func New(path string) *DB {
	return &DB{Path: path, Now: time.Now}
}

// Open creates the file's directory if needed (mode 0700), opens the
// database in WAL mode and applies pending migrations.
func (db *DB) Open(ctx context.Context) error {
	if db.Path == "" {
		return fmt.Errorf("open store: database path is empty")
	}
	if err := os.MkdirAll(filepath.Dir(db.Path), 0o700); err != nil {
		return fmt.Errorf("open store: %w", err)
	}
	q := url.Values{}
	for _, p := range []string{"journal_mode(WAL)", "synchronous(FULL)", "busy_timeout(10000)", "foreign_keys(1)"} {
		q.Add("_pragma", p)
	}
	q.Set("_txlock", "immediate")
	dsn := "file:" + db.Path + "?" + q.Encode()
	var err error
	if db.db, err = sql.Open("sqlite", dsn); err != nil {
		return fmt.Errorf("open store: %w", err)
	}
	if err := db.db.PingContext(ctx); err != nil {
		db.db.Close()
		return fmt.Errorf("open store %s: %w", db.Path, err)
	}
	if err := os.Chmod(db.Path, 0o600); err != nil {
		db.db.Close()
		return fmt.Errorf("open store: %w", err)
	}
	if err := db.migrate(ctx); err != nil {
		db.db.Close()
		return fmt.Errorf("migrate store %s: %w", db.Path, err)
	}
	return nil
}

// Close closes the database.
func (db *DB) Close() error {
	if db.db == nil {
		return nil
	}
	return db.db.Close()
}

// migrate applies, in name order, every embedded migration not yet recorded
// in the migrations table, each in its own transaction.
func (db *DB) migrate(ctx context.Context) error {
	if _, err := db.db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY)`); err != nil {
		return fmt.Errorf("create migrations table: %w", err)
	}
	names, err := fs.Glob(migrationFS, "migration/*.sql")
	if err != nil {
		return err
	}
	sort.Strings(names)
	for _, name := range names {
		if err := db.migrateFile(ctx, name); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	return nil
}

func (db *DB) migrateFile(ctx context.Context, name string) error {
	tx, err := db.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM migrations WHERE name = ?`, name).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return nil
	}
	buf, err := fs.ReadFile(migrationFS, name)
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, string(buf)); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO migrations (name) VALUES (?)`, name); err != nil {
		return err
	}
	return tx.Commit()
}

// millis converts t to unix milliseconds, or NULL for the zero time.
func millis(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixMilli()
}

// fromMillis converts a nullable unix-milliseconds column back to UTC time.
func fromMillis(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return time.UnixMilli(v.Int64).UTC()
}

// Size returns the bytes the database takes on disk: the file and its
// write-ahead log.
func (db *DB) Size() (int64, error) {
	var total int64
	for _, p := range []string{db.Path, db.Path + "-wal"} {
		fi, err := os.Stat(p)
		if errors.Is(err, os.ErrNotExist) && p != db.Path {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("database size: %w", err)
		}
		total += fi.Size()
	}
	return total, nil
}
