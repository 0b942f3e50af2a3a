// Package tokenapi serves the token endpoint of the distribution project's
// token authentication specification (GET with Basic credentials) and its
// OAuth2 variant (POST with grant_type password or refresh_token), and the
// JSON Web Key Set of the signing keys.
package tokenapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/errcode"
	"github.com/berth-registry/berth/internal/token"
)

// Handler serves /token and /token/jwks.
type Handler struct {
	auth *auth.Service
	log  *slog.Logger
	// ClientIP returns the address failed logins are counted against.
	ClientIP func(*http.Request) string
}

// New returns the token endpoint handler.
func New(a *auth.Service, log *slog.Logger, clientIP func(*http.Request) string) *Handler {
	return &Handler{auth: a, log: log, ClientIP: clientIP}
}

// Register adds the endpoints to mux.
func (h *Handler) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /token", h.get)
	mux.HandleFunc("POST /token", h.post)
	mux.HandleFunc("GET /token/jwks", h.jwks)
}

type response struct {
	Token        string `json:"token,omitempty"`
	AccessToken  string `json:"access_token"`
	ExpiresIn    int64  `json:"expires_in"`
	IssuedAt     string `json:"issued_at"`
	RefreshToken string `json:"refresh_token,omitempty"`
	Scope        string `json:"scope,omitempty"`
}

func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	var rl *auth.RateLimitedError
	switch {
	case errors.As(err, &rl):
		w.Header().Set("Retry-After", strconv.Itoa(int(rl.RetryAfter.Seconds())+1))
		errcode.Write(w, r, errcode.New(errcode.TooManyRequests, "%v", err))
	case errors.Is(err, auth.ErrBadCredentials):
		w.Header().Set("WWW-Authenticate", `Basic realm="berth"`)
		msg := "authentication failed: invalid user name, password or token"
		if err.Error() != auth.ErrBadCredentials.Error() {
			msg = "authentication failed: " + err.Error() // a revoked or expired robot whose secret was right
		}
		errcode.Write(w, r, errcode.New(errcode.Unauthorized, "%s", msg))
	case errors.Is(err, auth.ErrInvalid):
		errcode.Write(w, r, errcode.WithStatus(errcode.Unsupported, http.StatusBadRequest, "%v", err))
	default:
		h.log.ErrorContext(r.Context(), "token request failed", "err", err)
		errcode.Write(w, r, errcode.Wrap(err, "token request failed"))
	}
}

// issue grants the requested scopes to p and writes the token response.
func (h *Handler) issue(w http.ResponseWriter, r *http.Request, p *auth.Principal, scopes []string, refresh string, oauth bool) {
	requested, err := auth.ParseScopes(scopes)
	if err != nil {
		h.fail(w, r, errors.Join(auth.ErrInvalid, err))
		return
	}
	granted, err := h.auth.Grant(r.Context(), p, requested, h.ClientIP(r))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	tok, claims, err := h.auth.Issue(p, granted)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	res := response{AccessToken: tok, ExpiresIn: claims.Expiry - claims.IssuedAt,
		IssuedAt: time.Unix(claims.IssuedAt, 0).UTC().Format(time.RFC3339), RefreshToken: refresh}
	if oauth {
		res.Scope = formatScopes(granted)
	} else {
		res.Token = tok
	}
	b, _ := json.Marshal(res)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(b)
}

func formatScopes(granted []token.Access) string {
	parts := make([]string, 0, len(granted))
	for _, a := range granted {
		parts = append(parts, a.Type+":"+a.Name+":"+strings.Join(a.Actions, ","))
	}
	return strings.Join(parts, " ")
}

func (h *Handler) checkService(service string) error {
	if service != "" && service != h.auth.ServiceName() {
		return errors.Join(auth.ErrInvalid, errors.New("unknown service "+strconv.Quote(service)))
	}
	return nil
}

// get is the token specification's GET: Basic credentials (optional; none
// gets only what anonymous users may do), scope parameters, and
// offline_token=true for a refresh token.
func (h *Handler) get(w http.ResponseWriter, r *http.Request) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		// Malformed, or more parameters than Go parses (10,000): refused
		// whole, not read in part.
		h.fail(w, r, errors.Join(auth.ErrInvalid, fmt.Errorf("query: %w", err)))
		return
	}
	if err := h.checkService(q.Get("service")); err != nil {
		h.fail(w, r, err)
		return
	}
	p := h.auth.Anonymous(r.Context())
	refresh := ""
	if user, pass, ok := r.BasicAuth(); ok {
		if p, err = h.auth.Login(r.Context(), user, pass, h.ClientIP(r)); err != nil {
			h.fail(w, r, err)
			return
		}
		if q.Get("offline_token") == "true" {
			if refresh, err = h.auth.IssueRefresh(r.Context(), p); err != nil {
				h.fail(w, r, err)
				return
			}
		}
	}
	h.issue(w, r, p, q["scope"], refresh, false)
}

// post is the OAuth2 form: grant_type=password (with access_type=offline
// for a refresh token) or grant_type=refresh_token.
func (h *Handler) post(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		h.fail(w, r, errors.Join(auth.ErrInvalid, err))
		return
	}
	f := r.PostForm
	if err := h.checkService(f.Get("service")); err != nil {
		h.fail(w, r, err)
		return
	}
	var p *auth.Principal
	var err error
	refresh := ""
	switch f.Get("grant_type") {
	case "password":
		p, err = h.auth.Login(r.Context(), f.Get("username"), f.Get("password"), h.ClientIP(r))
		if err == nil && f.Get("access_type") == "offline" {
			refresh, err = h.auth.IssueRefresh(r.Context(), p)
		}
	case "refresh_token":
		refresh = f.Get("refresh_token")
		p, err = h.auth.Refresh(r.Context(), refresh, h.ClientIP(r))
	default:
		err = errors.Join(auth.ErrInvalid, errors.New("grant_type must be password or refresh_token"))
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	h.issue(w, r, p, f["scope"], refresh, true)
}

func (h *Handler) jwks(w http.ResponseWriter, r *http.Request) {
	b, err := h.auth.Keys().JWKS()
	if err != nil {
		h.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}
