package server

import (
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/berth-registry/berth/internal/api"
	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/console"
	"github.com/berth-registry/berth/internal/metrics"
)

// instrument counts and times (metrics on) and traces (tracing on) the
// requests h serves; with both off it returns h itself.
func (s *Server) instrument(h http.Handler) http.Handler {
	h = s.traceRequests(h)
	if !s.cfg.MetricsOff {
		h = s.metrics.Middleware(classify, h)
	}
	return h
}

// classify names an answered request's route kind and the registry
// operation it carried out, for metrics. A registry API path is labelled
// by its shape (api.KindOf: its last segments), whether or not its name
// or digest is valid, so that classifying costs no parse, no allocation
// and no request copy: an invalid name is counted as a 4xx of its route.
func classify(r *http.Request) metrics.Classified {
	if k := api.KindOf(r.URL.Path); k != 0 {
		return classifyRoute(k, r)
	}
	p := r.URL.Path
	switch {
	case p == "/v2" || strings.HasPrefix(p, "/v2/"):
		return metrics.Classified{Route: metrics.RouteOther} // no route of the API
	case p == "/token" || strings.HasPrefix(p, "/token/"):
		return metrics.Classified{Route: metrics.RouteToken}
	case strings.HasPrefix(p, "/api/"):
		return metrics.Classified{Route: metrics.RouteAdmin}
	case p == "/healthz" || p == "/readyz":
		return metrics.Classified{Route: metrics.RouteHealth}
	case p == "/metrics":
		return metrics.Classified{Route: metrics.RouteMetrics}
	case console.Owns(p):
		return metrics.Classified{Route: metrics.RouteConsole}
	}
	return metrics.Classified{Route: metrics.RouteOther}
}

// classifyRoute maps a Distribution API route and method to its kind and
// operation.
func classifyRoute(k api.Kind, r *http.Request) metrics.Classified {
	switch k {
	case api.KindBase:
		return metrics.Classified{Route: metrics.RouteBase}
	case api.KindCatalog:
		return metrics.Classified{Route: metrics.RouteCatalog}
	case api.KindTags:
		return metrics.Classified{Route: metrics.RouteTags}
	case api.KindReferrers:
		return metrics.Classified{Route: metrics.RouteReferrers}
	case api.KindManifest:
		c := metrics.Classified{Route: metrics.RouteManifest}
		switch r.Method {
		case http.MethodPut:
			c.Operation, c.SuccessStatus = "manifest_push", http.StatusCreated
		case http.MethodGet:
			c.Operation, c.SuccessStatus = "manifest_pull", http.StatusOK
		case http.MethodDelete:
			c.Operation, c.SuccessStatus = "manifest_delete", http.StatusAccepted
		}
		return c
	case api.KindBlob:
		c := metrics.Classified{Route: metrics.RouteBlob}
		switch r.Method {
		case http.MethodGet:
			c.Operation, c.BlobBytes = "blob_pull", "out"
		case http.MethodDelete:
			c.Operation, c.SuccessStatus = "blob_delete", http.StatusAccepted
		}
		return c
	case api.KindUploadStart, api.KindUpload:
		c := metrics.Classified{Route: metrics.RouteUpload}
		if r.Method == http.MethodPost || r.Method == http.MethodPatch || r.Method == http.MethodPut {
			c.BlobBytes = "in"
		}
		switch {
		case r.Method == http.MethodPost && r.URL.Query().Has("mount"):
			c.Operation, c.SuccessStatus = "blob_mount", http.StatusCreated
		case r.Method == http.MethodPost || r.Method == http.MethodPut:
			c.Operation, c.SuccessStatus = "blob_upload", http.StatusCreated
		}
		return c
	}
	return metrics.Classified{Route: metrics.RouteOther}
}

// metricsEndpoint serves /metrics on the main listener: open without auth
// or with metrics_public, else to admins' Basic credentials (Prometheus'
// basic_auth).
func (s *Server) metricsEndpoint(g *guard) http.Handler {
	h := s.metrics.Handler()
	if g == nil || s.cfg.MetricsPublic {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pass, ok := r.BasicAuth()
		if !ok {
			w.Header().Set("WWW-Authenticate", `Basic realm="berth"`)
			http.Error(w, "metrics need an admin's credentials (or metrics_public, or metrics_addr)", http.StatusUnauthorized)
			return
		}
		p, err := g.auth.LoginAdmin(r.Context(), user, pass, g.origin.clientIP(r))
		var rl *auth.RateLimitedError
		switch {
		case errors.As(err, &rl):
			w.Header().Set("Retry-After", strconv.Itoa(int(rl.RetryAfter.Seconds())+1))
			http.Error(w, err.Error(), http.StatusTooManyRequests)
			return
		case errors.Is(err, auth.ErrBadCredentials):
			w.Header().Set("WWW-Authenticate", `Basic realm="berth"`)
			http.Error(w, "invalid credentials", http.StatusUnauthorized)
			return
		case errors.Is(err, auth.ErrForbidden):
			http.Error(w, err.Error(), http.StatusForbidden)
			return
		case err != nil:
			s.log.ErrorContext(r.Context(), "metrics login failed", "err", err)
			http.Error(w, "internal error", http.StatusInternalServerError)
			return
		case auth.RequireAdmin(p) != nil:
			http.Error(w, "metrics are for admins", http.StatusForbidden)
			return
		}
		h.ServeHTTP(w, r)
	})
}
