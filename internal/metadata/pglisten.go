package metadata

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
)

// cacheChannel is the channel the cache triggers notify.
const cacheChannel = "berth_cache"

// Cache settings of a replica on PostgreSQL.
const (
	// cacheTTL bounds how long an answer is kept: the staleness should
	// the notification connection hang without an error.
	cacheTTL = 10 * time.Second
	// listenIdle is how long the listener waits for a notification before
	// it pings the server, to find a dead connection within a few seconds.
	listenIdle = 5 * time.Second
)

// CacheReads turns on the read cache of a PostgreSQL store (see
// readCache), with a budget of maxBytes, and starts the listener that
// keeps it coherent with the other replicas' writes. The cache answers
// only while the listener is connected. Close stops it.
func (s *SQL) CacheReads(dsn string, maxBytes int64, log *slog.Logger) {
	if maxBytes <= 0 || s.dialect.name != "postgres" || s.cache != nil {
		return
	}
	s.cache = newReadCache(maxBytes, cacheTTL)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	s.stopListen = func() { cancel(); <-done }
	go func() {
		defer close(done)
		s.listen(ctx, dsn, log)
	}()
}

// listen keeps a connection LISTENing to the cache channel and applies
// what it hears, reconnecting after a failure (the cache is off
// meanwhile) until ctx ends.
func (s *SQL) listen(ctx context.Context, dsn string, log *slog.Logger) {
	backoff := 100 * time.Millisecond
	for {
		started := time.Now()
		err := s.listenOnce(ctx, dsn)
		s.cache.setOn(false)
		if ctx.Err() != nil {
			return
		}
		log.Warn("metadata read cache off: notification connection lost; reconnecting", "err", err, "retry_in", backoff)
		if time.Since(started) > time.Minute {
			backoff = 100 * time.Millisecond
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}

// listenOnce connects, LISTENs, turns the cache on (empty: what happened
// while no one listened is unknown) and applies notifications until the
// connection fails or ctx ends.
func (s *SQL) listenOnce(ctx context.Context, dsn string) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+cacheChannel); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	s.cache.setOn(true)
	for {
		wctx, cancel := context.WithTimeout(ctx, listenIdle)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case err == nil:
			s.cache.invalidate(n.Payload)
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, context.DeadlineExceeded) && !conn.IsClosed():
			pctx, cancel := context.WithTimeout(ctx, listenIdle)
			err := conn.Ping(pctx)
			cancel()
			if err != nil {
				return fmt.Errorf("ping: %w", err)
			}
		default:
			return fmt.Errorf("wait for notification: %w", err)
		}
	}
}
