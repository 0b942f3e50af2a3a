package metadata

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

const personalTokenCols = `id, owner, owner_created, name, hash, scopes, actions, expires_at, created_at, last_used_at, revoked`

func scanPersonalToken(row interface{ Scan(...any) error }) (*PersonalToken, error) {
	var t PersonalToken
	var scopes, actions string
	var ownerCreated, expires, created, used int64
	var revoked int
	err := row.Scan(&t.ID, &t.Owner, &ownerCreated, &t.Name, &t.Hash, &scopes, &actions, &expires, &created, &used, &revoked)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("read personal token: %w", err)
	}
	t.Scopes, t.Actions = strings.Fields(scopes), strings.Fields(actions)
	t.OwnerCreated, t.Expires, t.Created, t.LastUsed = fromNano(ownerCreated), fromNano(expires), fromNano(created), fromNano(used)
	t.Revoked = revoked != 0
	return &t, nil
}

// CreatePersonalToken implements Accounts.
func (s *SQL) CreatePersonalToken(ctx context.Context, t PersonalToken) (int64, error) {
	var id int64
	err := s.tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		err := s.queryRow(ctx, tx, `INSERT INTO personal_tokens (owner, owner_created, name, hash, scopes, actions, expires_at, created_at, last_used_at, revoked)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, 0) RETURNING id`,
			t.Owner, unixNano(t.OwnerCreated), t.Name, t.Hash, strings.Join(t.Scopes, " "), strings.Join(t.Actions, " "), unixNano(t.Expires), now()).Scan(&id)
		if isUnique(err) {
			return ErrExists
		}
		if err != nil && strings.Contains(strings.ToLower(err.Error()), "foreign key") {
			return ErrNotFound
		}
		return err
	})
	return id, err
}

// PersonalToken implements Accounts.
func (s *SQL) PersonalToken(ctx context.Context, hash string) (*PersonalToken, error) {
	return scanPersonalToken(s.queryRow(ctx, nil, `SELECT `+personalTokenCols+` FROM personal_tokens WHERE hash = ?`, hash))
}

// PersonalTokens implements Accounts.
func (s *SQL) PersonalTokens(ctx context.Context, owner string) ([]PersonalToken, error) {
	out, err := scanAll(scanPersonalToken)(s.query(ctx, `SELECT `+personalTokenCols+` FROM personal_tokens WHERE owner = ? ORDER BY created_at DESC, id DESC`, owner))
	if err != nil {
		return nil, fmt.Errorf("list personal tokens: %w", err)
	}
	return out, nil
}

// RevokePersonalToken implements Accounts.
func (s *SQL) RevokePersonalToken(ctx context.Context, owner string, id int64) error {
	return s.tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		if err := affected(s.exec(ctx, tx, `UPDATE personal_tokens SET revoked = 1 WHERE owner = ? AND id = ?`, owner, id)); err != nil {
			return err
		}
		// The access tokens it was traded for stop too.
		return s.revoke(ctx, tx, owner)
	})
}

// TouchPersonalToken implements Accounts.
func (s *SQL) TouchPersonalToken(ctx context.Context, id int64, t time.Time) error {
	return s.tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		_, err := s.exec(ctx, tx, `UPDATE personal_tokens SET last_used_at = ? WHERE id = ?`, unixNano(t), id)
		return err
	})
}
