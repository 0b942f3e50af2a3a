package metadata

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/berth-registry/berth/internal/reference"
)

// GCManifest is a manifest garbage collection removes.
type GCManifest struct {
	Repository string           `json:"repository"`
	Digest     reference.Digest `json:"digest"`
	Size       int64            `json:"size"`
}

// GCBlob is a blob no repository holds any more.
type GCBlob struct {
	Digest reference.Digest
	Size   int64
}

// GCRequest is what one collection is asked to do.
type GCRequest struct {
	// Before is the grace cutoff: nothing created since is removed.
	Before time.Time
	// DryRun rolls everything back: the plan says what a real run would
	// remove.
	DryRun bool
	// DeleteTags are retention's decisions, applied first in the same
	// transaction (each only if the tag was not pushed again meanwhile).
	DeleteTags []TagDeletion
	// UntaggedSince keeps, per repository, manifests created since the
	// given time (retention's window for untagged manifests).
	UntaggedSince map[string]time.Time
	// Scope, with DryRun, limits the run to the repositories matching this
	// pattern ("team/*" or "team/app"): only their tags and manifests are
	// marked and reported, and blob links and blobs are left out, so that
	// a dry run of one namespace's policy costs what that namespace holds.
	Scope string
}

// GCPlan is what one collection removes from the metadata.
type GCPlan struct {
	// Tags are the retention deletions that were applied.
	Tags      []TagDeletion
	Manifests []GCManifest
	// Unlinked counts repository blob links that no manifest used.
	Unlinked int
	// Blobs are blobs held by no repository, created before the grace
	// period: their records and content go next, one by one.
	Blobs []GCBlob
}

var errDryRun = errors.New("dry run")

// liveManifestsSQLite marks, per repository, every manifest reachable from
// a tag or created after the grace cutoff (or its repository's retention
// window in gc_windows), through index children and referrers (a live
// manifest keeps its referrers).
//
// The two recursive steps each follow one index (manifests_subject and the
// manifest_children key); one step with an OR of both scanned every
// manifest of the repository per live manifest.
const liveManifestsSQLite = `WITH RECURSIVE live(repository_id, digest) AS (
		SELECT repository_id, digest FROM tags
		UNION SELECT repository_id, digest FROM manifests WHERE created_at >= ?
		UNION SELECT m.repository_id, m.digest FROM gc_windows w JOIN manifests m ON m.repository_id = w.repository_id WHERE m.created_at >= w.since
		UNION SELECT m.repository_id, m.digest FROM live l JOIN manifests m ON m.repository_id = l.repository_id AND m.subject = l.digest
		UNION SELECT mc.repository_id, mc.child_digest FROM live l JOIN manifest_children mc ON mc.repository_id = l.repository_id AND mc.manifest_digest = l.digest
	)`

// liveManifestsPostgres is the same marking: PostgreSQL allows one
// recursive reference, so the step joins the live set with the union of
// both kinds of edges (each arm still an index lookup per live row).
const liveManifestsPostgres = `WITH RECURSIVE live(repository_id, digest) AS (
		SELECT repository_id, digest FROM tags
		UNION SELECT repository_id, digest FROM manifests WHERE created_at >= ?
		UNION SELECT m.repository_id, m.digest FROM gc_windows w JOIN manifests m ON m.repository_id = w.repository_id WHERE m.created_at >= w.since
		UNION SELECT e.repository_id, e.child FROM live l CROSS JOIN LATERAL (
			SELECT m.repository_id, m.digest AS child FROM manifests m WHERE m.repository_id = l.repository_id AND m.subject = l.digest
			UNION ALL SELECT mc.repository_id, mc.child_digest FROM manifest_children mc WHERE mc.repository_id = l.repository_id AND mc.manifest_digest = l.digest
		) e
	)`

// CollectGarbage removes, in one transaction, the manifests nothing live
// reaches and the repository blob links no manifest uses, both created
// before the cutoff, and then lists the blobs no repository holds. With
// dryRun the transaction is rolled back: the plan says what a real run
// would remove.
func (s *SQL) CollectGarbage(ctx context.Context, req GCRequest) (*GCPlan, error) {
	plan := &GCPlan{}
	cutoff := req.Before.UnixNano()
	defer s.drop(dropAll, "") // tags, manifests and links it removes
	err := s.tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		*plan = GCPlan{} // a retried transaction starts over
		if err := s.bulkChange(ctx, tx); err != nil {
			return err
		}
		// A scoped dry run (a policy tried by a namespace owner) removes
		// no links and no blobs and is rolled back: it does not stop the
		// registry's pushes with the sweep's lock.
		if req.Scope == "" {
			if err := s.lock(ctx, tx, s.dialect.sweepLock); err != nil {
				return err
			}
		}
		for _, d := range req.DeleteTags {
			res, err := s.exec(ctx, tx, `DELETE FROM tags WHERE repository_id = (SELECT id FROM repositories WHERE name = ?)
				AND name = ? AND digest = ? AND updated_at = ?`, d.Repository, d.Tag, string(d.Digest), d.Pushed.UnixNano())
			if err != nil {
				return fmt.Errorf("retention: delete tag: %w", err)
			}
			if n, _ := res.RowsAffected(); n > 0 {
				plan.Tags = append(plan.Tags, d)
			}
		}
		if err := s.fillWindows(ctx, tx, req.UntaggedSince); err != nil {
			return err
		}
		mark := s.dialect.liveManifests + `
			SELECT m.repository_id, r.name, m.digest, m.size FROM manifests m JOIN repositories r ON r.id = m.repository_id
			WHERE NOT EXISTS (SELECT 1 FROM live l WHERE l.repository_id = m.repository_id AND l.digest = m.digest)
			ORDER BY r.name, m.digest`
		if req.Scope != "" {
			if !req.DryRun {
				return fmt.Errorf("a scoped collection must be a dry run")
			}
			if err := s.fillScope(ctx, tx, req.Scope); err != nil {
				return err
			}
			mark = scopedMarking(mark)
		}
		rows, err := tx.QueryContext(ctx, s.q(mark), cutoff)
		if err != nil {
			return fmt.Errorf("mark manifests: %w", err)
		}
		type key struct {
			id int64
			d  string
		}
		var dead []key
		for rows.Next() {
			var k key
			var m GCManifest
			var dg string
			if err := rows.Scan(&k.id, &m.Repository, &dg, &m.Size); err != nil {
				rows.Close()
				return fmt.Errorf("mark manifests: %w", err)
			}
			k.d, m.Digest = dg, reference.Digest(dg)
			dead = append(dead, k)
			plan.Manifests = append(plan.Manifests, m)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("mark manifests: %w", err)
		}
		if req.Scope != "" {
			return errDryRun // what is in scope is marked; links and blobs are not
		}
		for _, k := range dead {
			for _, q := range []string{
				`DELETE FROM tags WHERE repository_id = ? AND digest = ?`,
				`DELETE FROM manifest_blobs WHERE repository_id = ? AND manifest_digest = ?`,
				`DELETE FROM manifest_children WHERE repository_id = ? AND manifest_digest = ?`,
				`DELETE FROM manifests WHERE repository_id = ? AND digest = ?`,
			} {
				if _, err := s.exec(ctx, tx, q, k.id, k.d); err != nil {
					return fmt.Errorf("sweep manifest: %w", err)
				}
			}
		}
		res, err := s.exec(ctx, tx, `DELETE FROM repository_blobs WHERE created_at < ? AND NOT EXISTS (
			SELECT 1 FROM manifest_blobs mb WHERE mb.repository_id = repository_blobs.repository_id AND mb.blob_digest = repository_blobs.digest)`, cutoff)
		if err != nil {
			return fmt.Errorf("sweep blob links: %w", err)
		}
		n, _ := res.RowsAffected()
		plan.Unlinked = int(n)
		brows, err := tx.QueryContext(ctx, s.q(`SELECT digest, size FROM blobs b WHERE created_at < ?
			AND NOT EXISTS (SELECT 1 FROM repository_blobs rb WHERE rb.digest = b.digest) ORDER BY digest`), cutoff)
		if err != nil {
			return fmt.Errorf("list unreferenced blobs: %w", err)
		}
		defer brows.Close()
		for brows.Next() {
			var b GCBlob
			var dg string
			if err := brows.Scan(&dg, &b.Size); err != nil {
				return fmt.Errorf("list unreferenced blobs: %w", err)
			}
			b.Digest = reference.Digest(dg)
			plan.Blobs = append(plan.Blobs, b)
		}
		if err := brows.Err(); err != nil {
			return err
		}
		if req.DryRun {
			return errDryRun
		}
		return nil
	})
	if err != nil && !errors.Is(err, errDryRun) {
		return nil, err
	}
	return plan, nil
}

// fillWindows loads the retention windows into the connection's temporary
// table gc_windows, which the marking query reads.
func (s *SQL) fillWindows(ctx context.Context, tx *sql.Tx, since map[string]time.Time) error {
	for _, q := range []string{
		`CREATE TEMP TABLE IF NOT EXISTS gc_windows (repository_id BIGINT PRIMARY KEY, since BIGINT NOT NULL)`,
		`DELETE FROM gc_windows`,
	} {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("retention windows: %w", err)
		}
	}
	for repo, t := range since {
		// Not through the statement cache: the temporary table exists
		// only on this transaction's connection.
		if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO gc_windows (repository_id, since) SELECT id, ? FROM repositories WHERE name = ?`), t.UnixNano(), repo); err != nil {
			return fmt.Errorf("retention windows: %w", err)
		}
	}
	return nil
}

// DeleteBlobRecords deletes, in one transaction, the records of those of
// the blobs that no repository holds and that were created before the
// cutoff, and returns them. The caller holds the digests' locks, so that no
// upload or mount links them meanwhile, and deletes their content after.
func (s *SQL) DeleteBlobRecords(ctx context.Context, ds []reference.Digest, before time.Time) ([]reference.Digest, error) {
	var deleted []reference.Digest
	err := s.tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		deleted = deleted[:0]
		for _, d := range ds {
			res, err := s.exec(ctx, tx, `DELETE FROM blobs WHERE digest = ? AND created_at < ?
				AND NOT EXISTS (SELECT 1 FROM repository_blobs rb WHERE rb.digest = blobs.digest)`, string(d), before.UnixNano())
			if err != nil {
				return fmt.Errorf("delete blob record: %w", err)
			}
			if n, _ := res.RowsAffected(); n > 0 {
				deleted = append(deleted, d)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return deleted, nil
}

// scopeFilter restricts a marking query's rows to the repositories in the
// temporary table gc_scope.
const scopeFilter = `repository_id IN (SELECT repository_id FROM gc_scope)`

// scopedMarking limits the marking query q to the repositories in
// gc_scope: its starting sets (tags, recent manifests, retention windows)
// and its result. The recursive steps stay within a repository, so they
// need no filter.
func scopedMarking(q string) string {
	for _, r := range [][2]string{
		{`SELECT repository_id, digest FROM tags`, `SELECT repository_id, digest FROM tags WHERE ` + scopeFilter},
		{`FROM manifests WHERE created_at >= ?`, `FROM manifests WHERE created_at >= ? AND ` + scopeFilter},
		{`WHERE m.created_at >= w.since`, `WHERE m.created_at >= w.since AND w.` + scopeFilter},
		{`WHERE NOT EXISTS (SELECT 1 FROM live l`, `WHERE m.` + scopeFilter + ` AND NOT EXISTS (SELECT 1 FROM live l`},
	} {
		if !strings.Contains(q, r[0]) {
			panic("metadata: marking query changed; update scopedMarking: " + r[0])
		}
		q = strings.Replace(q, r[0], r[1], 1)
	}
	return q
}

// fillScope loads the ids of the repositories matching pattern into the
// connection's temporary table gc_scope: a prefix pattern by a range of
// the name index, not a scan.
func (s *SQL) fillScope(ctx context.Context, tx *sql.Tx, pattern string) error {
	for _, q := range []string{
		`CREATE TEMP TABLE IF NOT EXISTS gc_scope (repository_id BIGINT PRIMARY KEY)`,
		`DELETE FROM gc_scope`,
	} {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("collection scope: %w", err)
		}
	}
	q, args := `INSERT INTO gc_scope (repository_id) SELECT id FROM repositories WHERE name = ?`, []any{pattern}
	if prefix, ok := strings.CutSuffix(pattern, "/*"); ok {
		// Names under prefix/ sort between "prefix/" and "prefix0" ('0'
		// follows '/').
		q, args = `INSERT INTO gc_scope (repository_id) SELECT id FROM repositories WHERE name > ? AND name < ?`, []any{prefix + "/", prefix + "0"}
	}
	if _, err := tx.ExecContext(ctx, s.q(q), args...); err != nil {
		return fmt.Errorf("collection scope: %w", err)
	}
	return nil
}

// BlobRecords calls fn for every blob record (digest and size), for the
// consistency check.
func (s *SQL) BlobRecords(ctx context.Context, fn func(d reference.Digest, size int64) error) error {
	rows, err := s.query(ctx, `SELECT digest, size FROM blobs`)
	if err != nil {
		return fmt.Errorf("list blob records: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var d string
		var size int64
		if err := rows.Scan(&d, &size); err != nil {
			return fmt.Errorf("read blob record: %w", err)
		}
		if err := fn(reference.Digest(d), size); err != nil {
			return err
		}
	}
	return rows.Err()
}
