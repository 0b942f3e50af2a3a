package metadata

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromNano(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// affected turns "no row changed" into ErrNotFound.
func affected(res sql.Result, err error) error {
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

// isUnique reports whether err is a unique-constraint violation.
func isUnique(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "UNIQUE constraint failed") || strings.Contains(err.Error(), "duplicate key"))
}

// CountUsers implements Accounts.
func (s *SQL) CountUsers(ctx context.Context) (int, error) {
	var n int
	err := s.queryRow(ctx, nil, `SELECT COUNT(*) FROM users`).Scan(&n)
	return n, err
}

// CreateUser implements Accounts.
func (s *SQL) CreateUser(ctx context.Context, u User) error {
	return s.tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		t := now()
		source := u.Source
		if source == "" {
			source = SourceLocal
		}
		if _, err := s.exec(ctx, tx, `INSERT INTO users (name, password_hash, admin, created_at, source, disabled, subject) VALUES (?, ?, ?, ?, ?, ?, ?)`,
			u.Name, u.PasswordHash, boolInt(u.Admin), t, source, boolInt(u.Disabled), u.Subject); err != nil {
			if isUnique(err) {
				return ErrExists
			}
			return fmt.Errorf("create user: %w", err)
		}
		if _, err := s.exec(ctx, tx, `INSERT INTO namespaces (name, public, created_at) VALUES (?, 0, ?)`, u.Name, t); err != nil {
			if isUnique(err) {
				return fmt.Errorf("%w: a namespace named %s", ErrExists, u.Name)
			}
			return fmt.Errorf("create personal namespace: %w", err)
		}
		if _, err := s.exec(ctx, tx, `INSERT INTO members (namespace, username, role) VALUES (?, ?, 'owner')`, u.Name, u.Name); err != nil {
			return fmt.Errorf("own personal namespace: %w", err)
		}
		return nil
	})
}

// GetUser implements Accounts.
func (s *SQL) GetUser(ctx context.Context, name string) (*User, error) {
	u := User{Name: name}
	var admin, disabled int
	var created int64
	err := s.queryRow(ctx, nil, `SELECT password_hash, admin, created_at, source, disabled, subject FROM users WHERE name = ?`, name).
		Scan(&u.PasswordHash, &admin, &created, &u.Source, &disabled, &u.Subject)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("look up user: %w", err)
	}
	u.Admin, u.Created, u.Disabled = admin != 0, fromNano(created), disabled != 0
	return &u, nil
}

// ListUsers implements Accounts.
func (s *SQL) ListUsers(ctx context.Context) ([]User, error) {
	rows, err := s.query(ctx, `SELECT name, admin, created_at, source, disabled FROM users ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	defer rows.Close()
	var out []User
	for rows.Next() {
		var u User
		var admin, disabled int
		var created int64
		if err := rows.Scan(&u.Name, &admin, &created, &u.Source, &disabled); err != nil {
			return nil, fmt.Errorf("list users: %w", err)
		}
		u.Admin, u.Created, u.Disabled = admin != 0, fromNano(created), disabled != 0
		out = append(out, u)
	}
	return out, rows.Err()
}

// DeleteUser implements Accounts.
func (s *SQL) DeleteUser(ctx context.Context, name string) error {
	return s.tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		if _, err := s.exec(ctx, tx, `DELETE FROM refresh_tokens WHERE subject = ?`, name); err != nil {
			return fmt.Errorf("revoke refresh tokens: %w", err)
		}
		if _, err := s.exec(ctx, tx, `DELETE FROM members WHERE username = ?`, name); err != nil {
			return fmt.Errorf("delete memberships: %w", err)
		}
		if _, err := s.exec(ctx, tx, `DELETE FROM login_addresses WHERE account = ?`, name); err != nil {
			return fmt.Errorf("forget login addresses: %w", err)
		}
		if err := affected(s.exec(ctx, tx, `DELETE FROM users WHERE name = ?`, name)); err != nil {
			return err
		}
		return s.revoke(ctx, tx, name)
	})
}

// SetPassword implements Accounts.
func (s *SQL) SetPassword(ctx context.Context, name, hash string) error {
	return s.tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		if err := affected(s.exec(ctx, tx, `UPDATE users SET password_hash = ? WHERE name = ?`, hash, name)); err != nil {
			return err
		}
		if _, err := s.exec(ctx, tx, `DELETE FROM refresh_tokens WHERE subject = ?`, name); err != nil {
			return fmt.Errorf("revoke refresh tokens: %w", err)
		}
		return s.revoke(ctx, tx, name)
	})
}

// CreateNamespace implements Accounts.
func (s *SQL) CreateNamespace(ctx context.Context, ns Namespace) error {
	return s.tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		_, err := s.exec(ctx, tx, `INSERT INTO namespaces (name, public, created_at) VALUES (?, ?, ?)`, ns.Name, boolInt(ns.Public), now())
		if isUnique(err) {
			return ErrExists
		}
		return err
	})
}

// GetNamespace implements Accounts.
func (s *SQL) GetNamespace(ctx context.Context, name string) (*Namespace, error) {
	ns := Namespace{Name: name}
	var public int
	var created int64
	err := s.queryRow(ctx, nil, `SELECT public, created_at FROM namespaces WHERE name = ?`, name).Scan(&public, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("look up namespace: %w", err)
	}
	ns.Public, ns.Created = public != 0, fromNano(created)
	return &ns, nil
}

// ListNamespaces implements Accounts.
func (s *SQL) ListNamespaces(ctx context.Context) ([]Namespace, error) {
	rows, err := s.query(ctx, `SELECT name, public, created_at FROM namespaces ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list namespaces: %w", err)
	}
	defer rows.Close()
	var out []Namespace
	for rows.Next() {
		var ns Namespace
		var public int
		var created int64
		if err := rows.Scan(&ns.Name, &public, &created); err != nil {
			return nil, fmt.Errorf("list namespaces: %w", err)
		}
		ns.Public, ns.Created = public != 0, fromNano(created)
		out = append(out, ns)
	}
	return out, rows.Err()
}

// SetNamespacePublic implements Accounts.
func (s *SQL) SetNamespacePublic(ctx context.Context, name string, public bool) error {
	return s.tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		if err := affected(s.exec(ctx, tx, `UPDATE namespaces SET public = ? WHERE name = ?`, boolInt(public), name)); err != nil || public {
			return err
		}
		// Made private: anonymous tokens (subject "") stop.
		return s.revoke(ctx, tx, "")
	})
}

// DeleteNamespace implements Accounts.
func (s *SQL) DeleteNamespace(ctx context.Context, name string) error {
	return s.tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		// The robots' access tokens stop working and their pull
		// credentials go with them: a robot created again under the same
		// name starts with nothing.
		// Its members' tokens, which may grant access to it, too.
		for _, q := range []string{
			`INSERT INTO revocations (subject, epoch, updated_at) SELECT name, 1, ? FROM robots WHERE namespace = ?
			ON CONFLICT (subject) DO UPDATE SET epoch = revocations.epoch + 1, updated_at = excluded.updated_at`,
			`INSERT INTO revocations (subject, epoch, updated_at) SELECT username, 1, ? FROM members WHERE namespace = ?
			ON CONFLICT (subject) DO UPDATE SET epoch = revocations.epoch + 1, updated_at = excluded.updated_at`,
		} {
			if _, err := s.exec(ctx, tx, q, now(), name); err != nil {
				return fmt.Errorf("delete namespace: revoke tokens: %w", err)
			}
		}
		for _, q := range []string{
			`DELETE FROM refresh_tokens WHERE subject IN (SELECT name FROM robots WHERE namespace = ?)`,
			`DELETE FROM login_addresses WHERE account IN (SELECT name FROM robots WHERE namespace = ?)`,
			`DELETE FROM members WHERE namespace = ?`,
			`DELETE FROM robots WHERE namespace = ?`,
		} {
			if _, err := s.exec(ctx, tx, q, name); err != nil {
				return fmt.Errorf("delete namespace: %w", err)
			}
		}
		return affected(s.exec(ctx, tx, `DELETE FROM namespaces WHERE name = ?`, name))
	})
}

// SetMember implements Accounts.
func (s *SQL) SetMember(ctx context.Context, m Member) error {
	return s.tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		_, err := s.exec(ctx, tx, `INSERT INTO members (namespace, username, role) VALUES (?, ?, ?)
			ON CONFLICT (namespace, username) DO UPDATE SET role = excluded.role`, m.Namespace, m.User, m.Role)
		if err != nil && (strings.Contains(err.Error(), "FOREIGN KEY") || strings.Contains(err.Error(), "foreign key")) {
			return ErrNotFound
		}
		return err
	})
}

// RemoveMember implements Accounts.
func (s *SQL) RemoveMember(ctx context.Context, ns, user string) error {
	return s.tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		if err := affected(s.exec(ctx, tx, `DELETE FROM members WHERE namespace = ? AND username = ?`, ns, user)); err != nil {
			return err
		}
		return s.revoke(ctx, tx, user)
	})
}

// Members implements Accounts.
func (s *SQL) Members(ctx context.Context, ns string) ([]Member, error) {
	rows, err := s.query(ctx, `SELECT username, role FROM members WHERE namespace = ? ORDER BY username`, ns)
	if err != nil {
		return nil, fmt.Errorf("list members: %w", err)
	}
	defer rows.Close()
	var out []Member
	for rows.Next() {
		m := Member{Namespace: ns}
		if err := rows.Scan(&m.User, &m.Role); err != nil {
			return nil, fmt.Errorf("list members: %w", err)
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

// UserRoles implements Accounts.
func (s *SQL) UserRoles(ctx context.Context, user string) (map[string]string, error) {
	rows, err := s.query(ctx, `SELECT namespace, role FROM members WHERE username = ?`, user)
	if err != nil {
		return nil, fmt.Errorf("list roles: %w", err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var ns, role string
		if err := rows.Scan(&ns, &role); err != nil {
			return nil, fmt.Errorf("list roles: %w", err)
		}
		out[ns] = role
	}
	return out, rows.Err()
}

const robotCols = `name, namespace, secret_hash, scopes, actions, expires_at, created_at, last_used_at, revoked`

func scanRobot(row interface{ Scan(...any) error }) (*Robot, error) {
	var r Robot
	var scopes, actions string
	var expires, created, used int64
	var revoked int
	err := row.Scan(&r.Name, &r.Namespace, &r.SecretHash, &scopes, &actions, &expires, &created, &used, &revoked)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("read robot: %w", err)
	}
	r.Scopes, r.Actions = strings.Fields(scopes), strings.Fields(actions)
	r.Expires, r.Created, r.LastUsed, r.Revoked = fromNano(expires), fromNano(created), fromNano(used), revoked != 0
	return &r, nil
}

// CreateRobot implements Accounts.
func (s *SQL) CreateRobot(ctx context.Context, r Robot) error {
	return s.tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		_, err := s.exec(ctx, tx, `INSERT INTO robots (`+robotCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, 0, 0)`,
			r.Name, r.Namespace, r.SecretHash, strings.Join(r.Scopes, " "), strings.Join(r.Actions, " "), unixNano(r.Expires), now())
		if isUnique(err) {
			return ErrExists
		}
		return err
	})
}

// GetRobot implements Accounts.
func (s *SQL) GetRobot(ctx context.Context, name string) (*Robot, error) {
	return scanRobot(s.queryRow(ctx, nil, `SELECT `+robotCols+` FROM robots WHERE name = ?`, name))
}

// ListRobots implements Accounts.
func (s *SQL) ListRobots(ctx context.Context, ns string) ([]Robot, error) {
	out, err := scanAll(scanRobot)(s.query(ctx, `SELECT `+robotCols+` FROM robots WHERE namespace = ? ORDER BY name`, ns))
	if err != nil {
		return nil, fmt.Errorf("list robots: %w", err)
	}
	return out, nil
}

// RevokeRobot implements Accounts.
func (s *SQL) RevokeRobot(ctx context.Context, name string) error {
	return s.tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		if _, err := s.exec(ctx, tx, `DELETE FROM refresh_tokens WHERE subject = ?`, name); err != nil {
			return err
		}
		if err := affected(s.exec(ctx, tx, `UPDATE robots SET revoked = 1 WHERE name = ?`, name)); err != nil {
			return err
		}
		return s.revoke(ctx, tx, name)
	})
}

// TouchRobot implements Accounts.
func (s *SQL) TouchRobot(ctx context.Context, name string, t time.Time) error {
	return s.tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		_, err := s.exec(ctx, tx, `UPDATE robots SET last_used_at = ? WHERE name = ?`, t.UnixNano(), name)
		return err
	})
}
