package metadata

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
)

// errClosed is returned for writes submitted after Close.
var errClosed = errors.New("metadata store is closed")

// maxBatch bounds how many writes share one transaction.
const maxBatch = 128

// groupCommit funnels the write transactions of an embedded database
// through one goroutine that runs whatever has queued up as one database
// transaction, each write in its own savepoint, and commits (and so syncs
// to disk) once for all of them. A write that fails rolls back to its
// savepoint without disturbing the others; none is acknowledged before the
// commit that makes it durable. Under concurrency this turns many fsyncs
// into one; alone, a write costs what a plain transaction does.
type groupCommit struct {
	db *sql.DB

	mu     sync.Mutex
	closed bool
	queue  chan *writeReq
	done   chan struct{}
}

type writeReq struct {
	ctx context.Context
	fn  func(context.Context, *sql.Tx) error
	err chan error
}

func newGroupCommit(db *sql.DB) *groupCommit {
	g := &groupCommit{db: db, queue: make(chan *writeReq, maxBatch), done: make(chan struct{})}
	go g.run()
	return g
}

// do runs fn in a transaction shared with other queued writes and returns
// once that transaction has committed (or fn failed).
func (g *groupCommit) do(ctx context.Context, fn func(context.Context, *sql.Tx) error) error {
	req := &writeReq{ctx: ctx, fn: fn, err: make(chan error, 1)}
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return errClosed
	}
	g.queue <- req
	g.mu.Unlock()
	return <-req.err
}

// close stops accepting writes, finishes the queued ones and waits.
func (g *groupCommit) close() {
	g.mu.Lock()
	if !g.closed {
		g.closed = true
		close(g.queue)
	}
	g.mu.Unlock()
	<-g.done
}

func (g *groupCommit) run() {
	defer close(g.done)
	for first := range g.queue {
		batch := []*writeReq{first}
	fill:
		for len(batch) < maxBatch {
			select {
			case r, ok := <-g.queue:
				if !ok {
					break fill
				}
				batch = append(batch, r)
			default:
				break fill
			}
		}
		g.commit(batch)
	}
}

func (g *groupCommit) commit(batch []*writeReq) {
	fail := func(err error) {
		for _, r := range batch {
			r.err <- err
		}
	}
	tx, err := g.db.BeginTx(context.Background(), nil)
	if err != nil {
		fail(fmt.Errorf("begin transaction: %w", err))
		return
	}
	results := make([]error, len(batch))
	ok := 0
	for i, r := range batch {
		if err := r.ctx.Err(); err != nil {
			results[i] = err
			continue
		}
		if _, err := tx.Exec("SAVEPOINT w"); err != nil {
			_ = tx.Rollback()
			fail(fmt.Errorf("savepoint: %w", err))
			return
		}
		// A statement interrupted by its request's cancellation would roll
		// back the whole shared transaction: once started, a write runs to
		// its end.
		results[i] = r.fn(context.WithoutCancel(r.ctx), tx)
		if results[i] != nil {
			if _, err := tx.Exec("ROLLBACK TO w"); err != nil {
				_ = tx.Rollback()
				fail(fmt.Errorf("rollback to savepoint: %w", err))
				return
			}
		} else {
			ok++
		}
		if _, err := tx.Exec("RELEASE w"); err != nil {
			_ = tx.Rollback()
			fail(fmt.Errorf("release savepoint: %w", err))
			return
		}
	}
	if ok == 0 {
		err = tx.Rollback()
	} else {
		err = tx.Commit()
	}
	for i, r := range batch {
		if results[i] == nil && err != nil {
			results[i] = fmt.Errorf("commit: %w", err)
		}
		r.err <- results[i]
	}
}
