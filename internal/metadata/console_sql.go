package metadata

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// ConsoleSession is a signed-in web console session.
type ConsoleSession struct {
	IDHash string // hex SHA-256 of the session id in the cookie
	// Subject is the account signed in (a user name).
	Subject string
	// Epoch is the account's revocation epoch at sign-in: the session
	// ends when the account's epoch has moved past it.
	Epoch int64
	// CSRF is the token that state-changing requests of the session
	// must carry.
	CSRF string
	// Created is the sign-in time, LastSeen the last use; the session is
	// valid until Expires (exclusive). Stored to the nanosecond.
	Created, Expires, LastSeen time.Time
}

// CreateConsoleSession stores a new session (ErrExists if its IDHash is
// taken).
func (s *SQL) CreateConsoleSession(ctx context.Context, cs ConsoleSession) error {
	return s.tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		_, err := s.exec(ctx, tx, `INSERT INTO console_sessions (id_hash, subject, epoch, csrf, created, expires, last_seen)
			VALUES (?, ?, ?, ?, ?, ?, ?)`,
			cs.IDHash, cs.Subject, cs.Epoch, cs.CSRF, unixNano(cs.Created), unixNano(cs.Expires), unixNano(cs.LastSeen))
		if isUnique(err) {
			return ErrExists
		}
		if err != nil {
			return fmt.Errorf("create console session: %w", err)
		}
		return nil
	})
}

// ConsoleSession returns the session unless it is unknown or expired at now (ErrNotFound).
// A session expires at its Expires time: it is valid while now is before it.
func (s *SQL) ConsoleSession(ctx context.Context, idHash string, now time.Time) (*ConsoleSession, error) {
	cs := ConsoleSession{IDHash: idHash}
	var created, expires, lastSeen int64
	err := s.queryRow(ctx, nil, `SELECT subject, epoch, csrf, created, expires, last_seen FROM console_sessions
		WHERE id_hash = ? AND expires > ?`, idHash, now.UnixNano()).
		Scan(&cs.Subject, &cs.Epoch, &cs.CSRF, &created, &expires, &lastSeen)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("look up console session: %w", err)
	}
	cs.Created, cs.Expires, cs.LastSeen = fromNano(created), fromNano(expires), fromNano(lastSeen)
	return &cs, nil
}

// TouchConsoleSession sets last_seen and expires (sliding expiry); ErrNotFound if gone.
// A session already expired at lastSeen counts as gone: it is not revived.
func (s *SQL) TouchConsoleSession(ctx context.Context, idHash string, lastSeen, expires time.Time) error {
	return s.tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		err := affected(s.exec(ctx, tx, `UPDATE console_sessions SET last_seen = ?, expires = ? WHERE id_hash = ? AND expires > ?`,
			unixNano(lastSeen), unixNano(expires), idHash, lastSeen.UnixNano()))
		if err != nil && !errors.Is(err, ErrNotFound) {
			return fmt.Errorf("touch console session: %w", err)
		}
		return err
	})
}

// DeleteConsoleSession removes a session (sign-out); a session already
// gone is no error.
func (s *SQL) DeleteConsoleSession(ctx context.Context, idHash string) error {
	return s.tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		if _, err := s.exec(ctx, tx, `DELETE FROM console_sessions WHERE id_hash = ?`, idHash); err != nil {
			return fmt.Errorf("delete console session: %w", err)
		}
		return nil
	})
}

// PruneConsoleSessions deletes the sessions expired at now (those
// ConsoleSession no longer returns) and returns how many it deleted.
func (s *SQL) PruneConsoleSessions(ctx context.Context, now time.Time) (int64, error) {
	var n int64
	err := s.tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err := s.exec(ctx, tx, `DELETE FROM console_sessions WHERE expires <= ?`, now.UnixNano())
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("prune console sessions: %w", err)
	}
	return n, nil
}
