package api

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/berth-registry/berth/internal/errcode"
	"github.com/berth-registry/berth/internal/token"
)

// Guard is what the API needs from the auth service. A nil Guard serves an
// open registry.
type Guard interface {
	// Verify checks a bearer token; an expired but otherwise valid token
	// comes back with its claims and token.ErrExpired.
	Verify(ctx context.Context, tok string) (*token.Claims, error)
	// Challenge returns the realm and service of the WWW-Authenticate
	// challenge for a request.
	Challenge(r *http.Request) (realm, service string)
	// Viewer returns a predicate telling whether subject may pull a
	// repository, for listings and mounts that the token's scopes do not
	// cover.
	Viewer(ctx context.Context, subject string) (func(repo string) bool, error)
	// IsAdmin reports whether subject is an admin, who may move and delete
	// immutable tags.
	IsAdmin(ctx context.Context, subject string) bool
	// ClientIP returns the client's address (through trusted proxies).
	ClientIP(r *http.Request) string
}

// need is the access an endpoint requires.
type need struct {
	typ, name string
	action    string // the action checked
	scope     string // the actions a client should ask for
}

// required returns what a request to rt needs; ok is false for endpoints
// any valid token may reach (the base endpoint).
func required(r *http.Request, rt Route) (need, bool) {
	switch rt.Kind {
	case KindBase:
		return need{}, false
	case KindCatalog:
		return need{"registry", "catalog", "*", "*"}, true
	}
	switch {
	case r.Method == http.MethodDelete && (rt.Kind == KindManifest || rt.Kind == KindBlob):
		return need{"repository", rt.Name, "delete", "delete"}, true
	case r.Method == http.MethodGet || r.Method == http.MethodHead:
		// Reads need pull, an upload's status included (as in CNCF
		// Distribution: clients cache one token per kind of request).
		return need{"repository", rt.Name, "pull", "pull"}, true
	}
	return need{"repository", rt.Name, "push", "pull,push"}, true
}

// authorize checks the request's bearer token against what rt needs. It
// returns the verified claims, or an error that ServeHTTP renders: 401 with
// a challenge when credentials are missing or invalid, 403 when they do not
// allow the request.
func (h *Handler) authorize(w http.ResponseWriter, r *http.Request, rt Route) (*token.Claims, error) {
	nd, scoped := required(r, rt)
	challenge := func(msg string, err error) error {
		realm, service := h.guard.Challenge(r)
		v := `Bearer realm="` + realm + `",service="` + service + `"`
		if scoped {
			v += `,scope="` + nd.typ + ":" + nd.name + ":" + nd.scope + `"`
		}
		if err != nil {
			v += `,error="invalid_token"`
		}
		w.Header().Set("WWW-Authenticate", v)
		return errcode.New(errcode.Unauthorized, "%s", msg)
	}
	raw, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || raw == "" {
		return nil, challenge("authentication required", nil)
	}
	claims, err := h.guard.Verify(r.Context(), strings.TrimSpace(raw))
	if errors.Is(err, token.ErrExpired) && rt.Kind == KindUpload && claims != nil {
		// An upload may finish with the token that started it, so that a
		// push longer than a token's lifetime does not fail half-way.
		if id, lerr := h.svc.UploadTokenID(r.Context(), rt.Name, rt.UploadID); lerr == nil && id != "" && id == claims.ID {
			err = nil
		}
	}
	if err != nil {
		return nil, challenge("invalid token: "+err.Error(), err)
	}
	if !scoped || claims.Allows(nd.typ, nd.name, nd.action) {
		return claims, nil
	}
	if claims.Subject == "" {
		// Anonymous: ask for credentials rather than deny.
		return nil, challenge("authentication required", nil)
	}
	return nil, errcode.New(errcode.Denied, "requested access to the resource is denied").
		WithDetail([]map[string]string{{"Type": nd.typ, "Name": nd.name, "Action": nd.action}})
}
