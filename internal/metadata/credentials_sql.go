package metadata

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// revoke raises subject's revocation epoch in tx: access tokens issued to
// it before stop working on every replica (see RevocationEpochs).
func (s *SQL) revoke(ctx context.Context, tx *sql.Tx, subject string) error {
	_, err := s.exec(ctx, tx, `INSERT INTO revocations (subject, epoch, updated_at) VALUES (?, 1, ?)
		ON CONFLICT (subject) DO UPDATE SET epoch = revocations.epoch + 1, updated_at = excluded.updated_at`, subject, now())
	if err != nil {
		return fmt.Errorf("revoke tokens of %s: %w", subject, err)
	}
	return nil
}

// RevocationEpoch implements Accounts.
func (s *SQL) RevocationEpoch(ctx context.Context, subject string) (int64, error) {
	var epoch int64
	err := s.queryRow(ctx, nil, `SELECT epoch FROM revocations WHERE subject = ?`, subject).Scan(&epoch)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read revocation of %s: %w", subject, err)
	}
	return epoch, nil
}

// RevokeTokens implements Accounts.
func (s *SQL) RevokeTokens(ctx context.Context, subject string) error {
	return s.tx(ctx, func(ctx context.Context, tx *sql.Tx) error { return s.revoke(ctx, tx, subject) })
}

// RevocationEpochs implements Accounts.
func (s *SQL) RevocationEpochs(ctx context.Context, since time.Time) (map[string]int64, error) {
	rows, err := s.query(ctx, `SELECT subject, epoch FROM revocations WHERE updated_at >= ?`, since.UnixNano())
	if err != nil {
		return nil, fmt.Errorf("read revocations: %w", err)
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var subject string
		var epoch int64
		if err := rows.Scan(&subject, &epoch); err != nil {
			return nil, fmt.Errorf("read revocations: %w", err)
		}
		out[subject] = epoch
	}
	return out, rows.Err()
}

// SaveRefreshToken implements Accounts.
func (s *SQL) SaveRefreshToken(ctx context.Context, hash string, g Grant) error {
	return s.tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		if _, err := s.exec(ctx, tx, `DELETE FROM refresh_tokens WHERE expires_at < ?`, now()); err != nil {
			return fmt.Errorf("prune refresh tokens: %w", err)
		}
		if !strings.Contains(g.Subject, "+") {
			// A person's: not while they are disabled. The row lock makes
			// a disable that runs meanwhile wait, and then delete this
			// token with the others, or makes this wait and see it.
			var disabled int
			err := s.queryRow(ctx, tx, `SELECT disabled FROM users WHERE name = ?`+s.dialect.lockRow, g.Subject).Scan(&disabled)
			if err == sql.ErrNoRows {
				return ErrNotFound
			}
			if err != nil {
				return fmt.Errorf("read %s: %w", g.Subject, err)
			}
			if disabled != 0 {
				return ErrDisabled
			}
		}
		_, err := s.exec(ctx, tx, `INSERT INTO refresh_tokens (hash, subject, subject_created, expires_at) VALUES (?, ?, ?, ?)`,
			hash, g.Subject, unixNano(g.SubjectCreated), g.Expires.UnixNano())
		if err != nil {
			return fmt.Errorf("save refresh token: %w", err)
		}
		return nil
	})
}

// DeleteRefreshToken implements Accounts.
func (s *SQL) DeleteRefreshToken(ctx context.Context, hash, subject string) error {
	return s.tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		return affected(s.exec(ctx, tx, `DELETE FROM refresh_tokens WHERE hash = ? AND subject = ?`, hash, subject))
	})
}

// RefreshToken implements Accounts.
func (s *SQL) RefreshToken(ctx context.Context, hash string) (*Grant, error) {
	var g Grant
	var created, expires int64
	err := s.queryRow(ctx, nil, `SELECT subject, subject_created, expires_at FROM refresh_tokens WHERE hash = ?`, hash).Scan(&g.Subject, &created, &expires)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("look up refresh token: %w", err)
	}
	g.SubjectCreated, g.Expires = fromNano(created), fromNano(expires)
	return &g, nil
}

// RememberLoginAddress implements Accounts.
func (s *SQL) RememberLoginAddress(ctx context.Context, account, address string, at, forget time.Time) error {
	return s.tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		_, err := s.exec(ctx, tx, `INSERT INTO login_addresses (account, address, last_success) VALUES (?, ?, ?)
			ON CONFLICT (account, address) DO UPDATE SET last_success = excluded.last_success`, account, address, at.UnixNano())
		if err != nil {
			return fmt.Errorf("remember login address: %w", err)
		}
		if _, err := s.exec(ctx, tx, `DELETE FROM login_addresses WHERE account = ? AND last_success < ?`, account, forget.UnixNano()); err != nil {
			return fmt.Errorf("forget login addresses: %w", err)
		}
		return nil
	})
}

// KnownLoginAddress implements Accounts.
func (s *SQL) KnownLoginAddress(ctx context.Context, account, address string, since time.Time) (bool, error) {
	var n int
	err := s.queryRow(ctx, nil, `SELECT COUNT(*) FROM login_addresses WHERE account = ? AND address = ? AND last_success >= ?`,
		account, address, since.UnixNano()).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("look up login address: %w", err)
	}
	return n > 0, nil
}

// Login attempt counts are written with a lazy commit (PostgreSQL: no wait
// for the disk): a crash loses at most the last moment's counts, which
// only gives a guesser a few more tries, and a login costs no fsync.

// failureHorizon is how long a login attempt is kept at the most: longer
// than any limit's window.
const failureHorizon = 24 * time.Hour

// ReserveLoginAttempt counts a login attempt of key at the given time,
// unless key already has max attempts since the given time: then it
// returns false and the oldest of them. The count and the insert are one
// transaction, serialized per key across replicas (PostgreSQL: an advisory
// lock on the key's hash; SQLite: its one writer), so that parallel
// attempts cannot all pass the check before any is counted. key's attempts
// older than since are forgotten, and every key's older than
// failureHorizon.
func (s *SQL) ReserveLoginAttempt(ctx context.Context, key string, at, since time.Time, max int) (bool, time.Time, error) {
	var ok bool
	var oldest time.Time
	err := s.tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		ok, oldest = false, time.Time{}
		if err := s.lock(ctx, tx, s.dialect.lazyCommit); err != nil {
			return err
		}
		if s.dialect.failureLock != "" {
			if _, err := tx.ExecContext(ctx, s.dialect.placeholders(s.dialect.failureLock), key); err != nil {
				return fmt.Errorf("lock login attempts: %w", err)
			}
		}
		// Each key is pruned with its own window: limits with longer
		// windows share the table. What no key looks at any more goes
		// after failureHorizon.
		if _, err := s.exec(ctx, tx, `DELETE FROM login_failures WHERE failure_key = ? AND at < ?`, key, since.UnixNano()); err != nil {
			return fmt.Errorf("prune login failures: %w", err)
		}
		if _, err := s.exec(ctx, tx, `DELETE FROM login_failures WHERE at < ?`, at.Add(-failureHorizon).UnixNano()); err != nil {
			return fmt.Errorf("prune login failures: %w", err)
		}
		var n int
		var first sql.NullInt64
		if err := s.queryRow(ctx, tx, `SELECT COUNT(*), MIN(at) FROM login_failures WHERE failure_key = ? AND at >= ?`,
			key, since.UnixNano()).Scan(&n, &first); err != nil {
			return fmt.Errorf("count login failures: %w", err)
		}
		if n >= max {
			oldest = fromNano(first.Int64)
			return nil
		}
		if _, err := s.exec(ctx, tx, `INSERT INTO login_failures (failure_key, at) VALUES (?, ?)`, key, at.UnixNano()); err != nil {
			return fmt.Errorf("record login attempt: %w", err)
		}
		ok = true
		return nil
	})
	return ok, oldest, err
}

// ReleaseLoginAttempt forgets an attempt reserved by ReserveLoginAttempt
// (it succeeded, or was no guess).
func (s *SQL) ReleaseLoginAttempt(ctx context.Context, key string, at time.Time) error {
	return s.tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		if err := s.lock(ctx, tx, s.dialect.lazyCommit); err != nil {
			return err
		}
		if _, err := s.exec(ctx, tx, `DELETE FROM login_failures WHERE failure_key = ? AND at = ?`, key, at.UnixNano()); err != nil {
			return fmt.Errorf("release login attempt: %w", err)
		}
		return nil
	})
}

// ClearLoginFailures forgets a key's failed logins.
func (s *SQL) ClearLoginFailures(ctx context.Context, key string) error {
	return s.tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		if err := s.lock(ctx, tx, s.dialect.lazyCommit); err != nil {
			return err
		}
		if _, err := s.exec(ctx, tx, `DELETE FROM login_failures WHERE failure_key = ?`, key); err != nil {
			return fmt.Errorf("clear login failures: %w", err)
		}
		return nil
	})
}
