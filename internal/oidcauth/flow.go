package oidcauth

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/berth-registry/berth/internal/auth"
)

// Sessions starts a console session for a person who signed in (package
// console).
type Sessions interface {
	StartSession(w http.ResponseWriter, r *http.Request, p *auth.Principal, next string) error
}

// Options configure the sign-in pages.
type Options struct {
	Provider *Provider
	Accounts *auth.Service
	// Sessions is the console; nil without one (a browser sign-in then
	// ends on a page that says how to sign the CLI in).
	Sessions Sessions
	// BaseURL is scheme://host of berth as the browser sees it; the
	// callback URL registered at the provider is BaseURL + CallbackPath.
	BaseURL  func(*http.Request) string
	ClientIP func(*http.Request) string
	Log      *slog.Logger
}

// Paths of the sign-in flow.
const (
	LoginPath    = "/oidc/login"
	CallbackPath = "/oidc/callback"
	// ConfirmPath is where the person confirms a CLI sign-in.
	ConfirmPath = "/oidc/cli"
	// TokenPath is where `berth login --oidc` trades its one-time code
	// (with its PKCE verifier) for a session.
	TokenPath = "/oidc/token"
)

const (
	// flowCookie holds a browser's sign-in in progress (sealed).
	flowCookie = "berth_oidc"
	// flowTTL bounds a sign-in at the provider; codeTTL the CLI's code.
	flowTTL = 10 * time.Minute
	codeTTL = 2 * time.Minute
	// grantTTL bounds the confirmation page of a CLI sign-in.
	grantTTL = 5 * time.Minute
)

// Handler serves the sign-in flow.
type Handler struct {
	opts Options

	mu   sync.Mutex
	used map[string]time.Time // CLI codes already traded, until they expire
}

// NewHandler returns the handler.
func NewHandler(opts Options) *Handler {
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	return &Handler{opts: opts, used: map[string]time.Time{}}
}

// Register adds the flow's routes to mux.
func (h *Handler) Register(mux *http.ServeMux) {
	mux.Handle("GET "+LoginPath, h.wrap(h.login))
	mux.Handle("GET "+CallbackPath, h.wrap(h.callback))
	mux.Handle("POST "+ConfirmPath, h.wrap(h.confirmCLI))
	mux.Handle("POST "+TokenPath, h.wrap(h.token))
}

// flowError is a refusal with the status and the one line shown for it.
type flowError struct {
	status int
	msg    string
}

func (e *flowError) Error() string { return e.msg }

func refuse(status int, format string, args ...any) error {
	return &flowError{status: status, msg: fmt.Sprintf(format, args...)}
}

var errorPage = template.Must(template.New("e").Parse(`<!doctype html><html><head><meta charset="utf-8"><title>Sign-in failed</title></head>
<body><h1>Sign-in failed</h1><p>{{.}}</p><p><a href="/login">Back to sign-in</a></p></body></html>
`))

// wrap renders a handler's error in one place: a flowError as its page (or
// JSON for the CLI's token endpoint), anything else as 500, logged.
func (h *Handler) wrap(fn func(http.ResponseWriter, *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		// The confirmation page must not be framed (click tricking); no
		// page here runs script or loads anything.
		w.Header().Set("Content-Security-Policy", "default-src 'none'; form-action 'self' http://127.0.0.1:*; frame-ancestors 'none'; base-uri 'none'")
		w.Header().Set("X-Frame-Options", "DENY")
		w.Header().Set("Referrer-Policy", "no-referrer")
		err := fn(w, r)
		if err == nil {
			return
		}
		var fe *flowError
		if !errors.As(err, &fe) {
			h.opts.Log.ErrorContext(r.Context(), "oidc sign-in", "path", r.URL.Path, "err", err)
			fe = &flowError{status: http.StatusInternalServerError, msg: "The sign-in could not be completed; try again, or ask an administrator to look at the server's log."}
		}
		if r.URL.Path == TokenPath {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(fe.status)
			_ = json.NewEncoder(w).Encode(map[string]string{"error": fe.msg})
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(fe.status)
		_ = errorPage.Execute(w, fe.msg)
	})
}

// flow is a sign-in in progress, sealed into the browser's flowCookie.
type flow struct {
	State    string `json:"s"`
	Nonce    string `json:"n"`
	Verifier string `json:"v"`
	Next     string `json:"next,omitempty"`
	// The CLI's loopback port, PKCE challenge and state, for `berth
	// login --oidc`.
	CLIPort      int    `json:"cp,omitempty"`
	CLIChallenge string `json:"cc,omitempty"`
	CLIState     string `json:"cs,omitempty"`
	Expires      int64  `json:"exp"`
}

var (
	// cliToken is a CLI's state or PKCE challenge: base64url, 16 to 128.
	cliToken = regexp.MustCompile(`^[A-Za-z0-9_-]{16,128}$`)
)

// login starts a sign-in: state, nonce and PKCE verifier sealed into a
// cookie, and the browser sent to the provider.
func (h *Handler) login(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	f := flow{State: random(), Nonce: random(), Verifier: random(), Next: q.Get("next"), Expires: time.Now().Add(flowTTL).Unix()}
	if port := q.Get("cli_port"); port != "" {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1024 || n > 65535 || !cliToken.MatchString(q.Get("cli_challenge")) || !cliToken.MatchString(q.Get("cli_state")) {
			return refuse(http.StatusBadRequest, "This CLI sign-in link is malformed (cli_port 1024-65535, cli_challenge and cli_state base64url); run berth login --oidc again.")
		}
		f.CLIPort, f.CLIChallenge, f.CLIState, f.Next = n, q.Get("cli_challenge"), q.Get("cli_state"), ""
	}
	sealed, err := h.opts.Provider.seal.seal("flow cookie", "", f)
	if err != nil {
		return err
	}
	u, err := h.opts.Provider.authURL(r.Context(), h.callbackURL(r), f.State, f.Nonce, f.Verifier)
	if err != nil {
		return err
	}
	http.SetCookie(w, &http.Cookie{Name: flowCookie, Value: sealed, Path: "/oidc/", MaxAge: int(flowTTL.Seconds()),
		HttpOnly: true, Secure: h.secure(r), SameSite: http.SameSiteLaxMode})
	http.Redirect(w, r, u, http.StatusFound)
	return nil
}

func (h *Handler) callbackURL(r *http.Request) string { return h.opts.BaseURL(r) + CallbackPath }

// secure reports whether the browser reaches berth over HTTPS (also
// behind a proxy that ends TLS): cookies are then Secure.
func (h *Handler) secure(r *http.Request) bool {
	return r.TLS != nil || strings.HasPrefix(h.opts.BaseURL(r), "https://")
}

// callback ends a sign-in: the state must be the browser's own (a forged
// or replayed callback is refused), the code is traded with the PKCE
// verifier, the ID token checked with the nonce; then the person signs in.
func (h *Handler) callback(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	c, err := r.Cookie(flowCookie)
	var f flow
	if err != nil || len(c.Value) > 4096 || h.opts.Provider.seal.open("flow cookie", "", c.Value, &f) != nil || time.Now().Unix() > f.Expires {
		return refuse(http.StatusBadRequest, "No sign-in is in progress in this browser (or it took longer than %s): start again.", flowTTL)
	}
	// One use: the cookie goes whatever the outcome.
	http.SetCookie(w, &http.Cookie{Name: flowCookie, Value: "", Path: "/oidc/", MaxAge: -1, HttpOnly: true, Secure: h.secure(r), SameSite: http.SameSiteLaxMode})
	if subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(f.State)) != 1 {
		return refuse(http.StatusBadRequest, "This sign-in answer is not for the sign-in this browser started (state mismatch): start again.")
	}
	if e := q.Get("error"); e != "" {
		return refuse(http.StatusUnauthorized, "The identity provider refused the sign-in: %s %s", e, q.Get("error_description"))
	}
	client := h.opts.ClientIP(r)
	si, err := h.opts.Provider.Exchange(r.Context(), h.callbackURL(r), q.Get("code"), f.Verifier, f.Nonce)
	if errors.Is(err, auth.ErrBadCredentials) {
		h.opts.Log.WarnContext(r.Context(), "oidc sign-in refused", "client", client, "reason", err.Error())
		return refuse(http.StatusUnauthorized, "The sign-in was refused: %v", err)
	}
	if err != nil {
		return err
	}
	p, err := h.opts.Accounts.SignInWith(r.Context(), h.opts.Provider, &si.Identity, client)
	if errors.Is(err, auth.ErrBadCredentials) {
		return refuse(http.StatusForbidden, "%s cannot sign in: %v", si.Name, err)
	}
	if err != nil {
		return err
	}
	if err := h.opts.Provider.Keep(r.Context(), si); err != nil {
		h.opts.Log.WarnContext(r.Context(), "oidc sign-in", "user", si.Name, "err", err)
	}
	switch {
	case f.CLIPort != 0:
		return h.askCLI(w, r, &f, p)
	case h.opts.Sessions != nil:
		return h.opts.Sessions.StartSession(w, r, p, f.Next)
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = fmt.Fprintf(w, "Signed in as %s.\nSign the CLI in with: berth login --oidc %s\nThen make a token for docker and CI: berth token create --name NAME\n", p.Name, h.opts.BaseURL(r))
	return nil
}

// random returns 32 random bytes, base64url (43 characters).
func random() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
