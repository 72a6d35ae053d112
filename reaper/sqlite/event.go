package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/agentlab/terraform-provider-agentlab/reaper"
)

// AddEvents appends events to the log; events without a time are stamped
// with Now.
func (db *DB) AddEvents(ctx context.Context, events ...reaper.Event) error {
	return db.Record(ctx, nil, events)
}

func insertEvents(ctx context.Context, tx *sql.Tx, events []reaper.Event, now time.Time) error {
	stmt, err := tx.PrepareContext(ctx, `INSERT INTO events (time, vmid, node, kind, decision, reason, actor, dry_run)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)`)
	if err != nil {
		return fmt.Errorf("record events: %w", err)
	}
	defer stmt.Close()
	for _, e := range events {
		at := e.Time
		if at.IsZero() {
			at = now
		}
		if _, err := stmt.ExecContext(ctx, at.UnixMilli(), e.VMID, e.Node, string(e.Kind), string(e.Decision),
			e.Reason, e.Actor, e.DryRun); err != nil {
			return fmt.Errorf("record event: %w", err)
		}
	}
	return nil
}

// Events returns the latest events matching f, oldest first.
func (db *DB) Events(ctx context.Context, f reaper.EventFilter) ([]reaper.Event, error) {
	var where []string
	var args []any
	if f.VMID != 0 {
		where, args = append(where, "vmid = ?"), append(args, f.VMID)
	}
	if !f.Since.IsZero() {
		where, args = append(where, "time >= ?"), append(args, f.Since.UnixMilli())
	}
	limit := f.Limit
	if limit <= 0 {
		limit = reaper.DefaultEventLimit
	}
	q := `SELECT id, time, vmid, node, kind, decision, reason, actor, dry_run FROM events`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	q = `SELECT * FROM (` + q + ` ORDER BY id DESC LIMIT ?) ORDER BY id`
	rows, err := db.db.QueryContext(ctx, q, append(args, limit)...)
	if err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	defer rows.Close()
	var out []reaper.Event
	for rows.Next() {
		var (
			e              reaper.Event
			at             int64
			kind, decision string
		)
		if err := rows.Scan(&e.ID, &at, &e.VMID, &e.Node, &kind, &decision, &e.Reason, &e.Actor, &e.DryRun); err != nil {
			return nil, fmt.Errorf("list events: %w", err)
		}
		e.Time = time.UnixMilli(at).UTC()
		e.Kind, e.Decision = reaper.EventKind(kind), reaper.Decision(decision)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	return out, nil
}
