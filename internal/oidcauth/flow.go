package oidcauth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
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

// cliCode is the one-time code a browser hands the CLI on loopback.
type cliCode struct {
	ID        string `json:"id"`
	User      string `json:"u"`
	Created   int64  `json:"c"`
	Challenge string `json:"cc"`
	Expires   int64  `json:"exp"`
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
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteLaxMode})
	http.Redirect(w, r, u, http.StatusFound)
	return nil
}

func (h *Handler) callbackURL(r *http.Request) string { return h.opts.BaseURL(r) + CallbackPath }

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
	http.SetCookie(w, &http.Cookie{Name: flowCookie, Value: "", Path: "/oidc/", MaxAge: -1, HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteLaxMode})
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
		return h.toCLI(w, r, &f, p)
	case h.opts.Sessions != nil:
		return h.opts.Sessions.StartSession(w, r, p, f.Next)
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = fmt.Fprintf(w, "Signed in as %s.\nSign the CLI in with: berth login --oidc %s\nThen make a token for docker and CI: berth token create --name NAME\n", p.Name, h.opts.BaseURL(r))
	return nil
}

// toCLI hands the CLI waiting on loopback a one-time code bound to its
// PKCE challenge: only the process that started the sign-in can trade it.
func (h *Handler) toCLI(w http.ResponseWriter, r *http.Request, f *flow, p *auth.Principal) error {
	code, err := h.opts.Provider.seal.seal("cli code", "", cliCode{ID: random(), User: p.Name, Created: p.Created.UnixNano(),
		Challenge: f.CLIChallenge, Expires: time.Now().Add(codeTTL).Unix()})
	if err != nil {
		return err
	}
	u := url.URL{Scheme: "http", Host: "127.0.0.1:" + strconv.Itoa(f.CLIPort), Path: "/callback",
		RawQuery: url.Values{"code": {code}, "state": {f.CLIState}}.Encode()}
	http.Redirect(w, r, u.String(), http.StatusFound)
	return nil
}

// TokenRequest is what the CLI sends TokenPath: the one-time code it got
// on loopback and the PKCE verifier of the challenge it started with.
type TokenRequest struct {
	Code     string `json:"code"`
	Verifier string `json:"code_verifier"`
}

// TokenResponse is the answer of TokenPath.
type TokenResponse struct {
	User      string `json:"user"`
	Secret    string `json:"secret"`
	ExpiresAt string `json:"expires_at"`
}

// token trades a CLI's one-time code and PKCE verifier for a session.
func (h *Handler) token(w http.ResponseWriter, r *http.Request) error {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	var in TokenRequest
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		return refuse(http.StatusBadRequest, "the request could not be read (want JSON with code and code_verifier)")
	}
	var c cliCode
	verifier := in.Verifier
	now := time.Now()
	if h.opts.Provider.seal.open("cli code", "", in.Code, &c) != nil || now.Unix() > c.Expires {
		return refuse(http.StatusBadRequest, "unknown or expired code: run berth login --oidc again")
	}
	sum := sha256.Sum256([]byte(verifier))
	if subtle.ConstantTimeCompare([]byte(base64.RawURLEncoding.EncodeToString(sum[:])), []byte(c.Challenge)) != 1 {
		return refuse(http.StatusBadRequest, "the code verifier does not match the sign-in's challenge")
	}
	if !h.spend(c.ID, time.Unix(c.Expires, 0), now) {
		return refuse(http.StatusBadRequest, "this code was used already: run berth login --oidc again")
	}
	p, err := h.opts.Accounts.Principal(r.Context(), c.User)
	if errors.Is(err, auth.ErrBadCredentials) || err == nil && p.Created.UnixNano() != c.Created {
		return refuse(http.StatusForbidden, "%s can no longer sign in", c.User)
	}
	if err != nil {
		return err
	}
	p.Via = auth.ViaPassword // the code stands for the sign-in it came from
	secret, expires, err := h.opts.Accounts.IssueSession(r.Context(), p)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(TokenResponse{User: p.Name, Secret: secret, ExpiresAt: expires.UTC().Format(time.RFC3339)})
}

// spend records a CLI code's use; false when it was used before.
func (h *Handler) spend(id string, expires, now time.Time) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for k, t := range h.used {
		if now.After(t) {
			delete(h.used, k)
		}
	}
	if _, ok := h.used[id]; ok {
		return false
	}
	h.used[id] = expires
	return true
}

// random returns 32 random bytes, base64url (43 characters).
func random() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
