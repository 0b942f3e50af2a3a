package metadata

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"
)

// AuditEntry is one record of the shared audit log: who (Actor, from
// Address) did what (Action) to what (Namespace, Target), with what
// Outcome; Detail is a JSON object of the rest, Replica the process that
// wrote it. Package audit builds entries and keeps secrets out of them.
type AuditEntry struct {
	// ID is assigned by the database; it orders entries and pages them.
	ID        int64
	At        time.Time
	Actor     string
	Address   string
	Action    string
	Namespace string
	Target    string
	Outcome   string
	Detail    string
	Replica   string
}

// AuditFilter selects audit entries for ListAudit. Empty fields do not
// filter.
type AuditFilter struct {
	Actor, Namespace, Action string
	// Since (inclusive) and Until (exclusive) bound the entries' times.
	Since, Until time.Time
	// Before is a paging cursor: only entries whose ID is below it.
	Before int64
	// Limit is the largest number of entries returned: DefaultAuditLimit
	// when 0, at most MaxAuditLimit.
	Limit int
}

// Page sizes of ListAudit.
const (
	DefaultAuditLimit = 100
	MaxAuditLimit     = 1000
)

// pruneBatch is how many entries one PruneAudit transaction deletes, so
// that a large backlog does not hold the (SQLite) writer for long.
const pruneBatch = 5000

// AppendAudit writes entries in one transaction.
func (s *SQL) AppendAudit(ctx context.Context, entries []AuditEntry) error {
	if len(entries) == 0 {
		return nil
	}
	return s.tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		for _, e := range entries {
			at := e.At
			if at.IsZero() {
				at = time.Now()
			}
			detail := e.Detail
			if detail == "" {
				detail = "{}"
			}
			if _, err := s.exec(ctx, tx, `INSERT INTO audit_log (at, actor, address, action, namespace, target, outcome, detail, replica)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
				at.UnixNano(), e.Actor, e.Address, e.Action, e.Namespace, e.Target, e.Outcome, detail, e.Replica); err != nil {
				return fmt.Errorf("write audit entry: %w", err)
			}
		}
		return nil
	})
}

// ListAudit returns the entries f selects, newest (highest ID) first.
func (s *SQL) ListAudit(ctx context.Context, f AuditFilter) ([]AuditEntry, error) {
	var where []string
	var args []any
	add := func(cond string, arg any) {
		where = append(where, cond)
		args = append(args, arg)
	}
	if f.Actor != "" {
		add("actor = ?", f.Actor)
	}
	if f.Namespace != "" {
		add("namespace = ?", f.Namespace)
	}
	if f.Action != "" {
		add("action = ?", f.Action)
	}
	if !f.Since.IsZero() {
		add("at >= ?", f.Since.UnixNano())
	}
	if !f.Until.IsZero() {
		add("at < ?", f.Until.UnixNano())
	}
	if f.Before > 0 {
		add("id < ?", f.Before)
	}
	limit := f.Limit
	if limit <= 0 {
		limit = DefaultAuditLimit
	}
	limit = min(limit, MaxAuditLimit)
	q := `SELECT id, at, actor, address, action, namespace, target, outcome, detail, replica FROM audit_log`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	// The statement cache holds one query per combination of filters (64).
	q += " ORDER BY id DESC LIMIT ?"
	rows, err := s.query(ctx, q, append(args, limit)...)
	if err != nil {
		return nil, fmt.Errorf("list audit entries: %w", err)
	}
	defer rows.Close()
	var out []AuditEntry
	for rows.Next() {
		var e AuditEntry
		var at int64
		if err := rows.Scan(&e.ID, &at, &e.Actor, &e.Address, &e.Action, &e.Namespace, &e.Target, &e.Outcome, &e.Detail, &e.Replica); err != nil {
			return nil, fmt.Errorf("list audit entries: %w", err)
		}
		e.At = time.Unix(0, at)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list audit entries: %w", err)
	}
	return out, nil
}

// PruneAudit deletes the entries older than before, in batches, and
// returns how many it deleted. Replicas may run it at once: each batch
// deletes what is still there.
func (s *SQL) PruneAudit(ctx context.Context, before time.Time) (int64, error) {
	var total int64
	for {
		var n int64
		err := s.tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
			res, err := s.exec(ctx, tx, fmt.Sprintf(`DELETE FROM audit_log WHERE id IN
				(SELECT id FROM audit_log WHERE at < ? ORDER BY at LIMIT %d)`, pruneBatch), before.UnixNano())
			if err != nil {
				return err
			}
			n, err = res.RowsAffected()
			return err
		})
		if err != nil {
			return total, fmt.Errorf("prune audit entries: %w", err)
		}
		total += n
		if n < pruneBatch || ctx.Err() != nil {
			return total, ctx.Err()
		}
	}
}
