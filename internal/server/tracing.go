package server

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/berth-registry/berth/internal/api"
	"github.com/berth-registry/berth/internal/blobstore"
	"github.com/berth-registry/berth/internal/config"
	"github.com/berth-registry/berth/internal/httprec"
	"github.com/berth-registry/berth/internal/metrics"
	"github.com/berth-registry/berth/internal/tracing"
)

// tracingFlushTimeout bounds the export of the spans still queued at exit.
const tracingFlushTimeout = 5 * time.Second

// openTracing sets tracing up as the configuration and the OTEL_*
// environment say. Its shutdown, which exports the spans still queued, is
// the first closer and so runs last.
func (st *stores) openTracing(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	tp, err := tracing.Setup(ctx, tracing.Config{Mode: cfg.Tracing, ServiceVersion: cfg.Version, Log: log})
	if err != nil {
		return err
	}
	st.tracing = tp
	st.closers = append(st.closers, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), tracingFlushTimeout)
		defer cancel()
		return tp.Shutdown(ctx)
	})
	if tp.Enabled() {
		log.Info("tracing on: exporting spans over OTLP", "protocol", tp.Protocol)
	}
	return nil
}

// tracerProvider returns the provider the stores trace with, nil when
// tracing is off (so that they skip even the no-op calls).
func (st *stores) tracerProvider() trace.TracerProvider {
	if st.tracing == nil || !st.tracing.Enabled() {
		return nil
	}
	return st.tracing.TracerProvider()
}

// instrument makes the opened stores report to metrics (transactions,
// connection pools) and, with tracing on, to spans.
func (st *stores) instrument(cfg *config.Config) {
	tx := metrics.NewMetadataTx()
	st.meta.Instrument(st.tracerProvider(), tx)
	st.collectors = append(st.collectors, tx.Collectors()...)
	for name, db := range st.meta.Pools() {
		st.pools[name] = db
	}
	st.collectors = append(st.collectors, metrics.DBPools(st.pools)...)
	if tp := st.tracerProvider(); tp != nil {
		st.blobs = blobstore.Traced(st.blobs, cfg.Storage, tp)
	}
}

// traceRequests makes each request a server span (when tracing is on),
// except health checks and scrapes. It runs inside the metrics
// middleware, so that the span is named with the same route kinds.
func (s *Server) traceRequests(h http.Handler) http.Handler {
	tp := s.stores.tracing
	if tp == nil || !tp.Enabled() {
		return h
	}
	traced := tp.Middleware(describeSpan, h)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/healthz", "/readyz", "/metrics":
			h.ServeHTTP(w, r)
			return
		}
		traced.ServeHTTP(w, r)
	})
}

// describeSpan names a request's span after its method and route kind
// ("PUT manifest"), as metrics classify it, and adds the route template
// and the repository (of a valid path).
func describeSpan(r *http.Request, span trace.Span) {
	c := classify(r)
	span.SetName(httprec.Method(r.Method) + " " + c.Route)
	attrs := []attribute.KeyValue{attribute.String("berth.route", c.Route)}
	if rt, err := api.ParseRoute(r.URL.Path); err == nil {
		if tmpl := routeTemplate(rt.Kind); tmpl != "" {
			attrs = append(attrs, attribute.String("http.route", tmpl))
		}
		if rt.Name != "" {
			attrs = append(attrs, attribute.String("berth.repository", rt.Name))
		}
	}
	if c.Operation != "" {
		attrs = append(attrs, attribute.String("berth.operation", c.Operation))
	}
	span.SetAttributes(attrs...)
}

// routeTemplate is the path template of a Distribution API route.
func routeTemplate(k api.Kind) string {
	switch k {
	case api.KindBase:
		return "/v2/"
	case api.KindCatalog:
		return "/v2/_catalog"
	case api.KindTags:
		return "/v2/{name}/tags/list"
	case api.KindManifest:
		return "/v2/{name}/manifests/{reference}"
	case api.KindBlob:
		return "/v2/{name}/blobs/{digest}"
	case api.KindUploadStart:
		return "/v2/{name}/blobs/uploads/"
	case api.KindUpload:
		return "/v2/{name}/blobs/uploads/{uuid}"
	case api.KindReferrers:
		return "/v2/{name}/referrers/{digest}"
	}
	return ""
}
