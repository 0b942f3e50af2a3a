package tracing

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/berth-registry/berth/internal/httprec"
)

// recording returns a provider that keeps its spans in memory.
func recording() (*Provider, *tracetest.InMemoryExporter) {
	exp := tracetest.NewInMemoryExporter()
	return newProvider(sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp)), "test", "memory"), exp
}

func attrOf(s tracetest.SpanStub, key attribute.Key) attribute.Value {
	for _, kv := range s.Attributes {
		if kv.Key == key {
			return kv.Value
		}
	}
	return attribute.Value{}
}

func TestMiddleware(t *testing.T) {
	p, exp := recording()
	var inner trace.SpanContext
	h := p.Middleware(func(r *http.Request, span trace.Span) {
		span.SetName(r.Method + " thing")
	}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		inner = trace.SpanContextFromContext(r.Context())
		if r.URL.Path == "/fail" {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		w.WriteHeader(http.StatusCreated)
	}))

	const traceID, parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	r := httptest.NewRequest(http.MethodPut, "/v2/a/b/manifests/t", nil)
	r.Header.Set("traceparent", "00-"+traceID+"-"+parent+"-01")
	h.ServeHTTP(httptest.NewRecorder(), r)
	spans := exp.GetSpans()
	if len(spans) != 1 {
		t.Fatalf("%d spans, want 1", len(spans))
	}
	s := spans[0]
	if s.Name != "PUT thing" || s.SpanKind != trace.SpanKindServer {
		t.Errorf("span %q of kind %v, want PUT thing, server", s.Name, s.SpanKind)
	}
	if s.SpanContext.TraceID().String() != traceID || s.Parent.SpanID().String() != parent || !s.Parent.IsRemote() {
		t.Errorf("span in trace %s with parent %s, want the incoming %s and %s", s.SpanContext.TraceID(), s.Parent.SpanID(), traceID, parent)
	}
	if inner.SpanID() != s.SpanContext.SpanID() {
		t.Errorf("the handler's context holds span %s, not the server span %s", inner.SpanID(), s.SpanContext.SpanID())
	}
	if got := attrOf(s, "http.response.status_code").AsInt64(); got != 201 {
		t.Errorf("http.response.status_code = %d, want 201", got)
	}
	if got := attrOf(s, "http.request.method").AsString(); got != "PUT" {
		t.Errorf("http.request.method = %q", got)
	}
	if s.Status.Code != codes.Unset {
		t.Errorf("status %v for a 201", s.Status.Code)
	}

	// No trace context: a root span. A 5xx is an error. The metrics'
	// recorder, when there is one, is reused.
	exp.Reset()
	rec := &httprec.Recorder{ResponseWriter: httptest.NewRecorder()}
	r = httptest.NewRequest("BREW", "/fail", nil)
	h.ServeHTTP(rec, r)
	spans = exp.GetSpans()
	if len(spans) != 1 {
		t.Fatalf("%d spans, want 1", len(spans))
	}
	s = spans[0]
	if s.Parent.IsValid() {
		t.Errorf("a request without traceparent has parent %s", s.Parent.SpanID())
	}
	if s.Status.Code != codes.Error || attrOf(s, "http.response.status_code").AsInt64() != 502 {
		t.Errorf("a 502: status %v, code %d", s.Status.Code, attrOf(s, "http.response.status_code").AsInt64())
	}
	if got := attrOf(s, "http.request.method").AsString(); got != "_OTHER" {
		t.Errorf("an unknown method is %q, want _OTHER", got)
	}
	if rec.Status != http.StatusBadGateway {
		t.Errorf("recorder saw %d", rec.Status)
	}
}

type plainHandler struct{ name string }

func (plainHandler) ServeHTTP(http.ResponseWriter, *http.Request) {}

// TestMiddlewareOff checks that with tracing off the middleware is the
// handler itself: nothing is added to the request path.
func TestMiddlewareOff(t *testing.T) {
	h := plainHandler{"inner"}
	if got := Off().Middleware(func(*http.Request, trace.Span) {}, h); got != http.Handler(h) {
		t.Errorf("tracing off wraps the handler: %T", got)
	}
}
