package metadata

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Mirror is a pull-through cache of an upstream registry, kept under a
// namespace of its own.
type Mirror struct {
	Name      string
	Namespace string
	// Upstream is the upstream registry's base URL.
	Upstream string
	// Username and Password authenticate to the upstream ("" anonymous).
	Username, Password string
	// TagTTL is how long a cached tag is served before it is checked
	// against the upstream again.
	TagTTL time.Duration
	// DockerHub makes the mirror Docker Hub's: repository names without a
	// berth namespace, and ?ns=docker.io, resolve to it.
	DockerHub bool
	// Hosts are the registry hosts (containerd's ?ns=) the mirror serves.
	Hosts     []string
	CreatedBy string
	Created   time.Time
}

const mirrorCols = `name, namespace, upstream, username, password, tag_ttl_ms, docker_hub, hosts, created_by, created_at`

func scanMirror(row interface{ Scan(...any) error }) (*Mirror, error) {
	var m Mirror
	var ttl, created int64
	var hub int
	var hosts string
	if err := row.Scan(&m.Name, &m.Namespace, &m.Upstream, &m.Username, &m.Password, &ttl, &hub, &hosts, &m.CreatedBy, &created); err != nil {
		return nil, err
	}
	m.TagTTL, m.DockerHub, m.Created = time.Duration(ttl)*time.Millisecond, hub != 0, time.Unix(0, created)
	if hosts != "" {
		m.Hosts = strings.Split(hosts, ",")
	}
	return &m, nil
}

func mirrorArgs(m *Mirror) []any {
	hub := 0
	if m.DockerHub {
		hub = 1
	}
	return []any{m.Name, m.Namespace, m.Upstream, m.Username, m.Password, m.TagTTL.Milliseconds(), hub, strings.Join(m.Hosts, ",")}
}

// AddMirror records a mirror (ErrExists if its name or namespace is taken).
func (s *SQL) AddMirror(ctx context.Context, m Mirror) error {
	return s.tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		_, err := s.exec(ctx, tx, `INSERT INTO mirrors (`+mirrorCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			append(mirrorArgs(&m), m.CreatedBy, now())...)
		if isUnique(err) {
			return fmt.Errorf("%w: a mirror named %s or of namespace %s", ErrExists, m.Name, m.Namespace)
		}
		if err != nil {
			return fmt.Errorf("insert mirror: %w", err)
		}
		return nil
	})
}

// UpdateMirror changes a mirror's upstream, credentials, TTL and hosts (its
// name and namespace stay); ErrNotFound when there is none of that name.
func (s *SQL) UpdateMirror(ctx context.Context, m Mirror) error {
	return s.tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		a := mirrorArgs(&m)
		res, err := s.exec(ctx, tx, `UPDATE mirrors SET upstream = ?, username = ?, password = ?, tag_ttl_ms = ?, docker_hub = ?, hosts = ? WHERE name = ?`,
			append(a[2:], m.Name)...)
		if err != nil {
			return fmt.Errorf("update mirror: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return ErrNotFound
		}
		return nil
	})
}

// Mirrors lists the mirrors by name.
func (s *SQL) Mirrors(ctx context.Context) ([]Mirror, error) {
	out, err := scanAll(scanMirror)(s.query(ctx, `SELECT `+mirrorCols+` FROM mirrors ORDER BY name`))
	if err != nil {
		return nil, fmt.Errorf("list mirrors: %w", err)
	}
	return out, nil
}

// RemoveMirror deletes a mirror and its tag checks; what it cached stays
// until deleted or collected. ErrNotFound when there is none of that name.
func (s *SQL) RemoveMirror(ctx context.Context, name string) error {
	return s.tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var ns string
		err := s.queryRow(ctx, tx, `SELECT namespace FROM mirrors WHERE name = ?`, name).Scan(&ns)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return fmt.Errorf("look up mirror: %w", err)
		}
		if _, err := s.exec(ctx, tx, `DELETE FROM mirror_tags WHERE repository >= ? AND repository < ?`, ns+"/", ns+"0"); err != nil {
			return fmt.Errorf("remove tag checks: %w", err)
		}
		if _, err := s.exec(ctx, tx, `DELETE FROM mirrors WHERE name = ?`, name); err != nil {
			return fmt.Errorf("remove mirror: %w", err)
		}
		return nil
	})
}

// TagChecked returns when a mirrored tag was last checked against its
// upstream (the zero time when never).
func (s *SQL) TagChecked(ctx context.Context, repo, tag string) (time.Time, error) {
	var at int64
	err := s.queryRow(ctx, nil, `SELECT checked_at FROM mirror_tags WHERE repository = ? AND tag = ?`, repo, tag).Scan(&at)
	if errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("read tag check: %w", err)
	}
	return time.Unix(0, at), nil
}

// SetTagChecked records that a mirrored tag was checked at t.
func (s *SQL) SetTagChecked(ctx context.Context, repo, tag string, t time.Time) error {
	return s.tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		_, err := s.exec(ctx, tx, `INSERT INTO mirror_tags (repository, tag, checked_at) VALUES (?, ?, ?)
			ON CONFLICT (repository, tag) DO UPDATE SET checked_at = excluded.checked_at`, repo, tag, t.UnixNano())
		if err != nil {
			return fmt.Errorf("record tag check: %w", err)
		}
		return nil
	})
}
