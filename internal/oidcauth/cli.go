package oidcauth

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/json"
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/berth-registry/berth/internal/auth"
	"golang.org/x/oauth2"
)

// The CLI's sign-in (berth login --oidc): the browser signs in as for the
// console, the person confirms on a page that shows the code the CLI
// printed, and the browser brings the CLI on 127.0.0.1 a one-time code
// that only the CLI's PKCE verifier can trade for a session.

// cliCode is the one-time code a browser hands the CLI on loopback.
type cliCode struct {
	ID        string `json:"id"`
	User      string `json:"u"`
	Created   int64  `json:"c"`
	Challenge string `json:"cc"`
	Expires   int64  `json:"exp"`
}

// cliGrant is a signed-in person's consent waiting on the confirmation
// page: what toCLI needs.
type cliGrant struct {
	ID        string `json:"id"`
	User      string `json:"u"`
	Created   int64  `json:"c"`
	Port      int    `json:"p"`
	Challenge string `json:"cc"`
	State     string `json:"cs"`
	Expires   int64  `json:"exp"`
}

var confirmPage = template.Must(template.New("c").Parse(`<!doctype html><html><head><meta charset="utf-8"><title>Sign in the berth CLI</title></head>
<body><h1>Sign in the berth CLI?</h1>
<p>A <code>berth login --oidc</code> on this computer asks to act as <strong>{{.User}}</strong> for {{.TTL}}.</p>
<p>Continue only if you ran it just now and it shows this code: <strong id="confirm-code">{{.Code}}</strong>. Otherwise close this page: someone may be trying to sign in as you.</p>
<form method="post" action="{{.Action}}"><input type="hidden" name="grant" value="{{.Grant}}"><button type="submit" id="confirm">Sign the CLI in</button></form>
</body></html>
`))

// ConfirmCode is the code the CLI prints and the confirmation page shows
// for a PKCE challenge: the person checks that the page is for the CLI
// they started (a link someone else planted carries another challenge).
func ConfirmCode(challenge string) string {
	sum := sha256.Sum256([]byte("berth cli confirm " + challenge))
	c := base32.StdEncoding.EncodeToString(sum[:8]) // 60 bits shown
	return c[:4] + "-" + c[4:8] + "-" + c[8:12]
}

// askCLI asks the signed-in person to confirm the CLI sign-in before the
// browser hands the CLI anything: a sign-in link someone else made (with
// their own listener on this computer's loopback and their own PKCE
// challenge) would otherwise give them a session as this person without
// a click, when the provider signs the person in silently.
func (h *Handler) askCLI(w http.ResponseWriter, r *http.Request, f *flow, p *auth.Principal) error {
	grant, err := h.opts.Provider.seal.seal("cli grant", "", cliGrant{ID: random(), User: p.Name, Created: p.Created.UnixNano(), Port: f.CLIPort,
		Challenge: f.CLIChallenge, State: f.CLIState, Expires: time.Now().Add(grantTTL).Unix()})
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	return confirmPage.Execute(w, map[string]string{"User": p.Name, "Code": ConfirmCode(f.CLIChallenge), "Grant": grant,
		"Action": ConfirmPath, "TTL": h.opts.Accounts.SessionTTL().String()})
}

// confirmCLI hands the CLI waiting on loopback a one-time code bound to
// its PKCE challenge, once the person confirmed: only the process that
// started the sign-in can trade it.
func (h *Handler) confirmCLI(w http.ResponseWriter, r *http.Request) error {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	var g cliGrant
	if err := r.ParseForm(); err != nil || h.opts.Provider.seal.open("cli grant", "", r.PostForm.Get("grant"), &g) != nil || time.Now().Unix() > g.Expires {
		return refuse(http.StatusBadRequest, "This confirmation is unknown or older than %s: run berth login --oidc again.", grantTTL)
	}
	if !h.spend(g.ID, time.Unix(g.Expires, 0), time.Now()) {
		return refuse(http.StatusBadRequest, "This confirmation was used already: run berth login --oidc again.")
	}
	code, err := h.opts.Provider.seal.seal("cli code", "", cliCode{ID: random(), User: g.User, Created: g.Created,
		Challenge: g.Challenge, Expires: time.Now().Add(codeTTL).Unix()})
	if err != nil {
		return err
	}
	u := url.URL{Scheme: "http", Host: "127.0.0.1:" + strconv.Itoa(g.Port), Path: "/callback",
		RawQuery: url.Values{"code": {code}, "state": {g.State}}.Encode()}
	http.Redirect(w, r, u.String(), http.StatusSeeOther)
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
	if subtle.ConstantTimeCompare([]byte(oauth2.S256ChallengeFromVerifier(verifier)), []byte(c.Challenge)) != 1 {
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
