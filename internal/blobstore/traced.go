package blobstore

import (
	"context"
	"errors"
	"io"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/berth-registry/berth/internal/reference"
)

// Traced returns s with a span around each call ("blobstore.Stat",
// "blobstore.CommitUpload"...), children of the span in the call's
// context (none without one), from tp's tracer; kind ("filesystem", "s3") is an attribute.
// A store that is a Redirector stays one. Content returned by Open is s's
// own (an *os.File keeps its sendfile path); its reads are not traced here
// (S3's ranged GETs are, by the S3 client's middleware).
func Traced(s Store, kind string, tp trace.TracerProvider) Store {
	t := &traced{s: s, tracer: tp.Tracer("github.com/berth-registry/berth/internal/blobstore"), kind: attribute.String("berth.blobstore", kind)}
	if rd, ok := s.(Redirector); ok {
		return &tracedRedirector{traced: t, rd: rd}
	}
	return t
}

type traced struct {
	s      Store
	tracer trace.Tracer
	kind   attribute.KeyValue
}

// start starts a span, or returns a non-recording one when ctx carries no
// recording span (background work makes no root spans, and an unsampled
// request costs nothing more).
func (t *traced) start(ctx context.Context, name string, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	if !trace.SpanFromContext(ctx).IsRecording() {
		return ctx, noop.Span{}
	}
	return t.tracer.Start(ctx, "blobstore."+name, trace.WithSpanKind(trace.SpanKindInternal),
		trace.WithAttributes(t.kind), trace.WithAttributes(attrs...))
}

// finish ends span, marking it failed unless err is nil or an answer
// (not found, a wrong offset or digest, a client's read error).
func finish(span trace.Span, err error) {
	if err != nil {
		var re *ReadError
		answer := errors.Is(err, ErrNotFound) || errors.Is(err, ErrUploadNotFound) || errors.Is(err, ErrOffset) ||
			errors.Is(err, ErrDigestMismatch) || errors.Is(err, ErrChunkLength) || errors.As(err, &re)
		if answer {
			span.SetAttributes(attribute.String("berth.blobstore.refused", err.Error()))
		} else {
			span.RecordError(err)
			span.SetStatus(codes.Error, "blob store failed")
		}
	}
	span.End()
}

func digestAttr(d reference.Digest) attribute.KeyValue {
	return attribute.String("berth.digest", string(d))
}
func uploadAttr(id string) attribute.KeyValue { return attribute.String("berth.upload_id", id) }

// Stat implements Store.
func (t *traced) Stat(ctx context.Context, d reference.Digest) (int64, error) {
	ctx, span := t.start(ctx, "Stat", digestAttr(d))
	n, err := t.s.Stat(ctx, d)
	finish(span, err)
	return n, err
}

// Open implements Store.
func (t *traced) Open(ctx context.Context, d reference.Digest) (Content, int64, error) {
	ctx, span := t.start(ctx, "Open", digestAttr(d))
	c, n, err := t.s.Open(ctx, d)
	finish(span, err)
	return c, n, err
}

// Delete implements Store.
func (t *traced) Delete(ctx context.Context, d reference.Digest) error {
	ctx, span := t.start(ctx, "Delete", digestAttr(d))
	err := t.s.Delete(ctx, d)
	finish(span, err)
	return err
}

// CreateUpload implements Store.
func (t *traced) CreateUpload(ctx context.Context, id string) error {
	ctx, span := t.start(ctx, "CreateUpload", uploadAttr(id))
	err := t.s.CreateUpload(ctx, id)
	finish(span, err)
	return err
}

// UploadStatus implements Store.
func (t *traced) UploadStatus(ctx context.Context, id string) (int64, time.Time, error) {
	ctx, span := t.start(ctx, "UploadStatus", uploadAttr(id))
	n, mod, err := t.s.UploadStatus(ctx, id)
	finish(span, err)
	return n, mod, err
}

// AppendUpload implements Store; the span covers reading the chunk from
// the client.
func (t *traced) AppendUpload(ctx context.Context, id string, offset int64, r io.Reader, length int64) (int64, error) {
	ctx, span := t.start(ctx, "AppendUpload", uploadAttr(id), attribute.Int64("berth.offset", offset), attribute.Int64("berth.length", length))
	n, err := t.s.AppendUpload(ctx, id, offset, r, length)
	if err == nil {
		span.SetAttributes(attribute.Int64("berth.size", n))
	}
	finish(span, err)
	return n, err
}

// CommitUpload implements Store.
func (t *traced) CommitUpload(ctx context.Context, id string, d reference.Digest) (int64, error) {
	ctx, span := t.start(ctx, "CommitUpload", uploadAttr(id), digestAttr(d))
	n, err := t.s.CommitUpload(ctx, id, d)
	if err == nil {
		span.SetAttributes(attribute.Int64("berth.size", n))
	}
	finish(span, err)
	return n, err
}

// AbortUpload implements Store.
func (t *traced) AbortUpload(ctx context.Context, id string) error {
	ctx, span := t.start(ctx, "AbortUpload", uploadAttr(id))
	err := t.s.AbortUpload(ctx, id)
	finish(span, err)
	return err
}

// StaleUploads implements Store.
func (t *traced) StaleUploads(ctx context.Context, before time.Time) ([]string, error) {
	ctx, span := t.start(ctx, "StaleUploads")
	ids, err := t.s.StaleUploads(ctx, before)
	finish(span, err)
	return ids, err
}

// tracedRedirector is a traced store whose blobs clients can download
// directly.
type tracedRedirector struct {
	*traced
	rd Redirector
}

// RedirectURL implements Redirector.
func (t *tracedRedirector) RedirectURL(ctx context.Context, d reference.Digest) (string, error) {
	ctx, span := t.start(ctx, "RedirectURL", digestAttr(d))
	u, err := t.rd.RedirectURL(ctx, d)
	finish(span, err)
	return u, err
}

var (
	_ Store      = (*traced)(nil)
	_ Redirector = (*tracedRedirector)(nil)
)

// Base returns the store under a Traced one (s itself otherwise), for the
// optional interfaces (Walker, Spooler) tracing does not wrap.
func Base(s Store) Store {
	switch t := s.(type) {
	case *traced:
		return t.s
	case *tracedRedirector:
		return t.s
	}
	return s
}

// PutLimit implements Putter: the wrapped store's limit, 0 when it is no
// Putter.
func (t *traced) PutLimit() int64 {
	if p, ok := t.s.(Putter); ok {
		return p.PutLimit()
	}
	return 0
}

// errNoPutter is what a traced store that wraps no Putter answers; callers
// check PutLimit first.
var errNoPutter = errors.New("blobstore: the store takes no whole blobs (PutLimit is 0)")

// PutBlob implements Putter.
func (t *traced) PutBlob(ctx context.Context, d reference.Digest, b []byte) error {
	p, ok := t.s.(Putter)
	if !ok {
		return errNoPutter
	}
	ctx, span := t.start(ctx, "PutBlob", digestAttr(d), attribute.Int("berth.size", len(b)))
	err := p.PutBlob(ctx, d, b)
	finish(span, err)
	return err
}

// PutUpload implements Putter.
func (t *traced) PutUpload(ctx context.Context, id string, d reference.Digest, b []byte) error {
	p, ok := t.s.(Putter)
	if !ok {
		return errNoPutter
	}
	ctx, span := t.start(ctx, "PutUpload", uploadAttr(id), digestAttr(d), attribute.Int("berth.size", len(b)))
	err := p.PutUpload(ctx, id, d, b)
	finish(span, err)
	return err
}

var _ Putter = (*traced)(nil)
