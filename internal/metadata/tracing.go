package metadata

import (
	"context"
	"database/sql"
	"errors"
	"runtime"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// TxObserver is told of every write transaction, for metrics.
type TxObserver interface {
	// TxDone reports a transaction's outcome, "committed" or
	// "rolled_back" (a refusal such as a missing reference, or a failure),
	// and how long it took: waiting for the group commit and retries
	// included.
	TxDone(outcome string, elapsed time.Duration)
	// TxRetried reports a transaction run again after a serialization
	// failure or a deadlock (PostgreSQL).
	TxRetried()
}

// Outcomes a TxObserver is told.
const (
	TxCommitted  = "committed"
	TxRolledBack = "rolled_back"
)

// instruments are the spans and observations of a SQL store; the zero
// value records nothing and costs a nil check per call.
type instruments struct {
	tracer trace.Tracer // nil: no spans
	system attribute.KeyValue
	obs    TxObserver // nil: no observations
}

// Kinds of work a span covers (db.operation.name).
const (
	opTx    = "transaction"
	opQuery = "query"
)

// Instrument makes s start a client span for each write transaction and
// each read outside one (named after the Store method, e.g.
// "metadata.PutManifest"), when the call's context carries a span, with
// tp's tracer, nil for none; and report every write transaction to obs,
// nil for nobody. Call it before s serves.
func (s *SQL) Instrument(tp trace.TracerProvider, obs TxObserver) {
	s.inst = instruments{obs: obs}
	if tp != nil {
		s.inst.tracer = tp.Tracer("github.com/berth-registry/berth/internal/metadata")
		system := s.dialect.name
		if system == "postgres" {
			system = "postgresql"
		}
		s.inst.system = attribute.String("db.system.name", system)
	}
}

// Pools returns the connection pools of s by name, for their statistics:
// "metadata_write" and "metadata_read" for SQLite, "metadata" for
// PostgreSQL (one pool for both).
func (s *SQL) Pools() map[string]*sql.DB {
	if s.w == s.r {
		return map[string]*sql.DB{"metadata": s.w}
	}
	return map[string]*sql.DB{"metadata_write": s.w, "metadata_read": s.r}
}

// on reports whether transactions are traced or observed.
func (in *instruments) on() bool { return in.tracer != nil || in.obs != nil }

// start starts a span for op, or returns ctx and nil when tracing is off
// or ctx carries no recording span (an unsampled request costs nothing
// more): background work (webhook polling, pull flushes,
// upload expiry) makes no root spans.
func (in *instruments) start(ctx context.Context, op string) (context.Context, trace.Span) {
	if in.tracer == nil || !trace.SpanFromContext(ctx).IsRecording() {
		return ctx, nil
	}
	return in.tracer.Start(ctx, spanName(op), trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(in.system, attribute.String("db.operation.name", op)))
}

// beginTx starts a write transaction's span and clock.
func (in *instruments) beginTx(ctx context.Context) (context.Context, trace.Span, time.Time) {
	ctx, span := in.start(ctx, opTx)
	return ctx, span, time.Now()
}

// endTx ends a write transaction's span and reports it.
func (in *instruments) endTx(span trace.Span, start time.Time, err error) {
	if in.obs != nil {
		outcome := TxCommitted
		if err != nil {
			outcome = TxRolledBack
		}
		in.obs.TxDone(outcome, time.Since(start))
	}
	end(span, err)
}

func (in *instruments) retried() {
	if in.obs != nil {
		in.obs.TxRetried()
	}
}

// end ends span (nil when tracing is off), marking it failed unless err
// is nil or one of the store's refusals.
func end(span trace.Span, err error) {
	if span == nil {
		return
	}
	if err != nil {
		refused := refusal(err)
		span.SetAttributes(attribute.Bool("berth.metadata.refused", refused))
		if !refused {
			span.RecordError(err)
			span.SetStatus(codes.Error, "metadata failed")
		}
	}
	span.End()
}

// refusal reports the errors that are answers rather than failures.
func refusal(err error) bool {
	var missing *MissingReferenceError
	return errors.Is(err, ErrNotFound) || errors.Is(err, sql.ErrNoRows) || errors.Is(err, ErrExists) ||
		errors.Is(err, ErrSizeMismatch) || errors.Is(err, ErrTooManyUploads) || errors.Is(err, ErrTagImmutable) ||
		errors.Is(err, errDryRun) || errors.As(err, &missing)
}

// tracedRow ends a single-row query's span when it is scanned.
type tracedRow struct {
	row  interface{ Scan(...any) error }
	span trace.Span
}

func (r tracedRow) Scan(dest ...any) error {
	err := r.row.Scan(dest...)
	end(r.span, err)
	return err
}

// spanNames caches span names by the call stack above tx, query or
// queryRow (a bounded set: one per call path).
var spanNames sync.Map // [stackDepth]uintptr -> string

const stackDepth = 6

// spanName names a span after the exported method of SQL that called tx,
// query or queryRow, e.g. "metadata.PutManifest", or after op when there
// is none close by.
func spanName(op string) string {
	var key [stackDepth]uintptr
	runtime.Callers(2, key[:]) // from start: its callers up to the Store method
	if name, ok := spanNames.Load(key); ok {
		return name.(string)
	}
	name := "metadata." + op
	frames := runtime.CallersFrames(key[:])
	const prefix = "github.com/berth-registry/berth/internal/metadata.(*SQL)."
	for {
		f, more := frames.Next()
		if m, ok := strings.CutPrefix(f.Function, prefix); ok && m != "" && !strings.Contains(m, ".") && m[0] >= 'A' && m[0] <= 'Z' {
			name = "metadata." + m
			break
		}
		if !more {
			break
		}
	}
	spanNames.Store(key, name)
	return name
}
