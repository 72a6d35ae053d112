package sqlite

import (
	"context"
	"fmt"
	"time"

	"github.com/agentlab/terraform-provider-agentlab/reaper"
)

// SetKept records (keep) or forgets (!keep) that the operator kept vmid with
// `agentlab-reaper keep`, together with the event saying so.
func (db *DB) SetKept(ctx context.Context, vmid int, keep bool, at time.Time, actor string, ev reaper.Event) error {
	tx, err := db.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("record keep: %w", err)
	}
	defer tx.Rollback()
	if keep {
		_, err = tx.ExecContext(ctx, `INSERT OR REPLACE INTO keeps (vmid, time, actor) VALUES (?, ?, ?)`, vmid, at.UnixMilli(), actor)
	} else {
		_, err = tx.ExecContext(ctx, `DELETE FROM keeps WHERE vmid = ?`, vmid)
	}
	if err != nil {
		return fmt.Errorf("record keep of vm %d: %w", vmid, err)
	}
	if err := insertEvents(ctx, tx, []reaper.Event{ev}, db.Now()); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("record keep: %w", err)
	}
	return nil
}

// Kept returns the VMIDs the operator kept.
func (db *DB) Kept(ctx context.Context) (map[int]bool, error) {
	rows, err := db.db.QueryContext(ctx, `SELECT vmid FROM keeps`)
	if err != nil {
		return nil, fmt.Errorf("list kept vms: %w", err)
	}
	defer rows.Close()
	out := map[int]bool{}
	for rows.Next() {
		var id int
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("list kept vms: %w", err)
		}
		out[id] = true
	}
	return out, rows.Err()
}
