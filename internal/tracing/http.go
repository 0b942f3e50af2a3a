package tracing

import (
	"net/http"
	"strconv"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/berth-registry/berth/internal/httprec"
)

// Describe names a request's server span once the handler has answered
// (e.g. "GET manifest": bounded, never a path) and may add attributes.
type Describe func(r *http.Request, span trace.Span)

// Middleware makes each request next serves a server span, the child of
// the trace context the request carries (W3C traceparent), and passes the
// span on in the request's context. The span ends when the answer has
// been written; describe then names it. Off, it returns next itself.
func (p *Provider) Middleware(describe Describe, next http.Handler) http.Handler {
	if !p.Enabled() {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := p.propagator.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		ctx, span := p.tracer.Start(ctx, httprec.Method(r.Method), trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(
				attribute.String("http.request.method", httprec.Method(r.Method)),
				attribute.String("url.path", r.URL.Path),
				attribute.String("url.scheme", scheme(r)),
				attribute.String("client.address", r.RemoteAddr),
				attribute.String("user_agent.original", r.UserAgent()),
				attribute.String("network.protocol.version", strconv.Itoa(r.ProtoMajor)+"."+strconv.Itoa(r.ProtoMinor)),
			))
		defer span.End()
		rec := httprec.Of(w)
		r = r.WithContext(ctx)
		next.ServeHTTP(rec, r)
		status := rec.Answered()
		span.SetAttributes(attribute.Int("http.response.status_code", status))
		if status >= 500 {
			span.SetStatus(codes.Error, http.StatusText(status))
		}
		describe(r, span)
	})
}

func scheme(r *http.Request) string {
	if r.TLS != nil {
		return "https"
	}
	return "http"
}
