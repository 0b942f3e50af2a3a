// Package console is berth's web console: server-rendered pages (Go's
// html/template, embedded in the binary) over the registry and the
// account rules, for people in a browser. It knows nothing of SQL and
// decides nothing itself: what a viewer may see or do is the auth
// package's rules, what is stored the registry's.
package console

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"html/template"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/blobstore"
	"github.com/berth-registry/berth/internal/gc"
	"github.com/berth-registry/berth/internal/metadata"
	"github.com/berth-registry/berth/internal/reference"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Registry is what the console reads of the registry.
type Registry interface {
	CatalogWhere(ctx context.Context, last string, n, batch int, keep func(repo string) (bool, error)) ([]string, error)
	GetManifest(ctx context.Context, repo, ref string) (*metadata.Manifest, error)
	OpenBlob(ctx context.Context, repo string, d reference.Digest) (blobstore.Content, int64, error)
	Referrers(ctx context.Context, repo string, d reference.Digest, artifactType string) ([]metadata.Descriptor, error)
	ImmutableTags(ctx context.Context, repo string, tags []string) ([]string, error)
	DeleteManifest(ctx context.Context, repo, ref string) error
	Holders(ctx context.Context, d reference.Digest, limit int) (manifests, blobs []string, err error)
}

// Store is what the console keeps and reads in the metadata database:
// tags with their times, and the sign-in sessions.
type Store interface {
	TagInfos(ctx context.Context, repo string) ([]metadata.TagInfo, error)
	CreateConsoleSession(ctx context.Context, cs metadata.ConsoleSession) error
	ConsoleSession(ctx context.Context, idHash string, now time.Time) (*metadata.ConsoleSession, error)
	DeleteConsoleSession(ctx context.Context, idHash string) error
	TouchConsoleSession(ctx context.Context, idHash string, lastSeen, expires time.Time) error
	ListAudit(ctx context.Context, f metadata.AuditFilter) ([]metadata.AuditEntry, error)
	GCRuns(ctx context.Context, limit int) ([]metadata.GCRun, error)
}

// Accounts are the account rules (auth.Service); nil when the registry
// runs without authentication, where everyone may read everything.
type Accounts interface {
	LoginAdmin(ctx context.Context, name, secret, client string) (*auth.Principal, error)
	Principal(ctx context.Context, subject string) (*auth.Principal, error)
	RevokedSince(ctx context.Context, subject string, epoch int64) bool
	Anonymous(ctx context.Context) *auth.Principal
	Roles(ctx context.Context, p *auth.Principal) (map[string]string, error)
	Actions(ctx context.Context, p *auth.Principal, repo string, roles map[string]string) []string
	RequireOwner(ctx context.Context, actor *auth.Principal, ns string) error
	CreateRobot(ctx context.Context, actor *auth.Principal, ns, name string, scopes, actions []string, lifetime time.Duration) (*metadata.Robot, string, error)
	ListUsers(ctx context.Context, actor *auth.Principal) ([]metadata.User, error)
	CreateUser(ctx context.Context, actor *auth.Principal, name, password string, admin bool) (string, error)
	DeleteUser(ctx context.Context, actor *auth.Principal, name string) error
	ListNamespaces(ctx context.Context, actor *auth.Principal) ([]auth.NamespaceView, error)
	CreateNamespace(ctx context.Context, actor *auth.Principal, name string, public bool) (*metadata.Namespace, error)
	SetPublic(ctx context.Context, actor *auth.Principal, name string, public bool) (*metadata.Namespace, error)
	Members(ctx context.Context, actor *auth.Principal, ns string) ([]metadata.Member, error)
	SetMember(ctx context.Context, actor *auth.Principal, ns, user string, role auth.Role) error
	RemoveMember(ctx context.Context, actor *auth.Principal, ns, user string) error
	ListRobots(ctx context.Context, actor *auth.Principal, ns string) ([]metadata.Robot, error)
	RevokeRobot(ctx context.Context, actor *auth.Principal, ns, name string) error
	Usage(ctx context.Context, actor *auth.Principal, ns string) (used, quota int64, err error)
	SetQuota(ctx context.Context, actor *auth.Principal, ns string, bytes int64) error
	AddImmutableRule(ctx context.Context, actor *auth.Principal, repos, tags string) (int64, error)
	ImmutableRules(ctx context.Context, actor *auth.Principal) ([]metadata.ImmutableRule, error)
	DeleteImmutableRule(ctx context.Context, actor *auth.Principal, id int64) error
	CheckRetentionPolicy(ctx context.Context, actor *auth.Principal, p metadata.RetentionPolicy) error
	AddRetentionPolicy(ctx context.Context, actor *auth.Principal, p metadata.RetentionPolicy) (int64, error)
	RetentionPolicies(ctx context.Context, actor *auth.Principal) ([]metadata.RetentionPolicy, error)
	DeleteRetentionPolicy(ctx context.Context, actor *auth.Principal, id int64) error
	CreatePersonalToken(ctx context.Context, actor *auth.Principal, name string, scopes, actions []string, lifetime time.Duration) (*metadata.PersonalToken, string, error)
	PersonalTokens(ctx context.Context, actor *auth.Principal) ([]metadata.PersonalToken, error)
	RevokePersonalToken(ctx context.Context, actor *auth.Principal, id int64) error
	Epoch(ctx context.Context, subject string) int64
}

// Options configure the console.
type Options struct {
	Registry Registry
	Store    Store
	// Accounts is nil without authentication.
	Accounts Accounts
	// ClientIP returns a request's client address (for sign-in limits).
	ClientIP func(*http.Request) string
	// RunGC runs garbage collection (or a dry run): the server's collector.
	RunGC func(ctx context.Context, o gc.Options) (*gc.Report, error)
	// SelfAddr returns the address of the server's own listener, for the
	// Doctor page's probes of this registry (nil or "": the request's
	// host).
	SelfAddr func() string
	// SessionTTL is how long a sign-in lasts without use (default 12 h);
	// use extends it, up to MaxSessionAge after the sign-in (default 7
	// days).
	SessionTTL, MaxSessionAge time.Duration
	Log                       *slog.Logger
	// SSOName, when set, offers single sign-on on the sign-in page under
	// that name (package oidcauth serves /oidc/login).
	SSOName string
}

// Handler serves the console.
type Handler struct {
	opts   Options
	pages  map[string]*template.Template
	static http.Handler
	mux    *http.ServeMux
	now    func() time.Time
	// probeClient is the Doctor page's client of this registry.
	probeClient *http.Client
}

// New returns the console handler.
func New(opts Options) (*Handler, error) {
	if opts.SessionTTL <= 0 {
		opts.SessionTTL = 12 * time.Hour
	}
	if opts.MaxSessionAge <= 0 {
		opts.MaxSessionAge = 7 * 24 * time.Hour
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.ClientIP == nil {
		opts.ClientIP = func(r *http.Request) string { return r.RemoteAddr }
	}
	pages, err := parsePages()
	if err != nil {
		return nil, err
	}
	sub, err := fs.Sub(staticFS, "static")
	if err != nil {
		return nil, err
	}
	h := &Handler{opts: opts, pages: pages, static: http.StripPrefix("/static/", http.FileServerFS(sub)), now: time.Now}
	h.mux = h.routes()
	h.probeClient = h.selfClient()
	return h, nil
}

// endpoint serves one route of the console for a viewer.
type endpoint func(h *Handler, w http.ResponseWriter, r *http.Request, v *viewer) error

// endpoints are the console's routes (the server's mux patterns) and what
// serves each: the one list of them, which Register, Owns and the
// handler's own dispatch all read.
var endpoints = map[string]endpoint{
	"GET /{$}":   (*Handler).repositories,
	"GET /repo":  (*Handler).repository,
	"GET /image": (*Handler).image,
	"GET /login": func(h *Handler, w http.ResponseWriter, r *http.Request, v *viewer) error {
		return h.loginPage(w, r, v, "", http.StatusOK)
	},
	"POST /login":       (*Handler).signIn,
	"POST /logout":      (*Handler).signOut,
	"GET /tag/delete":   (*Handler).confirmDeleteTag,
	"POST /tag/delete":  (*Handler).deleteTag,
	"GET /pull-secret":  (*Handler).pullSecretForm,
	"POST /pull-secret": (*Handler).createPullSecret,
	"GET /doctor":       (*Handler).doctor,
	"POST /doctor":      (*Handler).doctor,
	"GET /namespaces": func(h *Handler, w http.ResponseWriter, r *http.Request, v *viewer) error {
		return h.namespaces(w, r, v, "", http.StatusOK)
	},
	"POST /namespaces": (*Handler).changeNamespaces,
	"GET /namespace": func(h *Handler, w http.ResponseWriter, r *http.Request, v *viewer) error {
		return h.namespace(w, r, v, r.URL.Query().Get("name"), "", http.StatusOK)
	},
	"POST /namespace": (*Handler).changeNamespace,
	"GET /admin/users": func(h *Handler, w http.ResponseWriter, r *http.Request, v *viewer) error {
		return h.users(w, r, v, "", http.StatusOK)
	},
	"POST /admin/users": (*Handler).changeUsers,
	"GET /admin/audit":  (*Handler).auditLog,
	"GET /admin/gc":     (*Handler).gcPage,
	"POST /admin/gc":    (*Handler).gcPage,
	"GET /admin/policies": func(h *Handler, w http.ResponseWriter, r *http.Request, v *viewer) error {
		return h.policies(w, r, v, policiesPage{}, http.StatusOK)
	},
	"POST /admin/policies": (*Handler).changePolicies,
	"GET /tokens":          (*Handler).tokens,
	"POST /tokens":         (*Handler).changeTokens,
}

// staticPattern serves the style sheet and script.
const staticPattern = "GET /static/"

// paths are the endpoints' paths, for Owns.
var paths = func() map[string]bool {
	m := map[string]bool{}
	for pattern := range endpoints {
		_, path, _ := strings.Cut(pattern, " ")
		m[strings.TrimSuffix(path, "{$}")] = true
	}
	return m
}()

// Owns reports whether path is one of the console's (for metrics).
func Owns(path string) bool {
	return paths[path] || strings.HasPrefix(path, "/static/")
}

// Register mounts the console on mux.
func (h *Handler) Register(mux *http.ServeMux) {
	for pattern := range endpoints {
		mux.Handle(pattern, h)
	}
	mux.Handle(staticPattern, h)
}

// ServeHTTP sets the security headers and serves the request's route.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	setSecurityHeaders(w.Header())
	h.mux.ServeHTTP(w, r)
}

// routes returns the console's own mux: the static files, and each
// endpoint given the request's viewer, its errors rendered as pages.
func (h *Handler) routes() *http.ServeMux {
	mux := http.NewServeMux()
	static := h.static
	mux.HandleFunc(staticPattern, func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/") { // no directory listings
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Cache-Control", "public, max-age=3600")
		static.ServeHTTP(w, r)
	})
	for pattern, fn := range endpoints {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "no-store")
			v, err := h.viewer(r)
			if err == nil {
				err = fn(h, w, r, v)
			}
			if err != nil {
				h.fail(w, r, v, err)
			}
		})
	}
	return mux
}

// setSecurityHeaders: no inline script may run, no page may be framed, and
// no URL leaves for other sites in a Referer.
func setSecurityHeaders(hd http.Header) {
	hd.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "+
		"object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("Referrer-Policy", "same-origin")
	hd.Set("X-Content-Type-Options", "nosniff")
}

// pageError is an error shown to the viewer with a status.
type pageError struct {
	status int
	msg    string
}

func (e *pageError) Error() string { return e.msg }

func errorf(status int, msg string) error { return &pageError{status: status, msg: msg} }

// fail renders an error page: the error's own status and message for a
// pageError, 500 and a log line otherwise.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, v *viewer, err error) {
	var pe *pageError
	if !errors.As(err, &pe) {
		h.opts.Log.ErrorContext(r.Context(), "console page failed", "path", r.URL.Path, "err", err)
		pe = &pageError{status: http.StatusInternalServerError, msg: "Something went wrong on the server; the log says what."}
	}
	if v == nil {
		v = &viewer{}
	}
	_ = h.render(w, r, "error", pe.status, page{Title: http.StatusText(pe.status), Viewer: v, Data: pe.msg})
}

// page is what every template gets.
type page struct {
	Title  string
	Viewer *viewer
	// Host is the registry's address as clients name it (for pull commands).
	Host string
	Data any
}

// render executes a page template into a buffer first, so that a
// template error becomes a 500, not half a page.
func (h *Handler) render(w http.ResponseWriter, r *http.Request, name string, status int, p page) error {
	t := h.pages[name]
	if t == nil {
		return errors.New("console: no template " + name)
	}
	if p.Host == "" {
		p.Host = r.Host
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", p); err != nil {
		return err
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, err := io.Copy(w, &buf)
	return err
}

// parsePages parses each page template with the layout.
func parsePages() (map[string]*template.Template, error) {
	funcs := template.FuncMap{
		"size":  humanSize,
		"ago":   ago,
		"short": shortDigest,
		"join":  strings.Join,
		"inc":   func(i int) int { return i + 1 },
		"dec":   func(i int) int { return i - 1 },
	}
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	pages := map[string]*template.Template{}
	for _, n := range names {
		base := strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")
		if base == "layout" || base == "adminnav" {
			continue
		}
		t, err := template.New(base).Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/adminnav.html", n)
		if err != nil {
			return nil, err
		}
		pages[base] = t
	}
	return pages, nil
}
