package digestlock

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"hash/fnv"
	"slices"
)

// Postgres locks keys with PostgreSQL session advisory locks, so that
// replicas sharing the database exclude each other. Each held lock keeps
// one connection of its own pool (not the pool transactions use, so that a
// lock holder waiting for a transaction cannot starve it).
type Postgres struct {
	db *sql.DB
}

// NewPostgres returns a locker on db, a pool reserved for locks.
func NewPostgres(db *sql.DB) *Postgres { return &Postgres{db: db} }

// key maps a string to the 64-bit advisory lock space.
func key(s string) int64 {
	h := fnv.New64a()
	h.Write([]byte("digest:" + s))
	return int64(h.Sum64())
}

// Lock takes key's advisory lock, waiting for other holders.
func (p *Postgres) Lock(ctx context.Context, k string) (func(), error) {
	return p.LockAll(ctx, []string{k})
}

// LockAll takes the advisory locks of keys on one connection, in key order.
func (p *Postgres) LockAll(ctx context.Context, keys []string) (func(), error) {
	ids := make([]int64, 0, len(keys))
	for _, k := range keys {
		ids = append(ids, key(k))
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)
	conn, err := p.db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("digest lock: %w", err)
	}
	for i, id := range ids {
		if _, err := conn.ExecContext(ctx, "SELECT pg_advisory_lock($1)", id); err != nil {
			release(conn, ids[:i])
			return nil, fmt.Errorf("digest lock: %w", err)
		}
	}
	return func() { release(conn, ids) }, nil
}

// release unlocks ids and returns the connection to the pool; should the
// unlock fail, the connection is discarded, which ends its session and so
// its locks.
func release(conn *sql.Conn, ids []int64) {
	ctx := context.Background()
	for _, id := range ids {
		var held bool
		if err := conn.QueryRowContext(ctx, "SELECT pg_advisory_unlock($1)", id).Scan(&held); err != nil || !held {
			// The session ended (and its locks with it) or cannot say:
			// do not reuse the connection.
			_ = conn.Raw(func(any) error { return driver.ErrBadConn })
			break
		}
	}
	conn.Close()
}

// TryLock takes key's advisory lock if no one holds it; ok is false if
// someone does.
func (p *Postgres) TryLock(ctx context.Context, k string) (unlock func(), ok bool, err error) {
	id := key(k)
	conn, err := p.db.Conn(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("lock %s: %w", k, err)
	}
	if err := conn.QueryRowContext(ctx, "SELECT pg_try_advisory_lock($1)", id).Scan(&ok); err != nil {
		conn.Close()
		return nil, false, fmt.Errorf("lock %s: %w", k, err)
	}
	if !ok {
		conn.Close()
		return nil, false, nil
	}
	return func() { release(conn, []int64{id}) }, true, nil
}
