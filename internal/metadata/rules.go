package metadata

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// ImmutableRule makes the tags matching Tags (a glob) in the repositories
// matching Repositories ("team/*" or "team/app") immutable.
type ImmutableRule struct {
	ID           int64
	Repositories string
	Tags         string
	Created      time.Time
}

// Rules is the metadata seam for quotas and tag rules.
type Rules interface {
	// SetQuota sets a namespace's quota in bytes (0 removes it).
	SetQuota(ctx context.Context, ns string, bytes int64) error
	// Quota returns a namespace's quota, 0 when it has none.
	Quota(ctx context.Context, ns string) (int64, error)
	// NamespaceUsage returns the bytes the namespace's repositories hold
	// (their distinct blobs plus the payloads of their manifests), and
	// whether it holds blob d already.
	NamespaceUsage(ctx context.Context, ns string, d string) (used int64, holds bool, err error)
	AddImmutableRule(ctx context.Context, r ImmutableRule) (int64, error)
	ImmutableRules(ctx context.Context) ([]ImmutableRule, error)
	DeleteImmutableRule(ctx context.Context, id int64) error
	// AddRetentionPolicy stores a policy; one per repository pattern
	// (ErrExists).
	AddRetentionPolicy(ctx context.Context, p RetentionPolicy) (int64, error)
	RetentionPolicies(ctx context.Context) ([]RetentionPolicy, error)
	DeleteRetentionPolicy(ctx context.Context, id int64) error
}

// SetQuota implements Rules.
func (s *SQL) SetQuota(ctx context.Context, ns string, bytes int64) error {
	return s.tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		if bytes <= 0 {
			_, err := s.exec(ctx, tx, `DELETE FROM quotas WHERE namespace = ?`, ns)
			return err
		}
		_, err := s.exec(ctx, tx, `INSERT INTO quotas (namespace, bytes) VALUES (?, ?) ON CONFLICT (namespace) DO UPDATE SET bytes = excluded.bytes`, ns, bytes)
		return err
	})
}

// Quota implements Rules.
func (s *SQL) Quota(ctx context.Context, ns string) (int64, error) {
	var n int64
	err := s.queryRow(ctx, nil, `SELECT bytes FROM quotas WHERE namespace = ?`, ns).Scan(&n)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read quota: %w", err)
	}
	return n, nil
}

// inNamespace selects the repository ids of a namespace: the repository
// named ns and those under ns/ (no LIKE: names may hold '_').
const inNamespace = `SELECT id FROM repositories WHERE name = ? OR substr(name, 1, length(CAST(? AS TEXT)) + 1) = CAST(? AS TEXT) || '/'`

// NamespaceUsage implements Rules.
func (s *SQL) NamespaceUsage(ctx context.Context, ns, d string) (int64, bool, error) {
	var used int64
	var holds int
	err := s.queryRow(ctx, nil, `SELECT
		COALESCE((SELECT SUM(b.size) FROM blobs b WHERE b.digest IN (SELECT rb.digest FROM repository_blobs rb WHERE rb.repository_id IN (`+inNamespace+`))), 0)
		+ COALESCE((SELECT SUM(m.size) FROM manifests m WHERE m.repository_id IN (`+inNamespace+`)), 0),
		(SELECT COUNT(*) FROM repository_blobs rb WHERE rb.digest = ? AND rb.repository_id IN (`+inNamespace+`))`,
		ns, ns, ns, ns, ns, ns, d, ns, ns, ns).Scan(&used, &holds)
	if err != nil {
		return 0, false, fmt.Errorf("namespace usage: %w", err)
	}
	return used, holds > 0, nil
}

// AddImmutableRule implements Rules.
func (s *SQL) AddImmutableRule(ctx context.Context, r ImmutableRule) (int64, error) {
	var id int64
	err := s.tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		if _, err := s.exec(ctx, tx, `INSERT INTO immutable_rules (repositories, tags, created_at) VALUES (?, ?, ?)`, r.Repositories, r.Tags, now()); err != nil {
			return err
		}
		return s.queryRow(ctx, tx, `SELECT MAX(id) FROM immutable_rules`).Scan(&id)
	})
	return id, err
}

// ImmutableRules implements Rules.
func (s *SQL) ImmutableRules(ctx context.Context) ([]ImmutableRule, error) {
	rows, err := s.query(ctx, `SELECT id, repositories, tags, created_at FROM immutable_rules ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("list immutable rules: %w", err)
	}
	defer rows.Close()
	var out []ImmutableRule
	for rows.Next() {
		var r ImmutableRule
		var created int64
		if err := rows.Scan(&r.ID, &r.Repositories, &r.Tags, &created); err != nil {
			return nil, err
		}
		r.Created = fromNano(created)
		out = append(out, r)
	}
	return out, rows.Err()
}

// DeleteImmutableRule implements Rules.
func (s *SQL) DeleteImmutableRule(ctx context.Context, id int64) error {
	return s.tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		return affected(s.exec(ctx, tx, `DELETE FROM immutable_rules WHERE id = ?`, id))
	})
}
