package metadata

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"time"
)

// SetUserGroups implements Accounts.
func (s *SQL) SetUserGroups(ctx context.Context, user string, groups []string) (bool, error) {
	want := slices.Clone(groups)
	slices.Sort(want)
	want = slices.Compact(want)
	// Read first, off the write path: most sign-ins find the same groups.
	have, err := s.UserGroups(ctx, user)
	if err != nil {
		return false, err
	}
	if slices.Equal(have, want) {
		return false, nil
	}
	err = s.tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		if _, err := s.exec(ctx, tx, `DELETE FROM user_groups WHERE username = ?`, user); err != nil {
			return fmt.Errorf("replace the groups of %s: %w", user, err)
		}
		for _, g := range want {
			// A concurrent sign-in of the same person may have inserted
			// the same rows (READ COMMITTED): no error for that.
			if _, err := s.exec(ctx, tx, `INSERT INTO user_groups (username, grp) VALUES (?, ?) ON CONFLICT DO NOTHING`, user, g); err != nil {
				return fmt.Errorf("replace the groups of %s: %w", user, err)
			}
		}
		// Rights may have shrunk: tokens issued before stop working.
		return s.revoke(ctx, tx, user)
	})
	return err == nil, err
}

// UserGroups implements Accounts.
func (s *SQL) UserGroups(ctx context.Context, user string) ([]string, error) {
	out, err := strs(s.query(ctx, `SELECT grp FROM user_groups WHERE username = ? ORDER BY grp`, user))
	if err != nil {
		return nil, fmt.Errorf("read the groups of %s: %w", user, err)
	}
	return out, nil
}

const mappingCols = `m.id, m.grp, m.namespace, m.role, m.created_at`

func scanMapping(row interface{ Scan(...any) error }) (*GroupMapping, error) {
	var m GroupMapping
	var created int64
	if err := row.Scan(&m.ID, &m.Group, &m.Namespace, &m.Role, &created); err != nil {
		return nil, err
	}
	m.Created = fromNano(created)
	return &m, nil
}

// GroupRoles implements Accounts.
func (s *SQL) GroupRoles(ctx context.Context, user string) ([]GroupMapping, error) {
	out, err := scanAll(scanMapping)(s.query(ctx, `SELECT `+mappingCols+` FROM group_mappings m
		JOIN user_groups g ON g.grp = m.grp WHERE g.username = ? ORDER BY m.namespace, m.grp`, user))
	if err != nil {
		return nil, fmt.Errorf("read the group roles of %s: %w", user, err)
	}
	return out, nil
}

// GroupMappings implements Accounts.
func (s *SQL) GroupMappings(ctx context.Context) ([]GroupMapping, error) {
	out, err := scanAll(scanMapping)(s.query(ctx, `SELECT `+mappingCols+` FROM group_mappings m ORDER BY m.grp, m.namespace`))
	if err != nil {
		return nil, fmt.Errorf("list group mappings: %w", err)
	}
	return out, nil
}

// AddGroupMapping implements Accounts.
func (s *SQL) AddGroupMapping(ctx context.Context, m GroupMapping) (int64, error) {
	var id int64
	err := s.tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		err := s.queryRow(ctx, tx, `INSERT INTO group_mappings (grp, namespace, role, created_at) VALUES (?, ?, ?, ?)
			ON CONFLICT (grp, namespace) DO UPDATE SET role = excluded.role RETURNING id`, m.Group, m.Namespace, m.Role, now()).Scan(&id)
		if err != nil {
			if strings.Contains(strings.ToLower(err.Error()), "foreign key") {
				return ErrNotFound
			}
			return fmt.Errorf("add group mapping: %w", err)
		}
		return s.revokeGroup(ctx, tx, m.Group)
	})
	return id, err
}

// DeleteGroupMapping implements Accounts.
func (s *SQL) DeleteGroupMapping(ctx context.Context, id int64) error {
	return s.tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var group string
		err := s.queryRow(ctx, tx, `DELETE FROM group_mappings WHERE id = ? RETURNING grp`, id).Scan(&group)
		if err == sql.ErrNoRows {
			return ErrNotFound
		}
		if err != nil {
			return fmt.Errorf("delete group mapping %d: %w", id, err)
		}
		return s.revokeGroup(ctx, tx, group)
	})
}

// revokeGroup raises the revocation epoch of every member of group.
func (s *SQL) revokeGroup(ctx context.Context, tx *sql.Tx, group string) error {
	_, err := s.exec(ctx, tx, `INSERT INTO revocations (subject, epoch, updated_at) SELECT username, 1, ? FROM user_groups WHERE grp = ?
		ON CONFLICT (subject) DO UPDATE SET epoch = revocations.epoch + 1, updated_at = excluded.updated_at`, now(), group)
	if err != nil {
		return fmt.Errorf("revoke the tokens of group %s: %w", group, err)
	}
	return nil
}

// SetUserDisabled implements Accounts.
func (s *SQL) SetUserDisabled(ctx context.Context, name string, disabled bool) error {
	return s.tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		if err := affected(s.exec(ctx, tx, `UPDATE users SET disabled = ? WHERE name = ?`, boolInt(disabled), name)); err != nil {
			return err
		}
		if !disabled {
			return nil
		}
		// Everything the person was given ends for good (refresh tokens,
		// pull credentials, CLI sessions; console sessions by the epoch):
		// enabling them again does not bring a leaked one back.
		if _, err := s.exec(ctx, tx, `DELETE FROM refresh_tokens WHERE subject = ?`, name); err != nil {
			return err
		}
		return s.revoke(ctx, tx, name)
	})
}

// SaveProviderToken implements Accounts.
func (s *SQL) SaveProviderToken(ctx context.Context, user string, sealed string, fresh bool) error {
	updated := "excluded.updated_at"
	if !fresh {
		updated = "provider_tokens.updated_at"
	}
	err := s.tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		_, err := s.exec(ctx, tx, `INSERT INTO provider_tokens (username, sealed, updated_at, lease_until) VALUES (?, ?, ?, 0)
			ON CONFLICT (username) DO UPDATE SET sealed = excluded.sealed, updated_at = `+updated+`, lease_until = 0`, user, sealed, now())
		return err
	})
	if err != nil {
		return fmt.Errorf("save the provider token of %s: %w", user, err)
	}
	return nil
}

// ClaimProviderToken implements Accounts.
func (s *SQL) ClaimProviderToken(ctx context.Context, user string, at, leaseUntil, freshAfter time.Time) (string, error) {
	var sealed string
	err := s.tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		err := s.queryRow(ctx, tx, `UPDATE provider_tokens SET lease_until = ? WHERE username = ? AND lease_until < ? AND updated_at < ? RETURNING sealed`,
			leaseUntil.UnixNano(), user, at.UnixNano(), freshAfter.UnixNano()).Scan(&sealed)
		if err != sql.ErrNoRows {
			return err
		}
		var n int
		if err := s.queryRow(ctx, tx, `SELECT COUNT(*) FROM provider_tokens WHERE username = ?`, user).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			return ErrNotFound
		}
		return ErrBusy
	})
	if err != nil && err != ErrNotFound && err != ErrBusy {
		return "", fmt.Errorf("claim the provider token of %s: %w", user, err)
	}
	return sealed, err
}

// ReleaseProviderToken implements Accounts.
func (s *SQL) ReleaseProviderToken(ctx context.Context, user string) error {
	err := s.tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		_, err := s.exec(ctx, tx, `UPDATE provider_tokens SET lease_until = 0 WHERE username = ?`, user)
		return err
	})
	if err != nil {
		return fmt.Errorf("release the provider token of %s: %w", user, err)
	}
	return nil
}
