package metadata

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/berth-registry/berth/internal/reference"
)

// KeepBlobLink implements Store. The lookup is one indexed read (or none,
// from the read cache), like RepositoryBlob's; only a link made before
// refreshBefore costs a write.
func (s *SQL) KeepBlobLink(ctx context.Context, repo string, d reference.Digest, refreshBefore time.Time) (int64, error) {
	size, linked, err := s.blobLink(ctx, repo, d)
	if err != nil || linked >= refreshBefore.UnixNano() {
		return size, err
	}
	var gen uint64
	if s.cache != nil {
		gen = s.cache.generation()
	}
	linked, err = s.refreshLink(ctx, repo, d, refreshBefore)
	if err != nil {
		return 0, err
	}
	if s.cache != nil {
		s.cache.putLink(gen, repo, string(d), size, linked)
	}
	return size, nil
}

// refreshLink moves the time of a link made before refreshBefore to now.
// It runs as a transaction that adds a reference: serialized with the
// garbage collector's sweep by the single writer (SQLite) or the shared
// reference lock (PostgreSQL). A refresh committed first makes the sweep
// keep the link; after the sweep it finds the link gone and reports
// ErrNotFound: it never makes a link again. It returns the link's time.
func (s *SQL) refreshLink(ctx context.Context, repo string, d reference.Digest, refreshBefore time.Time) (linked int64, err error) {
	err = s.tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		if err := s.lock(ctx, tx, s.dialect.referenceLock); err != nil {
			return err
		}
		linked = now()
		res, err := s.exec(ctx, tx, `UPDATE repository_blobs SET created_at = ?
			WHERE repository_id = (SELECT id FROM repositories WHERE name = ?) AND digest = ? AND created_at < ?`,
			linked, repo, string(d), refreshBefore.UnixNano())
		if err != nil {
			return fmt.Errorf("refresh blob link: %w", err)
		}
		if n, _ := res.RowsAffected(); n > 0 {
			return nil
		}
		// Not updated: refreshed meanwhile by another request, or removed.
		err = s.queryRow(ctx, tx, `SELECT rb.created_at FROM repository_blobs rb JOIN repositories r ON r.id = rb.repository_id
			WHERE r.name = ? AND rb.digest = ?`, repo, string(d)).Scan(&linked)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return fmt.Errorf("refresh blob link: %w", err)
		}
		return nil
	})
	return linked, err
}
