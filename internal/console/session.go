package console

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/metadata"
)

// Cookies of the console.
const (
	sessionCookie = "berth_session"
	// loginCookie carries the sign-in form's CSRF token (double submit):
	// before signing in there is no session to hold it.
	loginCookie = "berth_login"
)

// viewer is who looks at a page.
type viewer struct {
	// p is the signed-in user, or the anonymous principal; nil without
	// authentication (everyone may read everything).
	p *auth.Principal
	// session is the signed-in session (nil when anonymous).
	session *metadata.ConsoleSession
	idHash  string
	// roles caches the viewer's namespace roles for permission checks.
	roles map[string]string
	// allowed caches, per namespace, what the viewer may do there.
	allowed map[string][]string
}

// SignedIn reports whether the viewer signed in.
func (v *viewer) SignedIn() bool { return v.session != nil }

// Name is the signed-in user's name.
func (v *viewer) Name() string {
	if v.p == nil || v.session == nil {
		return ""
	}
	return v.p.Name
}

// Admin reports whether the viewer is an administrator.
func (v *viewer) Admin() bool { return v.p != nil && v.p.Kind == auth.UserKind && v.p.Admin }

// CSRF is the token state-changing forms of a signed-in viewer carry.
func (v *viewer) CSRF() string {
	if v.session == nil {
		return ""
	}
	return v.session.CSRF
}

// AuthOff reports whether the registry runs without authentication.
func (v *viewer) AuthOff() bool { return v.p == nil }

// viewer finds the request's viewer from its session cookie. An unknown,
// expired or revoked session (the account deleted, its password changed,
// its rights lowered since: the account's epoch moved) is anonymous.
func (h *Handler) viewer(r *http.Request) (*viewer, error) {
	acc := h.opts.Accounts
	if acc == nil {
		return &viewer{}, nil
	}
	anon := &viewer{p: acc.Anonymous(r.Context())}
	c, err := r.Cookie(sessionCookie)
	if err != nil || c.Value == "" || len(c.Value) > 128 {
		return anon, nil
	}
	idHash := hashID(c.Value)
	s, err := h.opts.Store.ConsoleSession(r.Context(), idHash, h.now())
	if errors.Is(err, metadata.ErrNotFound) {
		return anon, nil
	}
	if err != nil {
		return nil, err
	}
	p, err := acc.Principal(r.Context(), s.Subject)
	if errors.Is(err, auth.ErrBadCredentials) || (err == nil && (p.Kind != auth.UserKind || acc.RevokedSince(r.Context(), s.Subject, s.Epoch))) {
		return anon, nil
	}
	if err != nil {
		return nil, err
	}
	// Use extends the session, written at most twice per SessionTTL.
	now := h.now()
	if left := s.Expires.Sub(now); left < h.opts.SessionTTL/2 {
		expires := now.Add(h.opts.SessionTTL)
		if limit := s.Created.Add(h.opts.MaxSessionAge); expires.After(limit) {
			expires = limit
		}
		if expires.After(s.Expires) {
			if err := h.opts.Store.TouchConsoleSession(r.Context(), idHash, now, expires); err != nil && !errors.Is(err, metadata.ErrNotFound) {
				return nil, err
			}
			s.LastSeen, s.Expires = now, expires
		}
	}
	return &viewer{p: p, session: s, idHash: idHash}, nil
}

// actions returns what the viewer may do on repo (pull, push, delete).
// Console viewers are users or anonymous, whose rights are per namespace,
// so the answer is kept per namespace for the rest of the request.
func (h *Handler) actions(r *http.Request, v *viewer, repo string) ([]string, error) {
	if v.p == nil {
		return []string{auth.Pull, auth.Push, auth.Delete}, nil
	}
	ns := auth.Namespace(repo)
	if acts, seen := v.allowed[ns]; seen {
		return acts, nil
	}
	if v.roles == nil && v.session != nil {
		roles, err := h.opts.Accounts.Roles(r.Context(), v.p)
		if err != nil {
			return nil, err
		}
		v.roles = roles
	}
	acts := h.opts.Accounts.Actions(r.Context(), v.p, repo, v.roles)
	if v.allowed == nil {
		v.allowed = map[string][]string{}
	}
	v.allowed[ns] = acts
	return acts, nil
}

// can reports whether the viewer may take action on repo.
func (h *Handler) can(r *http.Request, v *viewer, repo, action string) (bool, error) {
	acts, err := h.actions(r, v, repo)
	return slices.Contains(acts, action), err
}

// sameOrigin reports whether a state-changing request comes from a page
// of this console: its Origin (or, without one, its Referer) names this
// host. A browser always sends Origin on a cross-site POST.
func sameOrigin(r *http.Request) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" {
		return false
	}
	src := r.Header.Get("Origin")
	if src == "" {
		src = r.Header.Get("Referer")
	}
	if src == "" {
		return false
	}
	u, err := url.Parse(src)
	return err == nil && u.Host == r.Host && (u.Scheme == "http" || u.Scheme == "https")
}

// parseForm parses a POSTed form of at most 64 KiB.
func parseForm(r *http.Request) error {
	r.Body = http.MaxBytesReader(nil, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		return errorf(http.StatusBadRequest, "The form could not be read.")
	}
	return nil
}

// errForeignForm is the answer to a form from another origin or without
// the right token.
var errForeignForm = errorf(http.StatusForbidden, "This form was not sent from this console's page (missing or stale token, or another origin); reload the page and try again.")

// checkForm refuses a state-changing request from another origin or
// without the right CSRF token (403), and parses its form.
func checkForm(r *http.Request, want string) error {
	if err := parseForm(r); err != nil {
		return err
	}
	got := r.PostForm.Get("csrf")
	if !sameOrigin(r) || want == "" || subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1 {
		return errForeignForm
	}
	return nil
}

// loginPage renders the sign-in form with a fresh CSRF token.
func (h *Handler) loginPage(w http.ResponseWriter, r *http.Request, v *viewer, msg string, status int) error {
	if v.AuthOff() {
		return errorf(http.StatusNotFound, "This registry runs without authentication: there is nothing to sign in to.")
	}
	tok := randomToken()
	http.SetCookie(w, &http.Cookie{Name: loginCookie, Value: tok, Path: "/login", HttpOnly: true, Secure: r.TLS != nil,
		SameSite: http.SameSiteStrictMode, MaxAge: 3600})
	next := r.URL.Query().Get("next")
	if r.Method == http.MethodPost {
		next = r.PostForm.Get("next")
	}
	return h.render(w, r, "login", status, page{Title: "Sign in", Viewer: v, Data: map[string]string{
		"CSRF": tok, "Message": msg, "Next": localPath(next), "User": r.PostForm.Get("user"), "SSO": h.opts.SSOName}})
}

// signIn checks a user's password with the same limits as the token
// endpoint and starts a session. Robots cannot sign in.
func (h *Handler) signIn(w http.ResponseWriter, r *http.Request, v *viewer) error {
	if v.AuthOff() {
		return errorf(http.StatusNotFound, "This registry runs without authentication: there is nothing to sign in to.")
	}
	c, _ := r.Cookie(loginCookie)
	want := ""
	if c != nil {
		want = c.Value
	}
	if err := checkForm(r, want); err != nil {
		return err
	}
	user, pass := r.PostForm.Get("user"), r.PostForm.Get("password")
	p, err := h.opts.Accounts.LoginAdmin(r.Context(), user, pass, h.opts.ClientIP(r))
	var rl *auth.RateLimitedError
	switch {
	case errors.As(err, &rl):
		w.Header().Set("Retry-After", strconv.Itoa(int(rl.RetryAfter.Seconds())+1))
		return h.loginPage(w, r, v, "Too many sign-in attempts; try again in "+rl.RetryAfter.Round(1e9).String()+".", http.StatusTooManyRequests)
	case errors.Is(err, auth.ErrBadCredentials) || errors.Is(err, auth.ErrForbidden) || errors.Is(err, auth.ErrRevoked):
		return h.loginPage(w, r, v, "Wrong user name or password.", http.StatusUnauthorized)
	case err != nil:
		return err
	case p.Kind != auth.UserKind:
		return h.loginPage(w, r, v, "Robot accounts cannot sign in to the console; sign in as a user.", http.StatusForbidden)
	}
	return h.StartSession(w, r, p, r.PostForm.Get("next"))
}

// StartSession starts a console session for a person who signed in (with
// a password here, or through single sign-on) and sends the browser to
// next (a path of this console, else /).
func (h *Handler) StartSession(w http.ResponseWriter, r *http.Request, p *auth.Principal, next string) error {
	return h.startSession(w, r, p, next, h.now())
}

// startSession starts a session of a sign-in made at signedIn (now, or
// the time of the session it replaces: MaxSessionAge counts from there).
func (h *Handler) startSession(w http.ResponseWriter, r *http.Request, p *auth.Principal, next string, signedIn time.Time) error {
	if p.Kind != auth.UserKind {
		return errorf(http.StatusForbidden, "Robot accounts cannot sign in to the console; sign in as a user.")
	}
	id := randomToken()
	now := h.now()
	expires := now.Add(h.opts.SessionTTL)
	if limit := signedIn.Add(h.opts.MaxSessionAge); expires.After(limit) {
		expires = limit
	}
	s := metadata.ConsoleSession{IDHash: hashID(id), Subject: p.Subject(), Epoch: p.Epoch, CSRF: randomToken(),
		Created: signedIn, Expires: expires, LastSeen: now}
	if err := h.opts.Store.CreateConsoleSession(r.Context(), s); err != nil {
		return err
	}
	// The cookie may live as long as the session can (use extends the
	// session on the server; the server decides when it ends).
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: id, Path: "/", HttpOnly: true, Secure: r.TLS != nil,
		SameSite: http.SameSiteLaxMode, Expires: signedIn.Add(h.opts.MaxSessionAge)})
	http.SetCookie(w, &http.Cookie{Name: loginCookie, Value: "", Path: "/login", MaxAge: -1, HttpOnly: true, Secure: r.TLS != nil})
	http.Redirect(w, r, localPath(next), http.StatusSeeOther)
	return nil
}

// signOut ends the session on the server (the cookie alone would not).
func (h *Handler) signOut(w http.ResponseWriter, r *http.Request, v *viewer) error {
	if v.session == nil {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return nil
	}
	if err := checkForm(r, v.session.CSRF); err != nil {
		return err
	}
	if err := h.opts.Store.DeleteConsoleSession(r.Context(), v.idHash); err != nil {
		return err
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: r.TLS != nil,
		SameSite: http.SameSiteLaxMode})
	http.Redirect(w, r, "/", http.StatusSeeOther)
	return nil
}

// localPath returns next if it is a path of this console, else "/": a
// sign-in never redirects to another site. Control characters and
// backslashes are refused outright: browsers drop tabs and newlines from
// a Location and read "\" as "/", so "/\t/evil.example" would leave.
func localPath(next string) string {
	if len(next) > 1024 || !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") ||
		strings.ContainsFunc(next, func(r rune) bool { return r < 0x20 || r == 0x7f || r == '\\' }) {
		return "/"
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil {
		return "/"
	}
	return next
}

// randomToken returns 32 random bytes, base64url.
func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// hashID is what the database keeps of a session id.
func hashID(id string) string {
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:])
}
