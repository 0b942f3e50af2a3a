package metadata_test

import (
	"context"
	"errors"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/berth-registry/berth/internal/metadata"
	"github.com/berth-registry/berth/internal/reference"
)

// txLog is a TxObserver that keeps outcomes.
type txLog struct {
	mu       sync.Mutex
	outcomes []string
	retries  int
}

func (l *txLog) TxDone(outcome string, elapsed time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if elapsed <= 0 {
		outcome += "(no duration)"
	}
	l.outcomes = append(l.outcomes, outcome)
}

func (l *txLog) TxRetried() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.retries++
}

// TestInstrumentSQLite checks the spans and observations of the SQLite
// store: a client span per transaction and per read, named after the Store
// method, children of the caller's span; refusals are not errors; no span
// without a parent; every write transaction observed with its outcome.
func TestInstrumentSQLite(t *testing.T) {
	ctx := context.Background()
	s, err := metadata.OpenSQLite(ctx, filepath.Join(t.TempDir(), "berth.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	obs := &txLog{}
	s.Instrument(tp, obs)

	d := reference.Digest("sha256:" + strings.Repeat("ab", 32))
	pctx, parent := tp.Tracer("test").Start(ctx, "request")
	if err := s.LinkBlob(pctx, "team/app", d, 3, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RepositoryBlob(pctx, "team/app", d); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RepositoryBlob(pctx, "team/other", d); !errors.Is(err, metadata.ErrNotFound) {
		t.Fatalf("RepositoryBlob of an unlinked blob: %v", err)
	}
	if _, _, err := s.Tags(pctx, "team/app", "", 10); err != nil {
		t.Fatal(err)
	}
	if err := s.UnlinkBlob(pctx, "team/other", d, nil); !errors.Is(err, metadata.ErrNotFound) {
		t.Fatalf("UnlinkBlob of an unlinked blob: %v", err)
	}
	parent.End()
	// Background work: observed, not traced.
	if err := s.LinkBlob(ctx, "team/bg", d, 3, ""); err != nil {
		t.Fatal(err)
	}

	var got []string
	for _, sp := range exp.GetSpans() {
		if sp.Name == "request" {
			continue
		}
		attrs := map[string]string{}
		for _, kv := range sp.Attributes {
			attrs[string(kv.Key)] = kv.Value.Emit()
		}
		got = append(got, sp.Name+" "+attrs["db.operation.name"])
		if sp.Parent.SpanID() != parent.SpanContext().SpanID() {
			t.Errorf("%s: parent %s, want the request's span", sp.Name, sp.Parent.SpanID())
		}
		if sp.SpanKind != trace.SpanKindClient || attrs["db.system.name"] != "sqlite" {
			t.Errorf("%s: kind %v, db.system.name %q", sp.Name, sp.SpanKind, attrs["db.system.name"])
		}
		if sp.Status.Code == codes.Error {
			t.Errorf("%s: marked failed (%s) for a refusal", sp.Name, sp.Status.Description)
		}
	}
	sort.Strings(got)
	want := []string{
		"metadata.LinkBlob transaction",
		"metadata.RepositoryBlob query",
		"metadata.RepositoryBlob query",
		"metadata.Tags query", // the repository's id
		"metadata.Tags query", // its tags
		"metadata.UnlinkBlob transaction",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("spans:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if o := strings.Join(obs.outcomes, " "); o != "committed rolled_back committed" || obs.retries != 0 {
		t.Errorf("observed %q with %d retries, want committed rolled_back committed and none", o, obs.retries)
	}
	pools := s.Pools()
	if len(pools) != 2 || pools["metadata_write"] == nil || pools["metadata_read"] == nil {
		t.Errorf("SQLite pools: %v", pools)
	}
}

// TestInstrumentPostgres checks the PostgreSQL store's spans and pools.
func TestInstrumentPostgres(t *testing.T) {
	s, _ := openPG(t, 4)
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	obs := &txLog{}
	s.Instrument(tp, obs)
	ctx, parent := tp.Tracer("test").Start(context.Background(), "request")
	if err := s.LinkBlob(ctx, "pg/app", digest(7), 1, ""); err != nil {
		t.Fatal(err)
	}
	parent.End()
	var found bool
	for _, sp := range exp.GetSpans() {
		if sp.Name != "metadata.LinkBlob" {
			continue
		}
		found = true
		for _, kv := range sp.Attributes {
			if kv.Key == "db.system.name" && kv.Value.AsString() != "postgresql" {
				t.Errorf("db.system.name = %q, want postgresql", kv.Value.AsString())
			}
		}
	}
	if !found {
		t.Errorf("no metadata.LinkBlob span")
	}
	if o := strings.Join(obs.outcomes, " "); o != "committed" {
		t.Errorf("observed %q", o)
	}
	if pools := s.Pools(); len(pools) != 1 || pools["metadata"] == nil {
		t.Errorf("PostgreSQL pools: %v, want one named metadata", pools)
	}
}

// BenchmarkInstrumentedRead measures a hot read (a blob HEAD's lookup)
// uninstrumented, with metrics only (tracing off, as berth runs by
// default), and traced inside a request's span.
func BenchmarkInstrumentedRead(b *testing.B) {
	ctx := context.Background()
	s, err := metadata.OpenSQLite(ctx, filepath.Join(b.TempDir(), "berth.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	d := reference.Digest("sha256:" + strings.Repeat("cd", 32))
	if err := s.LinkBlob(ctx, "team/app", d, 3, ""); err != nil {
		b.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sdktrace.NewBatchSpanProcessor(tracetest.NewNoopExporter())))
	pctx, span := tp.Tracer("bench").Start(ctx, "request")
	defer span.End()
	for _, c := range []struct {
		name string
		tp   trace.TracerProvider
		obs  metadata.TxObserver
		ctx  context.Context
	}{
		{"plain", nil, nil, ctx},
		{"tracing-off", nil, &txLog{}, pctx},
		{"traced", tp, &txLog{}, pctx},
	} {
		b.Run(c.name, func(b *testing.B) {
			s.Instrument(c.tp, c.obs)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.RepositoryBlob(c.ctx, "team/app", d); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
