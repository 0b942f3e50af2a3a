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
	Catalog(ctx context.Context, last string, n int) ([]string, error)
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
}

// Handler serves the console.
type Handler struct {
	opts   Options
	pages  map[string]*template.Template
	static http.Handler
	now    func() time.Time
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
	return &Handler{opts: opts, pages: pages, static: http.StripPrefix("/static/", http.FileServerFS(sub)), now: time.Now}, nil
}

// Routes are the console's paths, for the server's mux.
var Routes = []string{"GET /{$}", "GET /repo", "GET /image", "GET /login", "POST /login", "POST /logout",
	"GET /tag/delete", "POST /tag/delete", "GET /pull-secret", "POST /pull-secret",
	"GET /doctor", "POST /doctor", "GET /admin/users", "POST /admin/users", "GET /admin/audit",
	"GET /namespaces", "POST /namespaces", "GET /namespace", "POST /namespace",
	"GET /admin/gc", "POST /admin/gc", "GET /admin/policies", "POST /admin/policies", "GET /static/"}

// Owns reports whether path is one of the console's (for metrics).
func Owns(path string) bool {
	switch path {
	case "/", "/repo", "/image", "/login", "/logout", "/tag/delete", "/pull-secret", "/doctor", "/namespaces", "/namespace":
		return true
	}
	if strings.HasPrefix(path, "/admin/") {
		return true
	}
	return strings.HasPrefix(path, "/static/")
}

// Register mounts the console on mux.
func (h *Handler) Register(mux *http.ServeMux) {
	for _, pattern := range Routes {
		mux.Handle(pattern, h)
	}
}

// ServeHTTP sets the security headers and dispatches by path.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	setSecurityHeaders(w.Header())
	if strings.HasPrefix(r.URL.Path, "/static/") {
		if strings.HasSuffix(r.URL.Path, "/") { // no directory listings
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Cache-Control", "public, max-age=3600")
		h.static.ServeHTTP(w, r)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	v, err := h.viewer(r)
	if err != nil {
		h.fail(w, r, nil, err)
		return
	}
	switch {
	case r.URL.Path == "/login" && r.Method == http.MethodPost:
		err = h.signIn(w, r, v)
	case r.URL.Path == "/login":
		err = h.loginPage(w, r, v, "", http.StatusOK)
	case r.URL.Path == "/logout":
		err = h.signOut(w, r, v)
	case r.URL.Path == "/repo":
		err = h.repository(w, r, v)
	case r.URL.Path == "/image":
		err = h.image(w, r, v)
	case r.URL.Path == "/tag/delete" && r.Method == http.MethodPost:
		err = h.deleteTag(w, r, v)
	case r.URL.Path == "/tag/delete":
		err = h.confirmDeleteTag(w, r, v)
	case r.URL.Path == "/pull-secret" && r.Method == http.MethodPost:
		err = h.createPullSecret(w, r, v)
	case r.URL.Path == "/pull-secret":
		err = h.pullSecretForm(w, r, v)
	case r.URL.Path == "/doctor":
		err = h.doctor(w, r, v)
	case r.URL.Path == "/admin/users" && r.Method == http.MethodPost:
		err = h.changeUsers(w, r, v)
	case r.URL.Path == "/admin/users":
		err = h.users(w, r, v, "", http.StatusOK)
	case r.URL.Path == "/admin/audit":
		err = h.auditLog(w, r, v)
	case r.URL.Path == "/admin/gc":
		err = h.gcPage(w, r, v)
	case r.URL.Path == "/admin/policies" && r.Method == http.MethodPost:
		err = h.changePolicies(w, r, v)
	case r.URL.Path == "/admin/policies":
		err = h.policies(w, r, v, policiesPage{}, http.StatusOK)
	case r.URL.Path == "/namespaces" && r.Method == http.MethodPost:
		err = h.changeNamespaces(w, r, v)
	case r.URL.Path == "/namespaces":
		err = h.namespaces(w, r, v, "", http.StatusOK)
	case r.URL.Path == "/namespace" && r.Method == http.MethodPost:
		err = h.changeNamespace(w, r, v)
	case r.URL.Path == "/namespace":
		err = h.namespace(w, r, v, r.URL.Query().Get("name"), "", http.StatusOK)
	default:
		err = h.repositories(w, r, v)
	}
	if err != nil {
		h.fail(w, r, v, err)
	}
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
