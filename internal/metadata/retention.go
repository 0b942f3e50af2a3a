package metadata

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/berth-registry/berth/internal/reference"
)

// RetentionPolicy says what to keep in the repositories matching
// Repositories ("team/*" or "team/app"); package retention applies it.
type RetentionPolicy struct {
	ID           int64
	Repositories string
	// KeepLast keeps the newest KeepLast tags (by push time) of those
	// KeepTags does not keep; 0 keeps them all.
	KeepLast int
	// KeepTags are globs of tags that are always kept.
	KeepTags []string
	// UntaggedAfter is how long an untagged manifest is kept (never less
	// than the garbage collection grace period); 0 leaves it to the grace.
	UntaggedAfter time.Duration
	// UnpulledFor deletes tags neither pushed nor pulled for this long; 0
	// never does.
	UnpulledFor time.Duration
	Created     time.Time
}

// TagInfo is a tag with what retention decides on.
type TagInfo struct {
	Name   string
	Digest reference.Digest
	// Pushed is when the tag was last set; LastPulled when its manifest
	// was last pulled (zero if never).
	Pushed     time.Time
	LastPulled time.Time
}

// TagDeletion is a tag to delete if it still points where it pointed when
// retention decided: a push in between keeps it.
type TagDeletion struct {
	Repository string           `json:"repository"`
	Tag        string           `json:"tag"`
	Digest     reference.Digest `json:"digest"`
	Pushed     time.Time        `json:"pushed_at"`
	Reason     string           `json:"reason"`
	PolicyID   int64            `json:"policy_id"`
}

// Pull is a manifest pull to record.
type Pull struct {
	Repository string
	Digest     reference.Digest
	At         time.Time
}

// AddRetentionPolicy stores a policy (ErrExists if its pattern has one).
func (s *SQL) AddRetentionPolicy(ctx context.Context, p RetentionPolicy) (int64, error) {
	var id int64
	err := s.tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		_, err := s.exec(ctx, tx, `INSERT INTO retention_policies (repositories, keep_last, keep_tags, untagged_after, unpulled_for, created_at)
			VALUES (?, ?, ?, ?, ?, ?)`, p.Repositories, p.KeepLast, strings.Join(p.KeepTags, ","), int64(p.UntaggedAfter), int64(p.UnpulledFor), now())
		if isUnique(err) {
			return fmt.Errorf("%w: a retention policy for %s", ErrExists, p.Repositories)
		}
		if err != nil {
			return err
		}
		return s.queryRow(ctx, tx, `SELECT id FROM retention_policies WHERE repositories = ?`, p.Repositories).Scan(&id)
	})
	return id, err
}

// RetentionPolicies lists the policies.
func (s *SQL) RetentionPolicies(ctx context.Context) ([]RetentionPolicy, error) {
	rows, err := s.query(ctx, `SELECT id, repositories, keep_last, keep_tags, untagged_after, unpulled_for, created_at FROM retention_policies ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("list retention policies: %w", err)
	}
	defer rows.Close()
	var out []RetentionPolicy
	for rows.Next() {
		var p RetentionPolicy
		var tags string
		var untagged, unpulled, created int64
		if err := rows.Scan(&p.ID, &p.Repositories, &p.KeepLast, &tags, &untagged, &unpulled, &created); err != nil {
			return nil, fmt.Errorf("list retention policies: %w", err)
		}
		if tags != "" {
			p.KeepTags = strings.Split(tags, ",")
		}
		p.UntaggedAfter, p.UnpulledFor, p.Created = time.Duration(untagged), time.Duration(unpulled), fromNano(created)
		out = append(out, p)
	}
	return out, rows.Err()
}

// DeleteRetentionPolicy removes a policy.
func (s *SQL) DeleteRetentionPolicy(ctx context.Context, id int64) error {
	return s.tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		return affected(s.exec(ctx, tx, `DELETE FROM retention_policies WHERE id = ?`, id))
	})
}

// TagInfos implements Store.
func (s *SQL) TagInfos(ctx context.Context, repo string) ([]TagInfo, error) {
	rows, err := s.query(ctx, `SELECT t.name, t.digest, t.updated_at, m.last_pulled_at FROM tags t
		JOIN repositories r ON r.id = t.repository_id
		JOIN manifests m ON m.repository_id = t.repository_id AND m.digest = t.digest
		WHERE r.name = ? ORDER BY t.updated_at DESC, t.name`, repo)
	if err != nil {
		return nil, fmt.Errorf("list tags of %s: %w", repo, err)
	}
	defer rows.Close()
	var out []TagInfo
	for rows.Next() {
		var t TagInfo
		var d string
		var pushed, pulled int64
		if err := rows.Scan(&t.Name, &d, &pushed, &pulled); err != nil {
			return nil, fmt.Errorf("list tags of %s: %w", repo, err)
		}
		t.Digest, t.Pushed, t.LastPulled = reference.Digest(d), fromNano(pushed), fromNano(pulled)
		out = append(out, t)
	}
	return out, rows.Err()
}

// RecordPulls implements Store.
func (s *SQL) RecordPulls(ctx context.Context, pulls []Pull) error {
	return s.tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		for _, p := range pulls {
			if _, err := s.exec(ctx, tx, `UPDATE manifests SET last_pulled_at = ?
				WHERE repository_id = (SELECT id FROM repositories WHERE name = ?) AND digest = ? AND last_pulled_at < ?`,
				p.At.UnixNano(), p.Repository, string(p.Digest), p.At.UnixNano()); err != nil {
				return fmt.Errorf("record pull: %w", err)
			}
		}
		return nil
	})
}
