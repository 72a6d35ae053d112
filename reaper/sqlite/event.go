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

// insertEvents appends events. An event identical to its VM's latest one
// (same kind, decision, reason, actor and dry-run flag) is not a new row: the
// latest one's count grows and its last_time becomes the event's time, so a
// sandbox retrying a refused heartbeat every minute costs one row.
func insertEvents(ctx context.Context, tx *sql.Tx, events []reaper.Event, now time.Time) error {
	repeat, err := tx.PrepareContext(ctx, `UPDATE events SET count = count + 1, last_time = ?
		WHERE id = (SELECT MAX(id) FROM events WHERE vmid = ?)
		AND kind = ? AND decision = ? AND reason = ? AND actor = ? AND dry_run = ?`)
	if err != nil {
		return fmt.Errorf("record events: %w", err)
	}
	defer repeat.Close()
	insert, err := tx.PrepareContext(ctx, `INSERT INTO events (time, vmid, node, kind, decision, reason, actor, dry_run)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)`)
	if err != nil {
		return fmt.Errorf("record events: %w", err)
	}
	defer insert.Close()
	for _, e := range events {
		at := e.Time
		if at.IsZero() {
			at = now
		}
		res, err := repeat.ExecContext(ctx, at.UnixMilli(), e.VMID, string(e.Kind), string(e.Decision), e.Reason, e.Actor, e.DryRun)
		if err != nil {
			return fmt.Errorf("record event: %w", err)
		}
		if n, err := res.RowsAffected(); err == nil && n > 0 {
			continue
		}
		if _, err := insert.ExecContext(ctx, at.UnixMilli(), e.VMID, e.Node, string(e.Kind), string(e.Decision),
			e.Reason, e.Actor, e.DryRun); err != nil {
			return fmt.Errorf("record event: %w", err)
		}
	}
	return nil
}

// Events returns the latest events matching f, oldest first. Since matches
// an event that happened, or last repeated, at or after it.
func (db *DB) Events(ctx context.Context, f reaper.EventFilter) ([]reaper.Event, error) {
	var where []string
	var args []any
	if f.VMID != 0 {
		where, args = append(where, "vmid = ?"), append(args, f.VMID)
	}
	if !f.Since.IsZero() {
		where, args = append(where, "COALESCE(last_time, time) >= ?"), append(args, f.Since.UnixMilli())
	}
	limit := f.Limit
	if limit <= 0 {
		limit = reaper.DefaultEventLimit
	}
	q := `SELECT id, time, vmid, node, kind, decision, reason, actor, dry_run, count, last_time FROM events`
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
			last           sql.NullInt64
			kind, decision string
		)
		if err := rows.Scan(&e.ID, &at, &e.VMID, &e.Node, &kind, &decision, &e.Reason, &e.Actor, &e.DryRun, &e.Count, &last); err != nil {
			return nil, fmt.Errorf("list events: %w", err)
		}
		e.Time = time.UnixMilli(at).UTC()
		e.LastTime = fromMillis(last)
		e.Kind, e.Decision = reaper.EventKind(kind), reaper.Decision(decision)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	return out, nil
}

// PruneEvents deletes the events that last happened before t and returns
// how many it deleted.
func (db *DB) PruneEvents(ctx context.Context, before time.Time) (int64, error) {
	res, err := db.db.ExecContext(ctx, `DELETE FROM events WHERE COALESCE(last_time, time) < ?`, before.UnixMilli())
	if err != nil {
		return 0, fmt.Errorf("prune events: %w", err)
	}
	return res.RowsAffected()
}
