package metadata

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/berth-registry/berth/internal/blobstore"
	"github.com/berth-registry/berth/internal/reference"
)

var _ blobstore.S3Index = (*SQL)(nil)

// blobLocationsPage is how many locations BlobLocations reads per query:
// no connection (nor, with SQLite, WAL snapshot) is held while the
// callback runs, which may itself write.
const blobLocationsPage = 1000

// UploadState implements blobstore.S3Index.
func (s *SQL) UploadState(ctx context.Context, id string) ([]byte, string, error) {
	var state []byte
	var rev string
	err := s.queryRow(ctx, nil, `SELECT state, rev FROM s3_uploads WHERE id = ?`, id).Scan(&state, &rev)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, "", blobstore.ErrUploadNotFound
	}
	if err != nil {
		return nil, "", fmt.Errorf("s3 index: read upload state: %w", err)
	}
	return state, rev, nil
}

// UploadPending implements blobstore.S3Index.
func (s *SQL) UploadPending(ctx context.Context, id, rev string) ([]byte, error) {
	var pending []byte
	var cur string
	err := s.queryRow(ctx, nil, `SELECT pending, rev FROM s3_uploads WHERE id = ?`, id).Scan(&pending, &cur)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, blobstore.ErrUploadNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("s3 index: read pending bytes: %w", err)
	}
	if cur != rev {
		return nil, blobstore.ErrStateChanged
	}
	if len(pending) == 0 {
		return nil, nil
	}
	return pending, nil
}

// PutUploadState implements blobstore.S3Index. A create is an insert that
// does nothing when the upload exists; an update is conditioned on the
// revision in its WHERE clause, so that of concurrent writers at the same
// revision one changes the row and the others find it changed (PostgreSQL
// re-checks the condition on the row version the winner committed).
func (s *SQL) PutUploadState(ctx context.Context, id string, state []byte, pending *[]byte, rev, ifRev string) error {
	if state == nil {
		state = []byte{} // the column is NOT NULL; nil would be NULL
	}
	var res sql.Result
	var err error
	t := now()
	switch {
	case ifRev == "":
		var p []byte
		if pending != nil {
			p = *pending
		}
		res, err = s.execOne(ctx, `INSERT INTO s3_uploads (id, state, pending, rev, modified) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (id) DO NOTHING`, id, state, p, rev, t)
	case pending == nil:
		res, err = s.execOne(ctx, `UPDATE s3_uploads SET state = ?, rev = ?, modified = ? WHERE id = ? AND rev = ?`,
			state, rev, t, id, ifRev)
	default:
		res, err = s.execOne(ctx, `UPDATE s3_uploads SET state = ?, rev = ?, modified = ?, pending = ? WHERE id = ? AND rev = ?`,
			state, rev, t, *pending, id, ifRev)
	}
	if err != nil {
		return fmt.Errorf("s3 index: write upload state: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("s3 index: write upload state: %w", err)
	}
	if n == 0 {
		return blobstore.ErrStateChanged
	}
	return nil
}

// DeleteUploadState implements blobstore.S3Index.
func (s *SQL) DeleteUploadState(ctx context.Context, id, ifRev string) error {
	q, args := `DELETE FROM s3_uploads WHERE id = ?`, []any{id}
	if ifRev != "" {
		q, args = q+` AND rev = ?`, append(args, ifRev)
	}
	res, err := s.execOne(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("s3 index: delete upload state: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil || n > 0 || ifRev == "" {
		return err
	}
	// Nothing deleted at that revision: gone already, or moved on.
	var one int
	switch err := s.queryRow(ctx, nil, `SELECT 1 FROM s3_uploads WHERE id = ?`, id).Scan(&one); {
	case errors.Is(err, sql.ErrNoRows):
		return nil
	case err != nil:
		return fmt.Errorf("s3 index: delete upload state: %w", err)
	}
	return blobstore.ErrStateChanged
}

// StaleUploadStates implements blobstore.S3Index.
func (s *SQL) StaleUploadStates(ctx context.Context, before time.Time) ([]string, error) {
	ids, err := s.names(ctx, `SELECT id FROM s3_uploads WHERE modified < ? ORDER BY modified`, before.UnixNano())
	if err != nil {
		return nil, fmt.Errorf("s3 index: stale uploads: %w", err)
	}
	return ids, nil
}

// BlobLocation implements blobstore.S3Index.
func (s *SQL) BlobLocation(ctx context.Context, d reference.Digest) (string, int64, error) {
	var key string
	var size int64
	err := s.queryRow(ctx, nil, `SELECT key, size FROM s3_blobs WHERE digest = ?`, string(d)).Scan(&key, &size)
	if errors.Is(err, sql.ErrNoRows) {
		return "", 0, blobstore.ErrNotFound
	}
	if err != nil {
		return "", 0, fmt.Errorf("s3 index: look up blob %s: %w", d, err)
	}
	return key, size, nil
}

// AddBlobLocation implements blobstore.S3Index. The insert does nothing
// when d has a location already (on PostgreSQL, after waiting for a
// concurrent insert of d to commit), and the select that follows, a
// statement of its own and so with a snapshot taken after that commit,
// reads the location that stays.
func (s *SQL) AddBlobLocation(ctx context.Context, d reference.Digest, key string, size int64) (string, error) {
	if _, err := s.execOne(ctx, `INSERT INTO s3_blobs (digest, key, size, created) VALUES (?, ?, ?, ?)
		ON CONFLICT (digest) DO NOTHING`, string(d), key, size, now()); err != nil {
		return "", fmt.Errorf("s3 index: record blob %s: %w", d, err)
	}
	var got string
	if err := s.queryRow(ctx, nil, `SELECT key FROM s3_blobs WHERE digest = ?`, string(d)).Scan(&got); err != nil {
		return "", fmt.Errorf("s3 index: read blob %s: %w", d, err)
	}
	return got, nil
}

// DeleteBlobLocation implements blobstore.S3Index.
func (s *SQL) DeleteBlobLocation(ctx context.Context, d reference.Digest) error {
	if _, err := s.execOne(ctx, `DELETE FROM s3_blobs WHERE digest = ?`, string(d)); err != nil {
		return fmt.Errorf("s3 index: delete blob %s: %w", d, err)
	}
	return nil
}

// BlobLocations implements blobstore.S3Index. It reads the locations in
// pages by digest, so fn may write to the index (a location added or
// removed meanwhile may or may not be seen).
func (s *SQL) BlobLocations(ctx context.Context, fn func(d reference.Digest, key string, size int64, created time.Time) error) error {
	type location struct {
		digest, key   string
		size, created int64
	}
	after := ""
	for {
		rows, err := s.query(ctx, `SELECT digest, key, size, created FROM s3_blobs WHERE digest > ? ORDER BY digest LIMIT ?`,
			after, blobLocationsPage)
		if err != nil {
			return fmt.Errorf("s3 index: list blobs: %w", err)
		}
		var page []location
		for rows.Next() {
			var l location
			if err := rows.Scan(&l.digest, &l.key, &l.size, &l.created); err != nil {
				rows.Close()
				return fmt.Errorf("s3 index: list blobs: %w", err)
			}
			page = append(page, l)
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return fmt.Errorf("s3 index: list blobs: %w", err)
		}
		for _, l := range page {
			if err := fn(reference.Digest(l.digest), l.key, l.size, time.Unix(0, l.created)); err != nil {
				return err
			}
		}
		if len(page) < blobLocationsPage {
			return nil
		}
		after = page[len(page)-1].digest
	}
}
