package blobstore

import (
	"context"
	"errors"
	"net/http"
	"time"

	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// S3Observer is told of every HTTP request the S3 client sends (each
// attempt of an operation, retries apart): the operation ("PutObject"),
// its outcome (one of the S3Outcome constants) and how long it took.
type S3Observer func(operation, outcome string, elapsed time.Duration)

// Outcomes of an S3 request: a bounded set, for metric labels.
const (
	S3OK                 = "ok"
	S3NotFound           = "not_found"           // 404: a missing blob or upload, often an answer
	S3PreconditionFailed = "precondition_failed" // 412: a conditional write lost a race
	S3ClientError        = "client_error"        // other 4xx
	S3Throttled          = "throttled"           // 429, 503 (SlowDown)
	S3ServerError        = "server_error"        // other 5xx, or an error in a 2xx answer
	S3NetworkError       = "network_error"       // no answer
	S3Canceled           = "canceled"            // the caller gave up
)

// instrumentS3 adds to an S3 client's stack a middleware that observes
// and, with a tracer provider, traces each request. It sits at the end of
// the finalize step, after the retryer and signing, so it sees every
// attempt, and never presigning (which stops at signing).
func instrumentS3(tp trace.TracerProvider, observe S3Observer) func(*middleware.Stack) error {
	m := &s3Instrument{observe: observe}
	if tp != nil {
		m.tracer = tp.Tracer("github.com/berth-registry/berth/internal/blobstore")
	}
	return func(st *middleware.Stack) error { return st.Finalize.Add(m, middleware.After) }
}

type s3Instrument struct {
	tracer  trace.Tracer // nil: no spans
	observe S3Observer   // nil: no observations
}

// ID names the middleware in the stack.
func (*s3Instrument) ID() string { return "BerthInstrument" }

// HandleFinalize sends the request and reports it.
func (m *s3Instrument) HandleFinalize(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
	op := middleware.GetOperationName(ctx)
	var span trace.Span
	if m.tracer != nil && trace.SpanFromContext(ctx).IsRecording() { // no root spans, none under unsampled requests
		ctx, span = m.tracer.Start(ctx, "S3."+op, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(
			attribute.String("rpc.system", "aws-api"), attribute.String("rpc.service", "S3"), attribute.String("rpc.method", op)))
	}
	start := time.Now()
	out, md, err := next.HandleFinalize(ctx, in)
	status := s3Status(md, err)
	outcome := s3Outcome(ctx, status, err)
	if m.observe != nil {
		m.observe(op, outcome, time.Since(start))
	}
	if span != nil {
		if status != 0 {
			span.SetAttributes(attribute.Int("http.response.status_code", status))
		}
		span.SetAttributes(attribute.String("berth.s3.outcome", outcome))
		if err != nil && outcome != S3NotFound && outcome != S3PreconditionFailed {
			span.RecordError(err)
			span.SetStatus(codes.Error, outcome)
		}
		span.End()
	}
	return out, md, err
}

// s3Status is the HTTP status of the answer, 0 when there was none.
func s3Status(md middleware.Metadata, err error) int {
	if status := httpStatus(err); status != 0 {
		return status
	}
	if resp, ok := awsmiddleware.GetRawResponse(md).(*smithyhttp.Response); ok && resp != nil {
		return resp.StatusCode
	}
	return 0
}

// s3Outcome classifies a request by its status and error.
func s3Outcome(ctx context.Context, status int, err error) string {
	switch {
	case err == nil:
		return S3OK
	case isPreconditionFailed(err): // 412, or the 409 of racing conditional writes, as the store reads it
		return S3PreconditionFailed
	case status == http.StatusNotFound:
		return S3NotFound
	case status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable:
		return S3Throttled
	case status >= 400 && status < 500:
		return S3ClientError
	case status != 0:
		return S3ServerError
	case ctx.Err() != nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		return S3Canceled
	}
	return S3NetworkError
}
