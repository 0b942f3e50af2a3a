package metadata

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/berth-registry/berth/internal/reference"
)

// KeepBlobLink implements Store. The lookup is one indexed read, like
// RepositoryBlob's; only a link made before refreshBefore costs a write.
func (s *SQL) KeepBlobLink(ctx context.Context, repo string, d reference.Digest, refreshBefore time.Time) (int64, error) {
	var size, linked int64
	err := s.queryRow(ctx, nil, `SELECT b.size, rb.created_at FROM repositories r
		JOIN repository_blobs rb ON rb.repository_id = r.id
		JOIN blobs b ON b.digest = rb.digest
		WHERE r.name = ? AND rb.digest = ?`, repo, string(d)).Scan(&size, &linked)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, ErrNotFound
	}
	if err != nil {
		return 0, fmt.Errorf("look up blob: %w", err)
	}
	if linked >= refreshBefore.UnixNano() {
		return size, nil
	}
	if err := s.refreshLink(ctx, repo, d, refreshBefore); err != nil {
		return 0, err
	}
	return size, nil
}

// refreshLink moves the time of a link made before refreshBefore to now.
// It runs as a transaction that adds a reference: serialized with the
// garbage collector's sweep by the single writer (SQLite) or the shared
// reference lock (PostgreSQL). A refresh committed first makes the sweep
// keep the link; after the sweep it finds the link gone and reports
// ErrNotFound: it never makes a link again.
func (s *SQL) refreshLink(ctx context.Context, repo string, d reference.Digest, refreshBefore time.Time) error {
	return s.tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		if err := s.lock(ctx, tx, s.dialect.referenceLock); err != nil {
			return err
		}
		res, err := s.exec(ctx, tx, `UPDATE repository_blobs SET created_at = ?
			WHERE repository_id = (SELECT id FROM repositories WHERE name = ?) AND digest = ? AND created_at < ?`,
			now(), repo, string(d), refreshBefore.UnixNano())
		if err != nil {
			return fmt.Errorf("refresh blob link: %w", err)
		}
		if n, _ := res.RowsAffected(); n > 0 {
			return nil
		}
		// Not updated: refreshed meanwhile by another request, or removed.
		var one int
		err = s.queryRow(ctx, tx, `SELECT 1 FROM repository_blobs rb JOIN repositories r ON r.id = rb.repository_id
			WHERE r.name = ? AND rb.digest = ?`, repo, string(d)).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return fmt.Errorf("refresh blob link: %w", err)
		}
		return nil
	})
}
