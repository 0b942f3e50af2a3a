package metadata

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
)

func init() { postgresDialect.retryable = retryablePG }

// OpenPostgres connects to PostgreSQL (dsn as pgx reads it, e.g.
// postgres://user:pass@host:5432/berth?sslmode=require) and applies the
// schema migrations that have not run yet. Several replicas may share the
// database: migrations run once (advisory lock), references and the
// garbage collector's sweep exclude each other (advisory transaction
// locks), and each write is its own transaction, retried on serialization
// failures and deadlocks.
func OpenPostgres(ctx context.Context, dsn string, maxConns int) (*SQL, error) {
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return nil, fmt.Errorf("open PostgreSQL: %w", err)
	}
	if maxConns <= 0 {
		maxConns = 20
	}
	db.SetMaxOpenConns(maxConns)
	db.SetMaxIdleConns(maxConns)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	s := &SQL{w: db, r: db, dialect: postgresDialect, wst: stmts{db: db}, rst: stmts{db: db}}
	if err := s.migrate(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// retryablePG: serialization_failure and deadlock_detected.
func retryablePG(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40001" || pe.Code == "40P01")
}
