package api

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/berth-registry/berth/internal/errcode"
	"github.com/berth-registry/berth/internal/mirror"
	"github.com/berth-registry/berth/internal/registry"
	"github.com/berth-registry/berth/internal/token"
)

// Handler serves the Distribution API under /v2/.
type Handler struct {
	svc     *registry.Service
	log     *slog.Logger
	guard   Guard
	mirrors *mirror.Service // nil: no mirrors
}

// New returns the /v2/ handler; guard nil serves an open registry.
func New(svc *registry.Service, log *slog.Logger, guard Guard) *Handler {
	return &Handler{svc: svc, log: log, guard: guard}
}

type claimsKey struct{}

// subject returns the token subject of an authorized request ("" when
// anonymous), and whether auth is on at all.
func (h *Handler) subject(r *http.Request) (string, bool) {
	if h.guard == nil {
		return "", false
	}
	c, _ := r.Context().Value(claimsKey{}).(*token.Claims)
	if c == nil {
		return "", true
	}
	return c.Subject, true
}

// mayPush reports whether the request's token grants push on repo (any
// request may on an open registry).
func (h *Handler) mayPush(r *http.Request, repo string) bool {
	if h.guard == nil {
		return true
	}
	c, _ := r.Context().Value(claimsKey{}).(*token.Claims)
	return c != nil && c.Allows("repository", repo, "push")
}

// tokenID returns the id of the request's token, "" without auth.
func tokenID(r *http.Request) string {
	if c, _ := r.Context().Value(claimsKey{}).(*token.Claims); c != nil {
		return c.ID
	}
	return ""
}

// viewer returns a predicate telling whether the caller may pull a
// repository; without auth everything is visible.
func (h *Handler) viewer(r *http.Request) (func(string) bool, error) {
	sub, on := h.subject(r)
	if !on {
		return func(string) bool { return true }, nil
	}
	if c, _ := r.Context().Value(claimsKey{}).(*token.Claims); c != nil && c.Limited {
		// A token that grants less than its subject may do: only what it
		// grants itself.
		return func(repo string) bool { return c.Allows("repository", repo, "pull") }, nil
	}
	return h.guard.Viewer(r.Context(), sub)
}

type endpoint func(w http.ResponseWriter, r *http.Request, rt Route) error

// methods lists, per endpoint kind, the handler of each method.
func (h *Handler) methods(k Kind) map[string]endpoint {
	switch k {
	case KindBase:
		return map[string]endpoint{"GET": h.base, "HEAD": h.base}
	case KindCatalog:
		return map[string]endpoint{"GET": h.catalog}
	case KindTags:
		return map[string]endpoint{"GET": h.tags}
	case KindManifest:
		return map[string]endpoint{"GET": h.getManifest, "HEAD": h.getManifest, "PUT": h.putManifest, "DELETE": h.deleteManifest}
	case KindBlob:
		return map[string]endpoint{"GET": h.getBlob, "HEAD": h.headBlob, "DELETE": h.deleteBlob}
	case KindUploadStart:
		return map[string]endpoint{"POST": h.startUpload}
	case KindUpload:
		return map[string]endpoint{"GET": h.uploadStatus, "PATCH": h.patchUpload, "PUT": h.putUpload, "DELETE": h.cancelUpload}
	case KindReferrers:
		return map[string]endpoint{"GET": h.referrers}
	}
	return nil
}

// ServeHTTP parses the route once, picks the endpoint and renders any error.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	rt, err := ParseRoute(r.URL.Path)
	if err != nil {
		errcode.Write(w, r, err)
		return
	}
	fn := h.methods(rt.Kind)[r.Method]
	if fn == nil {
		errcode.Write(w, r, errcode.New(errcode.Unsupported, "method %s not allowed here", r.Method))
		return
	}
	if err := h.resolveMirror(r, &rt); err != nil {
		errcode.Write(w, r, err)
		return
	}
	if h.guard != nil {
		claims, err := h.authorize(w, r, rt)
		if err != nil {
			errcode.Write(w, r, err)
			return
		}
		r = r.WithContext(context.WithValue(r.Context(), claimsKey{}, claims))
	}
	if err := fn(w, r, rt); err != nil {
		e := errcode.As(err)
		switch {
		case e.Status == errcode.StatusClientClosed:
			h.log.DebugContext(r.Context(), "client disconnected", "method", r.Method, "path", r.URL.Path, "err", err)
		case e.Status >= 500:
			h.log.ErrorContext(r.Context(), "request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		}
		errcode.Write(w, r, e)
	}
}

func (h *Handler) base(w http.ResponseWriter, r *http.Request, _ Route) error {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", "2")
	if r.Method == http.MethodGet {
		_, _ = w.Write([]byte("{}"))
	}
	return nil
}
