package metadata

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"runtime"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// OpenSQLite opens (creating and migrating if needed) the embedded database
// at path. synchronous FULL makes every commit durable before it returns.
func OpenSQLite(ctx context.Context, path string) (*SQL, error) {
	pragmas := "_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=foreign_keys(1)"
	dsn := "file:" + (&url.URL{Path: path}).EscapedPath() + "?" + pragmas
	w, err := sql.Open("sqlite", dsn+"&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", path, err)
	}
	// All writes run on one connection, inside the group commit's
	// transaction; a second connection lets statements be prepared (and
	// cached) while that transaction holds the first.
	w.SetMaxOpenConns(2)
	w.SetMaxIdleConns(2)
	r, err := sql.Open("sqlite", dsn)
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("open database %s: %w", path, err)
	}
	n := 2 * runtime.GOMAXPROCS(0)
	r.SetMaxOpenConns(n)
	r.SetMaxIdleConns(n)
	s := &SQL{w: w, r: r, dialect: sqliteDialect, group: newGroupCommit(w), wst: stmts{db: w}, rst: stmts{db: r}}
	if err := s.migrate(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}
