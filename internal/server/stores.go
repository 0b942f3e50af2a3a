package server

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/berth-registry/berth/internal/blobstore"
	"github.com/berth-registry/berth/internal/config"
	"github.com/berth-registry/berth/internal/digestlock"
	"github.com/berth-registry/berth/internal/metadata"
	"github.com/berth-registry/berth/internal/metrics"
	"github.com/berth-registry/berth/internal/tracing"
)

// stores are the backends a configuration selects, and what closes them.
type stores struct {
	blobs blobstore.Store
	meta  *metadata.SQL
	locks digestlock.Locker
	// tryRun keeps garbage collection to one replica at a time (nil: one
	// process, the collector's own mutex is enough).
	tryRun  func(ctx context.Context) (func(), bool, error)
	closers []func() error
	// tracing exports spans, or is off (tracing.go); pools are the
	// database connection pools and collectors the metrics of the
	// backends (transactions, pools, S3 requests), for server.New to
	// register.
	tracing    *tracing.Provider
	pools      map[string]*sql.DB
	collectors []prometheus.Collector
}

func (st *stores) close() error {
	var err error
	for i := len(st.closers) - 1; i >= 0; i-- {
		err = errors.Join(err, st.closers[i]())
	}
	return err
}

// openStores opens the blob store and metadata database the configuration
// names: the data directory's files and SQLite (locked to this process), or
// S3 and PostgreSQL shared by replicas.
func openStores(ctx context.Context, cfg *config.Config, log *slog.Logger) (_ *stores, err error) {
	st := &stores{pools: map[string]*sql.DB{}}
	defer func() {
		if err != nil {
			_ = st.close()
		}
	}()
	if err := st.openTracing(ctx, cfg, log); err != nil {
		return nil, err
	}
	if err := st.openMetadata(ctx, cfg, cfg.PostgresConns); err != nil {
		return nil, err
	}
	switch cfg.Metadata {
	case "postgres":
		if cfg.PostgresCacheMiB > 0 {
			st.meta.CacheReads(cfg.PostgresDSN, int64(cfg.PostgresCacheMiB)<<20, log)
			meta := st.meta
			st.collectors = append(st.collectors, metrics.MetadataCache(func() (uint64, uint64, uint64, bool) {
				c := meta.CacheStats()
				return c.Hits, c.Misses, c.Invalidations, meta.CacheOn()
			})...)
		}
		// Digest locks hold a connection each, from a pool of their own.
		lockDB, err := sql.Open("pgx", cfg.PostgresDSN)
		if err != nil {
			return nil, fmt.Errorf("open PostgreSQL for locks: %w", err)
		}
		lockDB.SetMaxOpenConns(cfg.PostgresConns)
		lockDB.SetMaxIdleConns(cfg.PostgresConns) // a lock should not cost a new connection
		st.closers = append(st.closers, lockDB.Close)
		st.pools["digest_locks"] = lockDB
		pg := digestlock.NewPostgres(lockDB)
		st.locks = pg
		st.tryRun = func(ctx context.Context) (func(), bool, error) { return pg.TryLock(ctx, "gc") }
	default:
		st.locks = &digestlock.Set{}
	}
	switch cfg.Storage {
	case "s3":
		s3m := metrics.NewS3()
		st.collectors = append(st.collectors, s3m.Collectors()...)
		s3, err := blobstore.NewS3(ctx, blobstore.S3Options{Bucket: cfg.S3Bucket, Prefix: cfg.S3Prefix, Region: cfg.S3Region,
			Endpoint: cfg.S3Endpoint, PathStyle: cfg.S3PathStyle, Observe: s3m.Observe, TracerProvider: st.tracerProvider(), Index: st.meta})
		if err != nil {
			return nil, err
		}
		st.blobs = s3
	default:
		fs, err := blobstore.NewFS(cfg.DataDir)
		if err != nil {
			return nil, err
		}
		st.blobs = fs
	}
	st.instrument(cfg)
	return st, nil
}

// openMetadata opens (and migrates) the configured metadata database:
// PostgreSQL with up to conns connections, or SQLite in the data
// directory, which it locks to this process.
func (st *stores) openMetadata(ctx context.Context, cfg *config.Config, conns int) error {
	if err := makeDataDir(cfg.DataDir); err != nil {
		return err
	}
	var meta *metadata.SQL
	var err error
	switch cfg.Metadata {
	case "postgres":
		meta, err = metadata.OpenPostgres(ctx, cfg.PostgresDSN, conns)
	default:
		lock, lerr := lockDataDir(cfg.DataDir)
		if lerr != nil {
			return lerr
		}
		st.closers = append(st.closers, lock.Close)
		meta, err = metadata.OpenSQLite(ctx, filepath.Join(cfg.DataDir, "berth.db"))
	}
	if err != nil {
		return err
	}
	st.meta = meta
	st.closers = append(st.closers, meta.Close)
	return nil
}

// Migrate applies the metadata schema migrations the configured database
// lacks and returns the schema version; berth serve does the same at start.
func Migrate(ctx context.Context, cfg *config.Config) (int, error) {
	st := &stores{}
	defer st.close()
	if err := st.openMetadata(ctx, cfg, 4); err != nil { // one connection holds the migration lock
		return 0, err
	}
	return st.meta.SchemaVersion(ctx)
}

// makeDataDir creates the data directory readable by this user only
// (0700 whatever the umask). An existing directory keeps its mode: a
// volume's root may belong to another user and be shared through its
// group; the files berth creates in it are 0600 all the same.
func makeDataDir(dir string) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create data directory: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("create data directory: %w", err)
	}
	return nil
}
