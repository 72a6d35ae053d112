package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/agentlab/terraform-provider-agentlab/reaper"
)

const leaseColumns = `vmid, node, name, status, tags, state, reason, created_at, expires_at,
	max_expires_at, ttl, on_expiry, owner, profile, job_id, workspace, token_sha256, warned_for,
	first_seen, last_seen, policy_expires_at, boot_token_sha256`

// selectLeases reads leases; a present sandbox's last_seen is the end of the
// last tick (Touch) when that is later than the row's own.
const selectLeases = `SELECT vmid, node, name, status, tags, state, reason, created_at, expires_at,
	max_expires_at, ttl, on_expiry, owner, profile, job_id, workspace, token_sha256, warned_for,
	first_seen, CASE WHEN state IN ('destroyed', 'gone') THEN last_seen
		ELSE MAX(last_seen, COALESCE((SELECT value FROM meta WHERE key = 'last_tick'), 0)) END,
	policy_expires_at, boot_token_sha256
	FROM leases`

// Leases returns the leases of the sandboxes still present in Proxmox, or of
// all sandboxes ever seen (destroyed and gone ones too) when all is set,
// ordered by VMID.
func (db *DB) Leases(ctx context.Context, all bool) ([]reaper.Lease, error) {
	q := selectLeases
	if !all {
		q += ` WHERE state NOT IN ('destroyed', 'gone')`
	}
	rows, err := db.db.QueryContext(ctx, q+` ORDER BY vmid`)
	if err != nil {
		return nil, fmt.Errorf("list leases: %w", err)
	}
	defer rows.Close()
	var out []reaper.Lease
	for rows.Next() {
		l, err := scanLease(rows)
		if err != nil {
			return nil, fmt.Errorf("list leases: %w", err)
		}
		out = append(out, l)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list leases: %w", err)
	}
	return out, nil
}

// Lease returns the lease of one sandbox, or reaper.ErrNotFound.
func (db *DB) Lease(ctx context.Context, vmid int) (reaper.Lease, error) {
	row := db.db.QueryRowContext(ctx, selectLeases+` WHERE vmid = ?`, vmid)
	l, err := scanLease(row)
	if errors.Is(err, sql.ErrNoRows) {
		return reaper.Lease{}, fmt.Errorf("vm %d: %w", vmid, reaper.ErrNotFound)
	}
	if err != nil {
		return reaper.Lease{}, fmt.Errorf("get lease %d: %w", vmid, err)
	}
	return l, nil
}

// LeaseByToken returns the present sandbox whose heartbeat token, or boot
// token still in use (see lease.Metadata.BootTokenSHA256), has the given hex
// sha256, or reaper.ErrNotFound.
func (db *DB) LeaseByToken(ctx context.Context, sha256Hex string) (reaper.Lease, error) {
	if sha256Hex == "" {
		return reaper.Lease{}, reaper.ErrNotFound
	}
	row := db.db.QueryRowContext(ctx, selectLeases+`
		WHERE (token_sha256 = ?1 OR boot_token_sha256 = ?1) AND state NOT IN ('destroyed', 'gone')
		ORDER BY last_seen DESC LIMIT 1`, sha256Hex)
	l, err := scanLease(row)
	if errors.Is(err, sql.ErrNoRows) {
		return reaper.Lease{}, reaper.ErrNotFound
	}
	if err != nil {
		return reaper.Lease{}, fmt.Errorf("find lease by token: %w", err)
	}
	return l, nil
}

// Record saves leases (insert or replace) and appends events in one
// transaction, so a decision and its audit entry are stored together or not
// at all. Events without a time are stamped with Now.
func (db *DB) Record(ctx context.Context, leases []reaper.Lease, events []reaper.Event) error {
	if len(leases) == 0 && len(events) == 0 {
		return nil
	}
	tx, err := db.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("record: %w", err)
	}
	defer tx.Rollback()
	if len(leases) > 0 {
		stmt, err := tx.PrepareContext(ctx, `INSERT OR REPLACE INTO leases (`+leaseColumns+`)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
		if err != nil {
			return fmt.Errorf("record leases: %w", err)
		}
		defer stmt.Close()
		for _, l := range leases {
			if _, err := stmt.ExecContext(ctx, l.VMID, l.Node, l.Name, l.Status, strings.Join(l.Tags, ";"),
				string(l.State), l.Reason, millis(l.CreatedAt), millis(l.ExpiresAt), millis(l.MaxExpiresAt),
				int64(l.TTL), l.OnExpiry, l.Owner, l.Profile, l.JobID, l.Workspace, l.TokenSHA256,
				millis(l.WarnedFor), millis(l.FirstSeen), millis(l.LastSeen), millis(l.PolicyExpiresAt),
				l.BootTokenSHA256); err != nil {
				return fmt.Errorf("record lease %d: %w", l.VMID, err)
			}
		}
	}
	if len(events) > 0 {
		if err := insertEvents(ctx, tx, events, db.Now()); err != nil {
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("record: %w", err)
	}
	return nil
}

// Touch records that a tick ending at at saw every sandbox still present: it
// becomes their last_seen. It costs one row, however many sandboxes there are.
func (db *DB) Touch(ctx context.Context, at time.Time) error {
	if _, err := db.db.ExecContext(ctx, `INSERT OR REPLACE INTO meta (key, value) VALUES ('last_tick', ?)`, at.UnixMilli()); err != nil {
		return fmt.Errorf("touch leases: %w", err)
	}
	return nil
}

// PruneLeases deletes destroyed and gone sandboxes last seen before t. Events
// are kept.
func (db *DB) PruneLeases(ctx context.Context, before time.Time) (int64, error) {
	res, err := db.db.ExecContext(ctx, `DELETE FROM leases WHERE state IN ('destroyed', 'gone') AND last_seen < ?`, before.UnixMilli())
	if err != nil {
		return 0, fmt.Errorf("prune leases: %w", err)
	}
	return res.RowsAffected()
}

type scanner interface{ Scan(dest ...any) error }

func scanLease(s scanner) (reaper.Lease, error) {
	var (
		l                                reaper.Lease
		tags, state                      string
		ttl                              int64
		created, expires, maxExp, warned sql.NullInt64
		firstSeen, lastSeen, policyExp   sql.NullInt64
	)
	if err := s.Scan(&l.VMID, &l.Node, &l.Name, &l.Status, &tags, &state, &l.Reason, &created, &expires,
		&maxExp, &ttl, &l.OnExpiry, &l.Owner, &l.Profile, &l.JobID, &l.Workspace, &l.TokenSHA256, &warned,
		&firstSeen, &lastSeen, &policyExp, &l.BootTokenSHA256); err != nil {
		return reaper.Lease{}, err
	}
	if tags != "" {
		l.Tags = strings.Split(tags, ";")
	}
	l.State = reaper.State(state)
	l.TTL = time.Duration(ttl)
	l.CreatedAt, l.ExpiresAt, l.MaxExpiresAt = fromMillis(created), fromMillis(expires), fromMillis(maxExp)
	l.WarnedFor = fromMillis(warned)
	l.FirstSeen, l.LastSeen = fromMillis(firstSeen), fromMillis(lastSeen)
	l.PolicyExpiresAt = fromMillis(policyExp)
	return l, nil
}
