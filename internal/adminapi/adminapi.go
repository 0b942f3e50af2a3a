// Package adminapi serves the administration API under /api/v1/: users,
// namespaces and their members, robot accounts and signing keys. Requests
// authenticate with HTTP Basic; the rules of who may do what live in
// package auth.
package adminapi

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/gc"
	"github.com/berth-registry/berth/internal/metadata"
)

// Handler serves /api/v1/.
type Handler struct {
	auth     *auth.Service
	log      *slog.Logger
	clientIP func(*http.Request) string
	// GC runs a garbage collection (dry: report only); admins only, and
	// owners for a dry run of a retention policy.
	GC func(ctx context.Context, o gc.Options) (*gc.Report, error)
	// extra are the routes of other packages (Handle).
	extra map[string]Endpoint
}

// New returns the admin API handler.
func New(a *auth.Service, log *slog.Logger, clientIP func(*http.Request) string) *Handler {
	return &Handler{auth: a, log: log, clientIP: clientIP}
}

// Endpoint serves one admin API route for an authenticated actor: it
// returns the status and the body to render as JSON, or an error (auth's
// ErrForbidden, ErrNotFound, ErrExists and ErrInvalid, wrapped or not,
// become 403, 404, 409 and 400; anything else 500).
type Endpoint func(w http.ResponseWriter, r *http.Request, actor *auth.Principal) (status int, body any, err error)

type endpoint = Endpoint

// Handle adds one more route, served like the built-in ones: packages of
// other capabilities (webhooks, the audit log) register their endpoints
// with it. Call it before Register.
func (h *Handler) Handle(pattern string, fn Endpoint) {
	if h.extra == nil {
		h.extra = map[string]Endpoint{}
	}
	h.extra[pattern] = fn
}

// Register adds the endpoints to mux.
func (h *Handler) Register(mux *http.ServeMux) {
	routes := map[string]endpoint{
		"GET /api/v1/whoami":                            h.whoami,
		"GET /api/v1/users":                             h.listUsers,
		"POST /api/v1/users":                            h.createUser,
		"DELETE /api/v1/users/{name}":                   h.deleteUser,
		"PATCH /api/v1/users/{name}":                    h.patchUser,
		"PUT /api/v1/users/{name}/password":             h.setPassword,
		"GET /api/v1/namespaces":                        h.listNamespaces,
		"POST /api/v1/namespaces":                       h.createNamespace,
		"PATCH /api/v1/namespaces/{ns}":                 h.patchNamespace,
		"DELETE /api/v1/namespaces/{ns}":                h.deleteNamespace,
		"GET /api/v1/namespaces/{ns}/members":           h.members,
		"PUT /api/v1/namespaces/{ns}/members/{user}":    h.setMember,
		"DELETE /api/v1/namespaces/{ns}/members/{user}": h.removeMember,
		"GET /api/v1/namespaces/{ns}/robots":            h.listRobots,
		"POST /api/v1/namespaces/{ns}/robots":           h.createRobot,
		"DELETE /api/v1/namespaces/{ns}/robots/{name}":  h.revokeRobot,
		"POST /api/v1/keys/rotate":                      h.rotateKeys,
		"POST /api/v1/pull-credentials":                 h.pullCredential,
		"POST /api/v1/gc":                               h.collectGarbage,
		"PUT /api/v1/namespaces/{ns}/quota":             h.setQuota,
		"GET /api/v1/namespaces/{ns}/usage":             h.usage,
		"GET /api/v1/immutable-rules":                   h.listImmutable,
		"POST /api/v1/immutable-rules":                  h.addImmutable,
		"DELETE /api/v1/immutable-rules/{id}":           h.deleteImmutable,
		"GET /api/v1/retention-policies":                h.listRetention,
		"POST /api/v1/retention-policies":               h.addRetention,
		"DELETE /api/v1/retention-policies/{id}":        h.deleteRetention,
	}
	for pattern, fn := range h.extra {
		routes[pattern] = fn
	}
	for pattern, fn := range routes {
		mux.Handle(pattern, h.wrap(fn))
	}
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, errorBody{"no such endpoint: " + r.Method + " " + r.URL.Path})
	})
}

type errorBody struct {
	Error string `json:"error"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if v == nil {
		w.WriteHeader(status)
		return
	}
	b, _ := json.Marshal(v)
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// wrap authenticates the request, runs the endpoint and renders its result
// or error.
func (h *Handler) wrap(fn endpoint) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pass, ok := r.BasicAuth()
		if !ok {
			w.Header().Set("WWW-Authenticate", `Basic realm="berth"`)
			writeJSON(w, http.StatusUnauthorized, errorBody{"authentication required"})
			return
		}
		actor, err := h.auth.LoginAdmin(r.Context(), user, pass, h.clientIP(r))
		if err != nil {
			h.fail(w, r, err)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
		status, body, err := fn(w, r, actor)
		if err != nil {
			h.fail(w, r, err)
			return
		}
		writeJSON(w, status, body)
	})
}

// Routes are the endpoints of one capability (mirrors, replication) by
// mux pattern.
type Routes map[string]Endpoint

// Register adds the routes to the admin API (authenticated; the
// endpoints check who may do what).
func (rs Routes) Register(admin *Handler) {
	for pattern, fn := range rs {
		admin.Handle(pattern, fn)
	}
}

// ServeOpen serves the routes on mux without authentication, for an open
// registry (auth off): each endpoint gets a nil actor.
func (rs Routes) ServeOpen(mux *http.ServeMux, log *slog.Logger) {
	for pattern, fn := range rs {
		mux.Handle(pattern, Open(log, fn))
	}
}

// Decode reads a request's JSON body into v, refusing unknown fields; an
// empty body leaves v as it is. Its errors are answered with 400.
func Decode(r *http.Request, v any) error { return decode(r, v) }

// Open serves an endpoint without authentication, rendered as the admin
// API renders its own, for an open registry (auth off), where anyone may
// manage what it manages: the endpoint gets a nil actor.
func Open(log *slog.Logger, fn Endpoint) http.Handler {
	h := &Handler{log: log}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
		status, body, err := fn(w, r, nil)
		if err != nil {
			h.fail(w, r, err)
			return
		}
		writeJSON(w, status, body)
	})
}

func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	var rl *auth.RateLimitedError
	status := http.StatusInternalServerError
	switch {
	case errors.As(err, &rl):
		w.Header().Set("Retry-After", strconv.Itoa(int(rl.RetryAfter.Seconds())+1))
		status = http.StatusTooManyRequests
	case errors.Is(err, auth.ErrBadCredentials):
		w.Header().Set("WWW-Authenticate", `Basic realm="berth"`)
		msg := "invalid user name or password"
		if err.Error() != auth.ErrBadCredentials.Error() {
			msg = err.Error() // a revoked or expired robot whose secret was right
		}
		writeJSON(w, http.StatusUnauthorized, errorBody{msg})
		return
	case errors.Is(err, auth.ErrForbidden):
		status = http.StatusForbidden
	case errors.Is(err, auth.ErrNotFound):
		status = http.StatusNotFound
	case errors.Is(err, auth.ErrExists), errors.Is(err, gc.ErrBusy):
		status = http.StatusConflict
	case errors.Is(err, auth.ErrInvalid), errors.Is(err, errBadJSON):
		status = http.StatusBadRequest
	}
	if status == http.StatusInternalServerError {
		h.log.ErrorContext(r.Context(), "admin request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		writeJSON(w, status, errorBody{"internal error"})
		return
	}
	writeJSON(w, status, errorBody{err.Error()})
}

var errBadJSON = errors.New("request body is not the expected JSON")

// decode reads a JSON body into v; an empty body leaves v as it is.
func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		return errors.Join(errBadJSON, err)
	}
	return nil
}

func stamp(t time.Time) *string {
	if t.IsZero() {
		return nil
	}
	s := t.UTC().Format(time.RFC3339)
	return &s
}

type userJSON struct {
	Name     string  `json:"name"`
	Admin    bool    `json:"admin"`
	Created  *string `json:"created_at,omitempty"`
	Password string  `json:"password,omitempty"`
	// Source is "local", or the directory the user signs in through.
	Source   string `json:"source,omitempty"`
	Disabled bool   `json:"disabled,omitempty"`
}

type namespaceJSON struct {
	Name    string  `json:"name"`
	Public  bool    `json:"public"`
	Created *string `json:"created_at"`
	Role    string  `json:"role"`
}

type memberJSON struct {
	User string `json:"user"`
	Role string `json:"role"`
}

type robotJSON struct {
	Name      string   `json:"name"`
	Namespace string   `json:"namespace"`
	Scopes    []string `json:"scopes"`
	Actions   []string `json:"actions"`
	Expires   *string  `json:"expires_at"`
	Created   *string  `json:"created_at"`
	LastUsed  *string  `json:"last_used_at"`
	Revoked   bool     `json:"revoked"`
	Secret    string   `json:"secret,omitempty"`
}

func robotView(r *metadata.Robot) robotJSON {
	return robotJSON{Name: r.Name, Namespace: r.Namespace, Scopes: r.Scopes, Actions: r.Actions,
		Expires: stamp(r.Expires), Created: stamp(r.Created), LastUsed: stamp(r.LastUsed), Revoked: r.Revoked}
}
