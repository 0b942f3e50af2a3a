// Package ssoapi serves single sign-on's administration over the admin
// API: the rules that map directory groups to roles in namespaces, the
// groups berth last read for a user, and people's personal access tokens.
// The rules themselves are package auth's; this package only reads
// requests and renders answers.
package ssoapi

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/berth-registry/berth/internal/adminapi"
	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/metadata"
)

// Handler serves the endpoints.
type Handler struct{ auth *auth.Service }

// New returns the handler over the auth service.
func New(a *auth.Service) *Handler { return &Handler{auth: a} }

// Register adds the endpoints to the admin API.
func (h *Handler) Register(admin *adminapi.Handler) {
	admin.Handle("GET /api/v1/group-mappings", h.list)
	admin.Handle("POST /api/v1/group-mappings", h.add)
	admin.Handle("DELETE /api/v1/group-mappings/{id}", h.remove)
	admin.Handle("GET /api/v1/users/{name}/groups", h.groups)
	admin.Handle("GET /api/v1/tokens", h.listTokens)
	admin.Handle("POST /api/v1/tokens", h.createToken)
	admin.Handle("DELETE /api/v1/tokens/{id}", h.revokeToken)
	admin.Handle("DELETE /api/v1/session", h.endSession)
}

// endSession ends the session the request signed in with (berth logout
// after berth login --oidc).
func (h *Handler) endSession(_ http.ResponseWriter, r *http.Request, actor *auth.Principal) (int, any, error) {
	_, secret, _ := r.BasicAuth()
	if err := h.auth.EndSession(r.Context(), actor, secret); err != nil {
		return 0, nil, err
	}
	return http.StatusNoContent, nil, nil
}

// TokenJSON is a personal access token on the wire; Secret only in the
// answer that creates it.
type TokenJSON struct {
	ID        int64    `json:"id"`
	Name      string   `json:"name"`
	Scopes    []string `json:"scopes"`
	Actions   []string `json:"actions"`
	ExpiresAt string   `json:"expires_at"`
	CreatedAt string   `json:"created_at,omitempty"`
	LastUsed  string   `json:"last_used_at,omitempty"`
	Revoked   bool     `json:"revoked"`
	Secret    string   `json:"secret,omitempty"`
}

func tokenJSON(t *metadata.PersonalToken) TokenJSON {
	stamp := func(at time.Time) string {
		if at.IsZero() {
			return ""
		}
		return at.UTC().Format(time.RFC3339)
	}
	scopes := t.Scopes
	if scopes == nil {
		scopes = []string{}
	}
	return TokenJSON{ID: t.ID, Name: t.Name, Scopes: scopes, Actions: t.Actions, ExpiresAt: stamp(t.Expires),
		CreatedAt: stamp(t.Created), LastUsed: stamp(t.LastUsed), Revoked: t.Revoked}
}

func (h *Handler) listTokens(_ http.ResponseWriter, r *http.Request, actor *auth.Principal) (int, any, error) {
	ts, err := h.auth.PersonalTokens(r.Context(), actor)
	if err != nil {
		return 0, nil, err
	}
	out := make([]TokenJSON, 0, len(ts))
	for i := range ts {
		out = append(out, tokenJSON(&ts[i]))
	}
	return http.StatusOK, out, nil
}

func (h *Handler) createToken(_ http.ResponseWriter, r *http.Request, actor *auth.Principal) (int, any, error) {
	var in struct {
		Name      string   `json:"name"`
		Scopes    []string `json:"scopes"`
		Actions   []string `json:"actions"`
		ExpiresIn string   `json:"expires_in"`
	}
	if err := adminapi.Decode(r, &in); err != nil {
		return 0, nil, err
	}
	lifetime, err := auth.ParseExpiry(in.ExpiresIn)
	if err != nil {
		return 0, nil, err
	}
	t, secret, err := h.auth.CreatePersonalToken(r.Context(), actor, in.Name, in.Scopes, in.Actions, lifetime)
	if err != nil {
		return 0, nil, err
	}
	out := tokenJSON(t)
	out.Secret = secret
	return http.StatusCreated, out, nil
}

func (h *Handler) revokeToken(_ http.ResponseWriter, r *http.Request, actor *auth.Principal) (int, any, error) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		return 0, nil, fmt.Errorf("%w: the id is a positive number", auth.ErrInvalid)
	}
	return http.StatusNoContent, nil, h.auth.RevokePersonalToken(r.Context(), actor, id)
}

// MappingJSON is a group mapping on the wire.
type MappingJSON struct {
	ID        int64  `json:"id"`
	Group     string `json:"group"`
	Namespace string `json:"namespace"`
	Role      string `json:"role"`
	Created   string `json:"created_at,omitempty"`
}

func (h *Handler) list(_ http.ResponseWriter, r *http.Request, actor *auth.Principal) (int, any, error) {
	ms, err := h.auth.GroupMappings(r.Context(), actor)
	if err != nil {
		return 0, nil, err
	}
	out := make([]MappingJSON, 0, len(ms))
	for _, m := range ms {
		out = append(out, MappingJSON{ID: m.ID, Group: m.Group, Namespace: m.Namespace, Role: m.Role, Created: m.Created.UTC().Format(time.RFC3339)})
	}
	return http.StatusOK, out, nil
}

func (h *Handler) add(_ http.ResponseWriter, r *http.Request, actor *auth.Principal) (int, any, error) {
	var in MappingJSON
	if err := adminapi.Decode(r, &in); err != nil {
		return 0, nil, err
	}
	if in.ID != 0 || in.Created != "" {
		return 0, nil, fmt.Errorf("%w: id and created_at are not set by clients", auth.ErrInvalid)
	}
	id, err := h.auth.AddGroupMapping(r.Context(), actor, in.Group, in.Namespace, auth.Role(in.Role))
	if err != nil {
		return 0, nil, err
	}
	in.ID = id
	return http.StatusCreated, in, nil
}

func (h *Handler) remove(_ http.ResponseWriter, r *http.Request, actor *auth.Principal) (int, any, error) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		return 0, nil, fmt.Errorf("%w: the id is a positive number", auth.ErrInvalid)
	}
	return http.StatusNoContent, nil, h.auth.DeleteGroupMapping(r.Context(), actor, id)
}

func (h *Handler) groups(_ http.ResponseWriter, r *http.Request, actor *auth.Principal) (int, any, error) {
	gs, err := h.auth.UserGroups(r.Context(), actor, r.PathValue("name"))
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, gs, nil
}
