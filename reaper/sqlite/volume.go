package sqlite

import (
	"context"
	"fmt"
	"time"

	"github.com/agentlab/terraform-provider-agentlab/reaper"
)

// AddVolumeDeletions records volumes to delete, before the action that
// makes them garbage starts, so that a restart finishes the job. A volume
// already recorded keeps its row; Retire, once set, stays set.
func (db *DB) AddVolumeDeletions(ctx context.Context, vols []reaper.VolumeDeletion) error {
	if len(vols) == 0 {
		return nil
	}
	tx, err := db.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("record volume deletions: %w", err)
	}
	defer tx.Rollback()
	for _, v := range vols {
		if _, err := tx.ExecContext(ctx, `INSERT INTO volume_deletions (volid, node, vmid, since, retire) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (volid) DO UPDATE SET retire = MAX(retire, excluded.retire)`,
			v.Volid, v.Node, v.VMID, v.Since.UnixMilli(), v.Retire); err != nil {
			return fmt.Errorf("record deletion of %s: %w", v.Volid, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("record volume deletions: %w", err)
	}
	return nil
}

// VolumeDeletions returns the pending volume deletions, oldest first.
func (db *DB) VolumeDeletions(ctx context.Context) ([]reaper.VolumeDeletion, error) {
	rows, err := db.db.QueryContext(ctx, `SELECT volid, node, vmid, since, retire FROM volume_deletions ORDER BY since, volid`)
	if err != nil {
		return nil, fmt.Errorf("list volume deletions: %w", err)
	}
	defer rows.Close()
	var out []reaper.VolumeDeletion
	for rows.Next() {
		var v reaper.VolumeDeletion
		var since int64
		if err := rows.Scan(&v.Volid, &v.Node, &v.VMID, &since, &v.Retire); err != nil {
			return nil, fmt.Errorf("list volume deletions: %w", err)
		}
		v.Since = time.UnixMilli(since).UTC()
		out = append(out, v)
	}
	return out, rows.Err()
}

// VolumeDeleted forgets a pending deletion, done, and records ev with it.
func (db *DB) VolumeDeleted(ctx context.Context, volid string, ev reaper.Event) error {
	tx, err := db.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("record volume deletion: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `DELETE FROM volume_deletions WHERE volid = ?`, volid); err != nil {
		return fmt.Errorf("record deletion of %s: %w", volid, err)
	}
	if err := insertEvents(ctx, tx, []reaper.Event{ev}, db.Now()); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("record volume deletion: %w", err)
	}
	return nil
}
