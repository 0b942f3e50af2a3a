package metadata

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"runtime"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// OpenSQLite opens (creating and migrating if needed) the embedded database
// at path. synchronous FULL makes every commit durable before it returns.
func OpenSQLite(ctx context.Context, path string) (*SQL, error) {
	if err := privateFile(path); err != nil {
		return nil, err
	}
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
	// SQLite gives its -wal and -shm files the database's mode; make sure.
	for _, f := range []string{path + "-wal", path + "-shm"} {
		if err := os.Chmod(f, 0o600); err != nil && !errors.Is(err, fs.ErrNotExist) {
			s.Close()
			return nil, fmt.Errorf("restrict %s: %w", f, err)
		}
	}
	return s, nil
}

// privateFile creates the database file readable by this user only (SQLite
// would create it 0644, less the umask), or restricts an existing one.
func privateFile(path string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("open database %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("open database %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		return fmt.Errorf("restrict database %s: %w", path, err)
	}
	return nil
}
