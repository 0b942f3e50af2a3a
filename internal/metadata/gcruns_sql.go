package metadata

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// GCRun is one garbage collection run, as the history keeps it.
type GCRun struct {
	ID int64
	// Started is when the run began; Duration how long it took.
	Started  time.Time
	Duration time.Duration
	// Actor is who asked for it ("" for a scheduled run).
	Actor string
	// Tags, Manifests, Unlinked (blob links) and Blobs removed, and the
	// bytes the blobs held.
	Tags, Manifests, Unlinked, Blobs int
	Bytes                            int64
}

// RecordGCRun adds a run to the history.
func (s *SQL) RecordGCRun(ctx context.Context, r GCRun) error {
	return s.tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		_, err := s.exec(ctx, tx, `INSERT INTO gc_runs (started, duration, actor, tags, manifests, unlinked, blobs, bytes)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, unixNano(r.Started), int64(r.Duration), r.Actor, r.Tags, r.Manifests, r.Unlinked, r.Blobs, r.Bytes)
		if err != nil {
			return fmt.Errorf("record gc run: %w", err)
		}
		return nil
	})
}

// GCRuns returns the latest limit runs, newest first.
func (s *SQL) GCRuns(ctx context.Context, limit int) ([]GCRun, error) {
	rows, err := s.query(ctx, `SELECT id, started, duration, actor, tags, manifests, unlinked, blobs, bytes FROM gc_runs
		ORDER BY id DESC LIMIT ?`, limit)
	if err != nil {
		return nil, fmt.Errorf("list gc runs: %w", err)
	}
	defer rows.Close()
	var out []GCRun
	for rows.Next() {
		var r GCRun
		var started, duration int64
		if err := rows.Scan(&r.ID, &started, &duration, &r.Actor, &r.Tags, &r.Manifests, &r.Unlinked, &r.Blobs, &r.Bytes); err != nil {
			return nil, fmt.Errorf("list gc runs: %w", err)
		}
		r.Started, r.Duration = fromNano(started), time.Duration(duration)
		out = append(out, r)
	}
	return out, rows.Err()
}
