package sqlite

import (
	"context"
	"fmt"
	"time"

	"github.com/agentlab/terraform-provider-agentlab/reaper"
)

// Orphans returns the orphans last found, by kind then id.
func (db *DB) Orphans(ctx context.Context) ([]reaper.Orphan, error) {
	rows, err := db.db.QueryContext(ctx, `SELECT id, kind, vmid, node, volid, reason, first_seen, last_seen
		FROM orphans ORDER BY kind, vmid, id`)
	if err != nil {
		return nil, fmt.Errorf("list orphans: %w", err)
	}
	defer rows.Close()
	var out []reaper.Orphan
	for rows.Next() {
		var (
			o           reaper.Orphan
			kind        string
			first, last int64
		)
		if err := rows.Scan(&o.ID, &kind, &o.VMID, &o.Node, &o.Volid, &o.Reason, &first, &last); err != nil {
			return nil, fmt.Errorf("list orphans: %w", err)
		}
		o.Kind = reaper.OrphanKind(kind)
		o.FirstSeen, o.LastSeen = time.UnixMilli(first).UTC(), time.UnixMilli(last).UTC()
		out = append(out, o)
	}
	return out, rows.Err()
}

// SyncOrphans makes the stored orphans of the given kinds exactly current
// (others are left alone: a tick finds VM orphans, a storage scan ISOs) and
// records events, in one transaction.
func (db *DB) SyncOrphans(ctx context.Context, kinds []reaper.OrphanKind, current []reaper.Orphan, events []reaper.Event) error {
	tx, err := db.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("record orphans: %w", err)
	}
	defer tx.Rollback()
	keep := map[string]bool{}
	for _, o := range current {
		keep[o.ID] = true
		if _, err := tx.ExecContext(ctx, `INSERT OR REPLACE INTO orphans (id, kind, vmid, node, volid, reason, first_seen, last_seen)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, o.ID, string(o.Kind), o.VMID, o.Node, o.Volid, o.Reason,
			o.FirstSeen.UnixMilli(), o.LastSeen.UnixMilli()); err != nil {
			return fmt.Errorf("record orphan %s: %w", o.ID, err)
		}
	}
	for _, k := range kinds {
		rows, err := tx.QueryContext(ctx, `SELECT id FROM orphans WHERE kind = ?`, string(k))
		if err != nil {
			return fmt.Errorf("record orphans: %w", err)
		}
		var stale []string
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return fmt.Errorf("record orphans: %w", err)
			}
			if !keep[id] {
				stale = append(stale, id)
			}
		}
		rows.Close()
		for _, id := range stale {
			if _, err := tx.ExecContext(ctx, `DELETE FROM orphans WHERE id = ?`, id); err != nil {
				return fmt.Errorf("forget orphan %s: %w", id, err)
			}
		}
	}
	if len(events) > 0 {
		if err := insertEvents(ctx, tx, events, db.Now()); err != nil {
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("record orphans: %w", err)
	}
	return nil
}
