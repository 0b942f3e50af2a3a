package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/berth-registry/berth/internal/metadata"
)

// Store is where entries are kept: the metadata store.
type Store interface {
	AppendAudit(ctx context.Context, entries []metadata.AuditEntry) error
	PruneAudit(ctx context.Context, before time.Time) (int64, error)
}

// Options configure a Log.
type Options struct {
	// Out, when set, also receives every record (the file or stdout
	// output), synchronously, without secret attributes.
	Out slog.Handler
	// Replica names this process in the entries it writes.
	Replica string
	// Log receives the log's own troubles (entries dropped, writes
	// failed); nil discards them.
	Log *slog.Logger
	// Retention deletes entries older than this, every PruneInterval,
	// from the start; 0 keeps them forever.
	Retention time.Duration
	// FlushInterval is how often queued entries are written (default
	// 200ms); QueueSize how many may wait (default 10000): more are
	// dropped and counted, never waited for.
	FlushInterval time.Duration
	QueueSize     int
	// PruneInterval is how often old entries are deleted (default an
	// hour).
	PruneInterval time.Duration
}

// Log is the audit log. Record and the handler never block on the store:
// entries wait in a bounded queue that a goroutine writes every
// FlushInterval in one transaction, and on Close.
type Log struct {
	store Store
	opts  Options
	log   *slog.Logger

	queue   chan metadata.AuditEntry
	dropped atomic.Int64
	// failing is set while writes fail, so that a failure is logged once.
	failing bool

	// mu orders enqueues before Close: none is sent after it.
	mu     sync.RWMutex
	closed bool
	stop   chan struct{}
	done   sync.WaitGroup
	flushc chan chan error
}

// maxBatch bounds the entries of one transaction.
const maxBatch = 500

// closeTimeout bounds the last write on Close.
const closeTimeout = 5 * time.Second

// New starts a Log writing to store; Close it to write what is queued.
func New(store Store, opts Options) *Log {
	if opts.FlushInterval <= 0 {
		opts.FlushInterval = 200 * time.Millisecond
	}
	if opts.QueueSize <= 0 {
		opts.QueueSize = 10000
	}
	if opts.PruneInterval <= 0 {
		opts.PruneInterval = time.Hour
	}
	lg := opts.Log
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	l := &Log{store: store, opts: opts, log: lg, queue: make(chan metadata.AuditEntry, opts.QueueSize),
		stop: make(chan struct{}), flushc: make(chan chan error)}
	l.done.Add(1)
	go l.writeLoop()
	if opts.Retention > 0 {
		l.done.Add(1)
		go l.pruneLoop()
	}
	return l
}

// Record adds an entry: to the output at once, to the store soon.
func (l *Log) Record(e Entry) {
	if e.At.IsZero() {
		e.At = time.Now()
	}
	if l.opts.Out != nil && l.opts.Out.Enabled(context.Background(), slog.LevelInfo) {
		r := slog.NewRecord(e.At, slog.LevelInfo, clean(e.Action), 0)
		r.AddAttrs(attrsOf(e)...)
		_ = l.opts.Out.Handle(context.Background(), r)
	}
	l.enqueue(e)
}

// enqueue queues e for the store, or counts it dropped when the queue is
// full or the log closed.
func (l *Log) enqueue(e Entry) {
	row := e.row(l.opts.Replica)
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		l.dropped.Add(1)
		return
	}
	select {
	case l.queue <- row:
	default:
		l.dropped.Add(1)
	}
}

// Flush writes what is queued now and returns the write's error.
func (l *Log) Flush(ctx context.Context) error {
	reply := make(chan error, 1)
	select {
	case l.flushc <- reply:
	case <-l.stop:
		return errors.New("audit log closed")
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close stops the log after writing what is queued (for at most
// closeTimeout); entries recorded after are dropped.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	l.mu.Unlock()
	close(l.stop)
	l.done.Wait()
	if n := l.dropped.Load(); n > 0 {
		l.log.Warn("audit entries not written at shutdown", "count", n)
		return fmt.Errorf("audit log: %d entries not written", n)
	}
	return nil
}

// writeLoop writes the queue every FlushInterval, on Flush, and on Close.
func (l *Log) writeLoop() {
	defer l.done.Done()
	t := time.NewTicker(l.opts.FlushInterval)
	defer t.Stop()
	var pending []metadata.AuditEntry
	for {
		select {
		case <-t.C:
			pending = l.write(context.Background(), pending)
		case reply := <-l.flushc:
			pending = l.write(context.Background(), pending)
			var err error
			if len(pending) > 0 {
				err = errors.New("audit log: writing to the store failed")
			}
			reply <- err
		case <-l.stop:
			ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
			l.failing = true // Close reports a failure of the last write
			pending = l.write(ctx, pending)
			cancel()
			l.dropped.Add(int64(len(pending)))
			return
		}
	}
}

// write drains the queue into pending and writes pending in batches; it
// returns what could not be written, to retry, at most QueueSize entries
// (older ones are dropped and counted).
func (l *Log) write(ctx context.Context, pending []metadata.AuditEntry) []metadata.AuditEntry {
	for drained := false; !drained; {
		select {
		case e := <-l.queue:
			pending = append(pending, e)
		default:
			drained = true
		}
	}
	if n := l.dropped.Swap(0); n > 0 {
		l.log.Warn("audit entries dropped: the queue was full", "count", n)
		pending = append(pending, Entry{Actor: "berth", Action: "audit entries dropped", Outcome: OutcomeFailure,
			Detail: map[string]any{"count": n}}.row(l.opts.Replica))
	}
	for len(pending) > 0 {
		n := min(len(pending), maxBatch)
		if err := l.store.AppendAudit(ctx, pending[:n]); err != nil {
			if !l.failing {
				l.log.Error("writing audit entries failed; retrying", "err", err, "queued", len(pending))
				l.failing = true
			}
			if over := len(pending) - l.opts.QueueSize; over > 0 {
				l.dropped.Add(int64(over))
				pending = pending[over:]
			}
			return pending
		}
		if l.failing {
			select {
			case <-l.stop:
			default:
				l.log.Info("writing audit entries works again")
			}
			l.failing = false
		}
		pending = pending[n:]
	}
	return nil
}

// pruneLoop deletes entries older than the retention period at start and
// every PruneInterval. Every replica runs it; a deletion is idempotent.
func (l *Log) pruneLoop() {
	defer l.done.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { <-l.stop; cancel() }()
	t := time.NewTicker(l.opts.PruneInterval)
	defer t.Stop()
	for {
		n, err := l.store.PruneAudit(ctx, time.Now().Add(-l.opts.Retention))
		switch {
		case err != nil && ctx.Err() == nil:
			l.log.Error("pruning the audit log failed", "err", err)
		case n > 0:
			l.log.Info("pruned the audit log", "deleted", n, "older_than", l.opts.Retention.String())
		}
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
	}
}
