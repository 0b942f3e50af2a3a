package metadata

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/berth-registry/berth/internal/reference"
)

// SQL implements Store on a SQL database. Writes go through one pool and
// reads through another, so that an embedded database with a single writer
// never makes readers wait.
type SQL struct {
	w, r    *sql.DB
	dialect dialect
	// group batches write transactions when the database has a single
	// writer (SQLite); nil runs each in its own transaction.
	group *groupCommit

	wst, rst stmts
	// inst traces and observes transactions and reads (Instrument).
	inst instruments
	// cache answers manifest and blob-link reads from memory (PostgreSQL
	// only; nil otherwise), kept coherent by listen.
	cache *readCache
	// stopListen ends the cache's listener; nil without one.
	stopListen func()
}

func (s *SQL) q(query string) string { return s.dialect.placeholders(query) }

// migrate applies the schema migrations that have not run yet.
func (s *SQL) migrate(ctx context.Context) error {
	if s.dialect.migrationLock != "" {
		conn, err := s.w.Conn(ctx)
		if err != nil {
			return fmt.Errorf("migrations: %w", err)
		}
		defer conn.Close()
		if _, err := conn.ExecContext(ctx, s.dialect.migrationLock); err != nil {
			return fmt.Errorf("migrations: lock: %w", err)
		}
		defer conn.ExecContext(context.WithoutCancel(ctx), s.dialect.migrationUnlock) //nolint:errcheck // closing the session unlocks too
	}
	if _, err := s.w.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY)`); err != nil {
		return fmt.Errorf("create migrations table: %w", err)
	}
	for i, m := range migrations {
		version := i + 1
		err := s.tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
			var n int
			if err := s.queryRow(ctx, tx, `SELECT COUNT(*) FROM schema_migrations WHERE version = ?`, version).Scan(&n); err != nil {
				return err
			}
			if n > 0 {
				return nil
			}
			for _, stmt := range statements(s.dialect.render(m)) {
				if strings.TrimSpace(stmt) == "" {
					continue
				}
				if _, err := tx.ExecContext(ctx, stmt); err != nil {
					return fmt.Errorf("%.60s: %w", strings.TrimSpace(stmt), err)
				}
			}
			_, err := s.exec(ctx, tx, `INSERT INTO schema_migrations (version) VALUES (?)`, version)
			return err
		})
		if err != nil {
			return fmt.Errorf("migration %d: %w", version, err)
		}
	}
	return nil
}

const manifestCols = `m.digest, m.media_type, m.artifact_type, m.subject, m.annotations, m.payload, m.created_at`

// stmts caches prepared statements of one pool by query text, so that hot
// queries are parsed once, not on every request.
type stmts struct {
	db *sql.DB
	mu sync.Mutex
	m  map[string]*sql.Stmt
}

// get returns the prepared statement of q. The mutex is not held while
// preparing: preparing needs a free connection of the pool, which callers
// holding connections while they wait for the mutex would never give back.
func (c *stmts) get(ctx context.Context, q string) (*sql.Stmt, error) {
	c.mu.Lock()
	st, ok := c.m[q]
	c.mu.Unlock()
	if ok {
		return st, nil
	}
	st, err := c.db.PrepareContext(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("prepare %q: %w", q, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if prev, ok := c.m[q]; ok { // prepared meanwhile by another caller
		st.Close()
		return prev, nil
	}
	if c.m == nil {
		c.m = map[string]*sql.Stmt{}
	}
	c.m[q] = st
	return st, nil
}

func (c *stmts) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, st := range c.m {
		st.Close()
	}
	c.m = nil
}

// exec runs a write statement in tx.
func (s *SQL) exec(ctx context.Context, tx *sql.Tx, q string, args ...any) (sql.Result, error) {
	if !s.dialect.cacheStatements {
		return tx.ExecContext(ctx, s.dialect.placeholders(q), args...)
	}
	st, err := s.wst.get(ctx, s.dialect.placeholders(q))
	if err != nil {
		return nil, err
	}
	return tx.StmtContext(ctx, st).ExecContext(ctx, args...)
}

// errRow is a *sql.Row stand-in that reports a preparation error.
type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }

// queryRow runs a single-row query in tx, or on the read pool when tx is nil.
func (s *SQL) queryRow(ctx context.Context, tx *sql.Tx, q string, args ...any) (row interface{ Scan(...any) error }) {
	if tx == nil && s.inst.tracer != nil {
		var span trace.Span
		if ctx, span = s.inst.start(ctx, opQuery); span != nil {
			defer func() { row = tracedRow{row, span} }()
		}
	}
	if !s.dialect.cacheStatements {
		if tx != nil {
			return tx.QueryRowContext(ctx, s.dialect.placeholders(q), args...)
		}
		return s.r.QueryRowContext(ctx, s.dialect.placeholders(q), args...)
	}
	c := &s.rst
	if tx != nil {
		c = &s.wst
	}
	st, err := c.get(ctx, s.dialect.placeholders(q))
	if err != nil {
		return errRow{err}
	}
	if tx != nil {
		st = tx.StmtContext(ctx, st)
	}
	return st.QueryRowContext(ctx, args...)
}

// query runs a query on the read pool.
func (s *SQL) query(ctx context.Context, q string, args ...any) (_ *sql.Rows, err error) {
	if s.inst.tracer != nil {
		var span trace.Span
		ctx, span = s.inst.start(ctx, opQuery)
		defer func() { end(span, err) }()
	}
	if !s.dialect.cacheStatements {
		return s.r.QueryContext(ctx, s.dialect.placeholders(q), args...)
	}
	st, err := s.rst.get(ctx, s.dialect.placeholders(q))
	if err != nil {
		return nil, err
	}
	return st.QueryContext(ctx, args...)
}

// tx runs fn in a write transaction. fn must use the context it is given:
// it is not cancelled with the request, because with group commit one
// cancelled statement would roll back the writes of others.
//
// Events attached to ctx (WithEvents) go into the webhook outbox in the
// same transaction, after fn succeeds: a change is never committed without
// its events, nor an event without its change.
func (s *SQL) tx(ctx context.Context, fn func(context.Context, *sql.Tx) error) (err error) {
	if evs := eventsOf(ctx); len(evs) > 0 {
		change := fn
		fn = func(ctx context.Context, tx *sql.Tx) error {
			if err := change(ctx, tx); err != nil {
				return err
			}
			return s.insertEvents(ctx, tx, evs)
		}
	}
	return s.write(ctx, func(ctx context.Context) error {
		if s.group != nil {
			return s.group.do(ctx, fn)
		}
		return s.tx1(ctx, fn)
	})
}

// write runs one write, a transaction or a single statement: traced and
// observed, and with one writer at a time (SQLite, group commit) as it
// is; otherwise (PostgreSQL) whole even if the request is cancelled, and
// again after a serialization failure or a deadlock.
func (s *SQL) write(ctx context.Context, run func(context.Context) error) (err error) {
	if s.inst.on() {
		var span trace.Span
		var start time.Time
		ctx, span, start = s.inst.beginTx(ctx)
		defer func() { s.inst.endTx(span, start, err) }()
	}
	if s.group != nil {
		return run(ctx)
	}
	ctx = context.WithoutCancel(ctx) // as with group commit: no half-cancelled writes
	for attempt := 1; ; attempt++ {
		err := run(ctx)
		if err == nil || s.dialect.retryable == nil || !s.dialect.retryable(err) || attempt == 5 {
			return err
		}
		s.inst.retried()
		time.Sleep(time.Duration(attempt*attempt) * 5 * time.Millisecond)
	}
}

// execOne runs a write of one statement. On PostgreSQL it is sent alone
// in autocommit mode, one round trip where a transaction costs a BEGIN and
// a COMMIT besides; on SQLite (one writer, group commit), and when events
// ride the context, it is a transaction like any other.
func (s *SQL) execOne(ctx context.Context, q string, args ...any) (res sql.Result, err error) {
	if s.dialect.name != "postgres" || len(eventsOf(ctx)) > 0 {
		err = s.tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
			res, err = s.exec(ctx, tx, q, args...)
			return err
		})
		return res, err
	}
	err = s.write(ctx, func(ctx context.Context) error {
		var err error
		res, err = s.w.ExecContext(ctx, s.dialect.placeholders(q), args...)
		return err
	})
	return res, err
}

func (s *SQL) tx1(ctx context.Context, fn func(context.Context, *sql.Tx) error) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	if err := fn(ctx, tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

func now() int64 { return time.Now().UnixNano() }

// lock runs one of the dialect's locking statements at the start of tx;
// an empty one (SQLite) does nothing.
func (s *SQL) lock(ctx context.Context, tx *sql.Tx, stmt string) error {
	if stmt == "" {
		return nil
	}
	if _, err := tx.ExecContext(ctx, stmt); err != nil {
		return fmt.Errorf("lock: %w", err)
	}
	return nil
}

// repoID returns the id of a repository, creating it when create is set.
func (s *SQL) repoID(ctx context.Context, tx *sql.Tx, name string, create bool) (int64, error) {
	if create {
		if _, err := s.exec(ctx, tx, `INSERT INTO repositories (name, created_at) VALUES (?, ?) ON CONFLICT (name) DO NOTHING`, name, now()); err != nil {
			return 0, fmt.Errorf("create repository: %w", err)
		}
	}
	var id int64
	err := s.queryRow(ctx, tx, `SELECT id FROM repositories WHERE name = ?`, name).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, ErrNotFound
	}
	if err != nil {
		return 0, fmt.Errorf("look up repository: %w", err)
	}
	return id, nil
}

// RepositoryBlob implements Store.
func (s *SQL) RepositoryBlob(ctx context.Context, repo string, d reference.Digest) (int64, error) {
	size, _, err := s.blobLink(ctx, repo, d)
	return size, err
}

// blobLink returns the size of a blob linked into a repository and the
// link's time (unix nanoseconds), from the cache when it holds them.
func (s *SQL) blobLink(ctx context.Context, repo string, d reference.Digest) (size, linked int64, err error) {
	var gen uint64
	if s.cache != nil {
		if size, linked, ok := s.cache.link(repo, string(d)); ok {
			return size, linked, nil
		}
		gen = s.cache.generation()
	}
	err = s.queryRow(ctx, nil, `SELECT b.size, rb.created_at FROM repositories r
		JOIN repository_blobs rb ON rb.repository_id = r.id
		JOIN blobs b ON b.digest = rb.digest
		WHERE r.name = ? AND rb.digest = ?`, repo, string(d)).Scan(&size, &linked)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, 0, ErrNotFound
	}
	if err != nil {
		return 0, 0, fmt.Errorf("look up blob: %w", err)
	}
	if s.cache != nil {
		s.cache.putLink(gen, repo, string(d), size, linked)
	}
	return size, linked, nil
}

// BlobSize implements Store.
func (s *SQL) BlobSize(ctx context.Context, d reference.Digest) (int64, error) {
	var size int64
	err := s.queryRow(ctx, nil, `SELECT b.size FROM blobs b WHERE b.digest = ?
		AND EXISTS (SELECT 1 FROM repository_blobs rb WHERE rb.digest = b.digest)`, string(d)).Scan(&size)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, ErrNotFound
	}
	if err != nil {
		return 0, fmt.Errorf("look up blob: %w", err)
	}
	return size, nil
}

// BlobRepositories implements Store.
func (s *SQL) BlobRepositories(ctx context.Context, d reference.Digest, limit int) ([]string, error) {
	return s.names(ctx, `SELECT r.name FROM repository_blobs rb JOIN repositories r ON r.id = rb.repository_id
		WHERE rb.digest = ? ORDER BY r.name LIMIT ?`, string(d), limit)
}

// ManifestRepositories lists up to limit repositories holding a manifest,
// by name.
func (s *SQL) ManifestRepositories(ctx context.Context, d reference.Digest, limit int) ([]string, error) {
	return s.names(ctx, `SELECT r.name FROM manifests m JOIN repositories r ON r.id = m.repository_id
		WHERE m.digest = ? ORDER BY r.name LIMIT ?`, string(d), limit)
}

// LinkBlob implements Store. On PostgreSQL the transaction is one call of
// berth_link_blob (schema.go), the same statements in one round trip.
func (s *SQL) LinkBlob(ctx context.Context, repo string, d reference.Digest, size int64, uploadID string) error {
	if s.dialect.name == "postgres" && len(eventsOf(ctx)) == 0 {
		if _, err := s.execOne(ctx, `SELECT berth_link_blob(?, ?, ?, ?, ?)`, repo, string(d), size, now(), uploadID); err != nil {
			return fmt.Errorf("link blob: %w", err)
		}
		return nil
	}
	return s.tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		if err := s.lock(ctx, tx, s.dialect.referenceLock); err != nil {
			return err
		}
		if uploadID != "" {
			if _, err := s.exec(ctx, tx, `DELETE FROM uploads WHERE id = ?`, uploadID); err != nil {
				return fmt.Errorf("end upload: %w", err)
			}
		}
		id, err := s.repoID(ctx, tx, repo, true)
		if err != nil {
			return err
		}
		t := now()
		if _, err := s.exec(ctx, tx, `INSERT INTO blobs (digest, size, created_at) VALUES (?, ?, ?) ON CONFLICT (digest) DO UPDATE SET created_at = excluded.created_at`, string(d), size, t); err != nil {
			return fmt.Errorf("record blob: %w", err)
		}
		if _, err := s.exec(ctx, tx, `INSERT INTO repository_blobs (repository_id, digest, created_at) VALUES (?, ?, ?) ON CONFLICT (repository_id, digest) DO UPDATE SET created_at = excluded.created_at`, id, string(d), t); err != nil {
			return fmt.Errorf("link blob: %w", err)
		}
		return nil
	})
}

// UnlinkBlob implements Store. The link is deleted before the guard
// looks: the deletion waits for a push that holds the link (FOR SHARE on
// PostgreSQL), and the guard then sees that push's manifest and tags.
func (s *SQL) UnlinkBlob(ctx context.Context, repo string, d reference.Digest, guard Guard) error {
	defer s.drop(dropLink, string(d))
	return s.tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		id, err := s.repoID(ctx, tx, repo, false)
		if err != nil {
			return err
		}
		res, err := s.exec(ctx, tx, `DELETE FROM repository_blobs WHERE repository_id = ? AND digest = ?`, id, string(d))
		if err != nil {
			return fmt.Errorf("unlink blob: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return ErrNotFound
		}
		return s.guard(ctx, tx, guard, reachBlob, id, string(d))
	})
}

// Seeds of tagsReaching: the manifests of a repository that use a blob,
// or the manifest itself.
const (
	reachBlob     = `SELECT repository_id, manifest_digest FROM manifest_blobs WHERE repository_id = ? AND blob_digest = ?`
	reachManifest = `SELECT repository_id, digest FROM manifests WHERE repository_id = ? AND digest = ?`
)

// tagsReaching lists the tags of a repository whose manifest is one of the
// seeds or an index reaching one through its children, transitively: one
// recursive query that, like garbage collection's marking, follows an
// index per step (manifest_children by child, then tags by digest).
const tagsReaching = `WITH RECURSIVE up(repository_id, digest) AS (
		%s
		UNION SELECT mc.repository_id, mc.manifest_digest FROM up u
			JOIN manifest_children mc ON mc.repository_id = u.repository_id AND mc.child_digest = u.digest
	)
	SELECT DISTINCT t.name FROM up u JOIN tags t ON t.repository_id = u.repository_id AND t.digest = u.digest ORDER BY t.name`

// guard runs a deletion's guard, if any, on the tags reaching the seed.
func (s *SQL) guard(ctx context.Context, tx *sql.Tx, guard Guard, seed string, id int64, d string) error {
	if guard == nil {
		return nil
	}
	tags, err := strs(tx.QueryContext(ctx, s.q(fmt.Sprintf(tagsReaching, seed)), id, d))
	if err != nil {
		return fmt.Errorf("tags reaching %s: %w", d, err)
	}
	return guard(tags)
}

func scanManifest(row interface{ Scan(...any) error }, repo string) (*Manifest, error) {
	var m Manifest
	var dg, subject, annotations string
	var created int64
	err := row.Scan(&dg, &m.MediaType, &m.ArtifactType, &subject, &annotations, &m.Payload, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("read manifest: %w", err)
	}
	m.Repository, m.Digest, m.Subject = repo, reference.Digest(dg), reference.Digest(subject)
	m.Created = time.Unix(0, created)
	if annotations != "" {
		if err := json.Unmarshal([]byte(annotations), &m.Annotations); err != nil {
			return nil, fmt.Errorf("decode annotations: %w", err)
		}
	}
	return &m, nil
}

// GetManifest implements Store.
func (s *SQL) GetManifest(ctx context.Context, repo, ref string) (*Manifest, error) {
	var gen uint64
	if s.cache != nil {
		if m, ok := s.cache.manifest(repo, ref); ok {
			return m, nil
		}
		gen = s.cache.generation()
	}
	var m *Manifest
	var err error
	if reference.IsDigest(ref) {
		m, err = scanManifest(s.queryRow(ctx, nil, `SELECT `+manifestCols+` FROM repositories r
			JOIN manifests m ON m.repository_id = r.id
			WHERE r.name = ? AND m.digest = ?`, repo, ref), repo)
	} else {
		m, err = scanManifest(s.queryRow(ctx, nil, `SELECT `+manifestCols+` FROM repositories r
			JOIN tags t ON t.repository_id = r.id
			JOIN manifests m ON m.repository_id = t.repository_id AND m.digest = t.digest
			WHERE r.name = ? AND t.name = ?`, repo, ref), repo)
	}
	if err == nil && s.cache != nil {
		s.cache.putManifest(gen, repo, ref, m)
	}
	return m, err
}

// PutManifest implements Store.
func (s *SQL) PutManifest(ctx context.Context, m *PutManifest) error {
	annotations := ""
	if len(m.Annotations) > 0 {
		b, err := json.Marshal(m.Annotations)
		if err != nil {
			return fmt.Errorf("encode annotations: %w", err)
		}
		annotations = string(b)
	}
	defer func() {
		for _, tag := range m.Tags {
			s.drop(dropTag, tag)
		}
	}()
	return s.tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		if err := s.lock(ctx, tx, s.dialect.referenceLock); err != nil {
			return err
		}
		id, err := s.repoID(ctx, tx, m.Repository, true)
		if err != nil {
			return err
		}
		if err := s.checkRefs(ctx, tx, checkBlobRefs, s.dialect.shareLinks, id, m.Blobs, "blob", m.Lazy); err != nil {
			return err
		}
		if err := s.checkRefs(ctx, tx, checkChildRefs, s.dialect.shareRow, id, m.Children, "manifest", m.Lazy); err != nil {
			return err
		}
		t := now()
		res, err := s.exec(ctx, tx, `INSERT INTO manifests (repository_id, digest, media_type, artifact_type, subject, annotations, size, payload, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (repository_id, digest) DO UPDATE SET created_at = excluded.created_at`,
			id, string(m.Digest), m.MediaType, m.ArtifactType, string(m.Subject), annotations, len(m.Payload), m.Payload, t)
		if err != nil {
			return fmt.Errorf("insert manifest: %w", err)
		}
		if n, _ := res.RowsAffected(); n > 0 {
			if err := s.recordRefs(ctx, tx, "manifest_blobs", "blob_digest", id, m.Digest, m.Blobs); err != nil {
				return err
			}
			if err := s.recordRefs(ctx, tx, "manifest_children", "child_digest", id, m.Digest, m.Children); err != nil {
				return err
			}
		}
		for _, tag := range m.Protect {
			var cur string
			err := s.queryRow(ctx, tx, `SELECT digest FROM tags WHERE repository_id = ? AND name = ?`, id, tag).Scan(&cur)
			if err == nil && cur != string(m.Digest) {
				return fmt.Errorf("%w: %s points to %s", ErrTagImmutable, tag, cur)
			}
		}
		protected := map[string]bool{}
		for _, tag := range m.Protect {
			protected[tag] = true
		}
		for _, tag := range m.Tags {
			if protected[tag] {
				// Set only if absent or already here: with several
				// writers (PostgreSQL), two first pushes of a protected
				// tag both pass the check above, and the second must not
				// move it.
				res, err := s.exec(ctx, tx, `INSERT INTO tags (repository_id, name, digest, updated_at) VALUES (?, ?, ?, ?)
					ON CONFLICT (repository_id, name) DO UPDATE SET updated_at = excluded.updated_at WHERE tags.digest = excluded.digest`, id, tag, string(m.Digest), t)
				if err != nil {
					return fmt.Errorf("set tag: %w", err)
				}
				if n, _ := res.RowsAffected(); n == 0 {
					return fmt.Errorf("%w: %s was just set to another manifest", ErrTagImmutable, tag)
				}
				continue
			}
			if _, err := s.exec(ctx, tx, `INSERT INTO tags (repository_id, name, digest, updated_at) VALUES (?, ?, ?, ?)
				ON CONFLICT (repository_id, name) DO UPDATE SET digest = excluded.digest, updated_at = excluded.updated_at`, id, tag, string(m.Digest), t); err != nil {
				return fmt.Errorf("set tag: %w", err)
			}
		}
		return nil
	})
}

// DeleteManifest implements Store. With a guard, the manifest's row is
// locked first (PostgreSQL): a push of an index listing it, or of a tag
// pointing to it, either commits before and is seen by the guard, or
// waits and then finds the manifest gone.
func (s *SQL) DeleteManifest(ctx context.Context, repo string, d reference.Digest, guard Guard) error {
	var tags []string // the tags that pointed to it, dropped from the read cache with it
	defer func() {
		s.drop(dropManifest, string(d))
		for _, tag := range tags {
			s.drop(dropTag, tag)
		}
	}()
	return s.tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		tags = nil // a retried transaction starts over
		id, err := s.repoID(ctx, tx, repo, false)
		if err != nil {
			return err
		}
		if guard != nil {
			var one int
			err := s.queryRow(ctx, tx, `SELECT 1 FROM manifests WHERE repository_id = ? AND digest = ?`+s.dialect.lockRow, id, string(d)).Scan(&one)
			if errors.Is(err, sql.ErrNoRows) {
				return ErrNotFound
			}
			if err != nil {
				return fmt.Errorf("lock manifest: %w", err)
			}
			if err := s.guard(ctx, tx, guard, reachManifest, id, string(d)); err != nil {
				return err
			}
		}
		if tags, err = strs(tx.QueryContext(ctx, s.q(`DELETE FROM tags WHERE repository_id = ? AND digest = ? RETURNING name`), id, string(d))); err != nil {
			return fmt.Errorf("delete tags: %w", err)
		}
		for _, q := range []string{
			`DELETE FROM manifest_blobs WHERE repository_id = ? AND manifest_digest = ?`,
			`DELETE FROM manifest_children WHERE repository_id = ? AND manifest_digest = ?`,
		} {
			if _, err := s.exec(ctx, tx, q, id, string(d)); err != nil {
				return fmt.Errorf("delete manifest references: %w", err)
			}
		}
		res, err := s.exec(ctx, tx, `DELETE FROM manifests WHERE repository_id = ? AND digest = ?`, id, string(d))
		if err != nil {
			return fmt.Errorf("delete manifest: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return ErrNotFound
		}
		return nil
	})
}

// DeleteTag implements Store.
func (s *SQL) DeleteTag(ctx context.Context, repo, tag string) error {
	defer s.drop(dropTag, tag)
	return s.tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		id, err := s.repoID(ctx, tx, repo, false)
		if err != nil {
			return err
		}
		res, err := s.exec(ctx, tx, `DELETE FROM tags WHERE repository_id = ? AND name = ?`, id, tag)
		if err != nil {
			return fmt.Errorf("delete tag: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return ErrNotFound
		}
		return nil
	})
}

// Tags implements Store.
func (s *SQL) Tags(ctx context.Context, repo, last string, n int) ([]string, bool, error) {
	var id int64
	err := s.queryRow(ctx, nil, `SELECT id FROM repositories WHERE name = ?`, repo).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("look up repository: %w", err)
	}
	tags, err := s.names(ctx, `SELECT name FROM tags WHERE repository_id = ? AND name > ? ORDER BY name LIMIT ?`, id, last, n)
	return tags, true, err
}

// TagsOf implements Store.
func (s *SQL) TagsOf(ctx context.Context, repo string, d reference.Digest) ([]string, error) {
	return s.names(ctx, `SELECT t.name FROM tags t JOIN repositories r ON r.id = t.repository_id
		WHERE r.name = ? AND t.digest = ? ORDER BY t.name`, repo, string(d))
}

// Repositories implements Store.
func (s *SQL) Repositories(ctx context.Context, last string, n int) ([]string, error) {
	return s.names(ctx, `SELECT name FROM repositories r WHERE name > ?
		AND (EXISTS (SELECT 1 FROM manifests m WHERE m.repository_id = r.id) OR EXISTS (SELECT 1 FROM repository_blobs b WHERE b.repository_id = r.id))
		ORDER BY name LIMIT ?`, last, n)
}

func (s *SQL) names(ctx context.Context, q string, args ...any) ([]string, error) {
	out, err := strs(s.query(ctx, q, args...))
	if err != nil {
		return nil, fmt.Errorf("list: %w", err)
	}
	return out, nil
}

// scanAll returns a reader of a query's rows, each read with scan (never
// nil), that closes them; it takes the query's results as they come:
// scanAll(scanRobot)(s.query(...)).
func scanAll[T any](scan func(interface{ Scan(...any) error }) (*T, error)) func(*sql.Rows, error) ([]T, error) {
	return func(rows *sql.Rows, err error) ([]T, error) {
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		out := []T{}
		for rows.Next() {
			v, err := scan(rows)
			if err != nil {
				return nil, err
			}
			out = append(out, *v)
		}
		return out, rows.Err()
	}
}

// strs reads a query's rows of one text column (never nil) and closes
// them; it takes the query's results as they come.
func strs(rows *sql.Rows, err error) ([]string, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []string{}
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// Referrers implements Store.
func (s *SQL) Referrers(ctx context.Context, repo string, d reference.Digest, artifactType string) ([]Descriptor, error) {
	q := `SELECT m.digest, m.media_type, m.artifact_type, m.size, m.annotations FROM repositories r
		JOIN manifests m ON m.repository_id = r.id WHERE r.name = ? AND m.subject = ?`
	args := []any{repo, string(d)}
	if artifactType != "" {
		q += ` AND m.artifact_type = ?`
		args = append(args, artifactType)
	}
	rows, err := s.query(ctx, q+` ORDER BY m.created_at, m.digest`, args...)
	if err != nil {
		return nil, fmt.Errorf("list referrers: %w", err)
	}
	defer rows.Close()
	out := []Descriptor{}
	for rows.Next() {
		var r Descriptor
		var dg, annotations string
		if err := rows.Scan(&dg, &r.MediaType, &r.ArtifactType, &r.Size, &annotations); err != nil {
			return nil, fmt.Errorf("list referrers: %w", err)
		}
		r.Digest = reference.Digest(dg)
		if annotations != "" {
			if err := json.Unmarshal([]byte(annotations), &r.Annotations); err != nil {
				return nil, fmt.Errorf("decode annotations: %w", err)
			}
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// CreateUpload implements Store. The count and the insert are one
// statement (one round trip on PostgreSQL); with several writers
// (PostgreSQL) two sessions started at the same moment may both take the
// last place.
func (s *SQL) CreateUpload(ctx context.Context, u Upload, limit int) error {
	q := `INSERT INTO uploads (id, repository, started_at, token_id, namespace) VALUES (?, ?, ?, ?, ?)`
	args := []any{u.ID, u.Repository, u.Started.UnixNano(), u.TokenID, u.Namespace}
	if limit > 0 {
		q = `INSERT INTO uploads (id, repository, started_at, token_id, namespace)
			SELECT ?, ?, ?, ?, ? WHERE (SELECT COUNT(*) FROM uploads WHERE namespace = ?) < ?`
		args = append(args, u.Namespace, limit)
	}
	res, err := s.execOne(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("record upload: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("record upload: %w", err)
	} else if n == 0 {
		return ErrTooManyUploads
	}
	return nil
}

// GetUpload implements Store.
func (s *SQL) GetUpload(ctx context.Context, id string) (*Upload, error) {
	u := Upload{ID: id}
	var started int64
	err := s.queryRow(ctx, nil, `SELECT repository, started_at, token_id FROM uploads WHERE id = ?`, id).Scan(&u.Repository, &started, &u.TokenID)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("look up upload: %w", err)
	}
	u.Started = time.Unix(0, started)
	return &u, nil
}

// DeleteUpload implements Store.
func (s *SQL) DeleteUpload(ctx context.Context, id string) error {
	return s.tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		if _, err := s.exec(ctx, tx, `DELETE FROM uploads WHERE id = ?`, id); err != nil {
			return fmt.Errorf("delete upload: %w", err)
		}
		return nil
	})
}

// UploadsBefore implements Store.
func (s *SQL) UploadsBefore(ctx context.Context, t time.Time) ([]Upload, error) {
	rows, err := s.query(ctx, `SELECT id, repository, started_at FROM uploads WHERE started_at < ? ORDER BY started_at`, t.UnixNano())
	if err != nil {
		return nil, fmt.Errorf("list uploads: %w", err)
	}
	defer rows.Close()
	var out []Upload
	for rows.Next() {
		var u Upload
		var started int64
		if err := rows.Scan(&u.ID, &u.Repository, &started); err != nil {
			return nil, fmt.Errorf("list uploads: %w", err)
		}
		u.Started = time.Unix(0, started)
		out = append(out, u)
	}
	return out, rows.Err()
}

// Ping implements Store.
func (s *SQL) Ping(ctx context.Context) error { return s.r.PingContext(ctx) }

// Close implements Store.
func (s *SQL) Close() error {
	if s.stopListen != nil {
		s.stopListen()
	}
	if s.group != nil {
		s.group.close()
	}
	s.wst.close()
	s.rst.close()
	if s.r == s.w {
		return s.w.Close()
	}
	return errors.Join(s.r.Close(), s.w.Close())
}

// SchemaVersion returns the number of the last migration applied.
func (s *SQL) SchemaVersion(ctx context.Context) (int, error) {
	var v int
	if err := s.queryRow(ctx, nil, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&v); err != nil {
		return 0, fmt.Errorf("schema version: %w", err)
	}
	return v, nil
}
