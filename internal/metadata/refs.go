package metadata

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/berth-registry/berth/internal/reference"
)

// refBatch is how many references of a manifest one statement checks or
// records: a manifest's layers cost one round trip, not one each, and the
// placeholders stay far below either database's limit.
const refBatch = 500

// Reference checks of PutManifest: the digests and sizes of those of the
// listed references (%s: the placeholders) the repository holds, locked
// against a concurrent deletion.
const (
	checkBlobRefs  = `SELECT rb.digest, b.size FROM repository_blobs rb JOIN blobs b ON b.digest = rb.digest WHERE rb.repository_id = ? AND rb.digest IN (%s)`
	checkChildRefs = `SELECT digest, size FROM manifests WHERE repository_id = ? AND digest IN (%s)`
)

// checkRefs checks that repository id holds each of refs with the size its
// descriptor claims: the first missing one in refs' order is a
// *MissingReferenceError of kind what ("blob" or "manifest"), unless lazy;
// query is checkBlobRefs or checkChildRefs, lock its locking clause.
func (s *SQL) checkRefs(ctx context.Context, tx *sql.Tx, query, lock string, id int64, refs []Ref, what string, lazy bool) error {
	sizes := make(map[reference.Digest]int64, len(refs))
	for start := 0; start < len(refs); start += refBatch {
		part := refs[start:min(start+refBatch, len(refs))]
		args := make([]any, 0, len(part)+1)
		args = append(args, id)
		for _, r := range part {
			args = append(args, string(r.Digest))
		}
		rows, err := tx.QueryContext(ctx, s.q(fmt.Sprintf(query, marks(len(part)))+lock), args...)
		if err != nil {
			return fmt.Errorf("check %s references: %w", what, err)
		}
		for rows.Next() {
			var d string
			var size int64
			if err := rows.Scan(&d, &size); err != nil {
				rows.Close()
				return fmt.Errorf("check %s references: %w", what, err)
			}
			sizes[reference.Digest(d)] = size
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return fmt.Errorf("check %s references: %w", what, err)
		}
	}
	prefix := ""
	if what == "manifest" {
		prefix = "manifest "
	}
	for _, r := range refs {
		size, ok := sizes[r.Digest]
		switch {
		case !ok && lazy:
		case !ok:
			return &MissingReferenceError{Digest: r.Digest, What: what}
		case size != r.Size:
			return fmt.Errorf("%w: %s%s is %d bytes, descriptor says %d", ErrSizeMismatch, prefix, r.Digest, size, r.Size)
		}
	}
	return nil
}

// recordRefs records that manifest d of repository id references refs, in
// table (manifest_blobs or manifest_children) and its column col.
func (s *SQL) recordRefs(ctx context.Context, tx *sql.Tx, table, col string, id int64, d reference.Digest, refs []Ref) error {
	for start := 0; start < len(refs); start += refBatch {
		part := refs[start:min(start+refBatch, len(refs))]
		args := make([]any, 0, 3*len(part))
		for _, r := range part {
			args = append(args, id, string(d), string(r.Digest))
		}
		q := `INSERT INTO ` + table + ` (repository_id, manifest_digest, ` + col + `) VALUES ` +
			strings.TrimSuffix(strings.Repeat("(?, ?, ?), ", len(part)), ", ") + ` ON CONFLICT DO NOTHING`
		if _, err := tx.ExecContext(ctx, s.q(q), args...); err != nil {
			return fmt.Errorf("record %s: %w", table, err)
		}
	}
	return nil
}

// marks returns n comma-separated placeholders.
func marks(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}
