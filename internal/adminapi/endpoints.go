package adminapi

import (
	"fmt"
	"net/http"
	"strconv"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/gc"
)

func (h *Handler) whoami(_ http.ResponseWriter, _ *http.Request, a *auth.Principal) (int, any, error) {
	return http.StatusOK, userJSON{Name: a.Name, Admin: a.Admin}, nil
}

func (h *Handler) listUsers(_ http.ResponseWriter, r *http.Request, a *auth.Principal) (int, any, error) {
	users, err := h.auth.ListUsers(r.Context(), a)
	if err != nil {
		return 0, nil, err
	}
	out := []userJSON{}
	for _, u := range users {
		out = append(out, userJSON{Name: u.Name, Admin: u.Admin, Created: stamp(u.Created), Source: u.Source, Disabled: u.Disabled})
	}
	return http.StatusOK, out, nil
}

func (h *Handler) createUser(_ http.ResponseWriter, r *http.Request, a *auth.Principal) (int, any, error) {
	var in struct {
		Name     string `json:"name"`
		Password string `json:"password"`
		Admin    bool   `json:"admin"`
	}
	if err := decode(r, &in); err != nil {
		return 0, nil, err
	}
	generated, err := h.auth.CreateUser(r.Context(), a, in.Name, in.Password, in.Admin)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusCreated, userJSON{Name: in.Name, Admin: in.Admin, Password: generated}, nil
}

func (h *Handler) deleteUser(_ http.ResponseWriter, r *http.Request, a *auth.Principal) (int, any, error) {
	return http.StatusNoContent, nil, h.auth.DeleteUser(r.Context(), a, r.PathValue("name"))
}

// patchUser serves PATCH /api/v1/users/{name} {"disabled": bool}.
func (h *Handler) patchUser(_ http.ResponseWriter, r *http.Request, a *auth.Principal) (int, any, error) {
	var in struct {
		Disabled *bool `json:"disabled"`
	}
	if err := decode(r, &in); err != nil {
		return 0, nil, err
	}
	if in.Disabled == nil {
		return 0, nil, fmt.Errorf("%w: nothing to change (disabled)", auth.ErrInvalid)
	}
	return http.StatusNoContent, nil, h.auth.SetUserDisabled(r.Context(), a, r.PathValue("name"), *in.Disabled)
}

func (h *Handler) setPassword(_ http.ResponseWriter, r *http.Request, a *auth.Principal) (int, any, error) {
	var in struct {
		Password string `json:"password"`
	}
	if err := decode(r, &in); err != nil {
		return 0, nil, err
	}
	generated, err := h.auth.SetPassword(r.Context(), a, r.PathValue("name"), in.Password)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, struct {
		Password string `json:"password,omitempty"`
	}{generated}, nil
}

func (h *Handler) listNamespaces(_ http.ResponseWriter, r *http.Request, a *auth.Principal) (int, any, error) {
	nss, err := h.auth.ListNamespaces(r.Context(), a)
	if err != nil {
		return 0, nil, err
	}
	out := []namespaceJSON{}
	for _, ns := range nss {
		out = append(out, namespaceJSON{Name: ns.Name, Public: ns.Public, Created: stamp(ns.Created), Role: ns.Role})
	}
	return http.StatusOK, out, nil
}

func (h *Handler) createNamespace(_ http.ResponseWriter, r *http.Request, a *auth.Principal) (int, any, error) {
	var in struct {
		Name   string `json:"name"`
		Public bool   `json:"public"`
	}
	if err := decode(r, &in); err != nil {
		return 0, nil, err
	}
	ns, err := h.auth.CreateNamespace(r.Context(), a, in.Name, in.Public)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusCreated, namespaceJSON{Name: ns.Name, Public: ns.Public, Created: stamp(ns.Created)}, nil
}

func (h *Handler) patchNamespace(_ http.ResponseWriter, r *http.Request, a *auth.Principal) (int, any, error) {
	var in struct {
		Public *bool `json:"public"`
	}
	if err := decode(r, &in); err != nil {
		return 0, nil, err
	}
	if in.Public == nil {
		return 0, nil, errBadJSON
	}
	ns, err := h.auth.SetPublic(r.Context(), a, r.PathValue("ns"), *in.Public)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, namespaceJSON{Name: ns.Name, Public: ns.Public, Created: stamp(ns.Created)}, nil
}

func (h *Handler) deleteNamespace(_ http.ResponseWriter, r *http.Request, a *auth.Principal) (int, any, error) {
	return http.StatusNoContent, nil, h.auth.DeleteNamespace(r.Context(), a, r.PathValue("ns"))
}

func (h *Handler) members(_ http.ResponseWriter, r *http.Request, a *auth.Principal) (int, any, error) {
	ms, err := h.auth.Members(r.Context(), a, r.PathValue("ns"))
	if err != nil {
		return 0, nil, err
	}
	out := []memberJSON{}
	for _, m := range ms {
		out = append(out, memberJSON{m.User, m.Role})
	}
	return http.StatusOK, out, nil
}

func (h *Handler) setMember(_ http.ResponseWriter, r *http.Request, a *auth.Principal) (int, any, error) {
	var in struct {
		Role string `json:"role"`
	}
	if err := decode(r, &in); err != nil {
		return 0, nil, err
	}
	user := r.PathValue("user")
	if err := h.auth.SetMember(r.Context(), a, r.PathValue("ns"), user, auth.Role(in.Role)); err != nil {
		return 0, nil, err
	}
	return http.StatusOK, memberJSON{user, in.Role}, nil
}

func (h *Handler) removeMember(_ http.ResponseWriter, r *http.Request, a *auth.Principal) (int, any, error) {
	return http.StatusNoContent, nil, h.auth.RemoveMember(r.Context(), a, r.PathValue("ns"), r.PathValue("user"))
}

func (h *Handler) listRobots(_ http.ResponseWriter, r *http.Request, a *auth.Principal) (int, any, error) {
	robots, err := h.auth.ListRobots(r.Context(), a, r.PathValue("ns"))
	if err != nil {
		return 0, nil, err
	}
	out := []robotJSON{}
	for i := range robots {
		out = append(out, robotView(&robots[i]))
	}
	return http.StatusOK, out, nil
}

func (h *Handler) createRobot(_ http.ResponseWriter, r *http.Request, a *auth.Principal) (int, any, error) {
	var in struct {
		Name      string   `json:"name"`
		Scopes    []string `json:"scopes"`
		Actions   []string `json:"actions"`
		ExpiresIn string   `json:"expires_in"`
	}
	if err := decode(r, &in); err != nil {
		return 0, nil, err
	}
	lifetime, err := auth.ParseExpiry(in.ExpiresIn)
	if err != nil {
		return 0, nil, err
	}
	robot, secret, err := h.auth.CreateRobot(r.Context(), a, r.PathValue("ns"), in.Name, in.Scopes, in.Actions, lifetime)
	if err != nil {
		return 0, nil, err
	}
	out := robotView(robot)
	out.Secret = secret
	return http.StatusCreated, out, nil
}

func (h *Handler) revokeRobot(_ http.ResponseWriter, r *http.Request, a *auth.Principal) (int, any, error) {
	return http.StatusNoContent, nil, h.auth.RevokeRobot(r.Context(), a, r.PathValue("ns"), r.PathValue("name"))
}

func (h *Handler) rotateKeys(_ http.ResponseWriter, r *http.Request, a *auth.Principal) (int, any, error) {
	kid, err := h.auth.RotateKeys(r.Context(), a)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, struct {
		Kid string `json:"kid"`
	}{kid}, nil
}

// pullCredential trades the caller's credentials (typically a node's robot)
// for a short-lived password of the same account.
func (h *Handler) pullCredential(_ http.ResponseWriter, r *http.Request, a *auth.Principal) (int, any, error) {
	var in struct {
		TTL string `json:"ttl"`
	}
	if err := decode(r, &in); err != nil {
		return 0, nil, err
	}
	ttl, err := auth.ParseExpiry(in.TTL)
	if err != nil {
		return 0, nil, err
	}
	secret, expires, err := h.auth.IssuePullCredential(r.Context(), a, ttl)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusCreated, struct {
		Username string  `json:"username"`
		Password string  `json:"password"`
		Expires  *string `json:"expires_at"`
	}{a.Name, secret, stamp(expires)}, nil
}

// collectGarbage runs garbage collection now (?dry_run=true: report only).
func (h *Handler) collectGarbage(_ http.ResponseWriter, r *http.Request, a *auth.Principal) (int, any, error) {
	if !a.Admin || a.Kind != auth.UserKind {
		return 0, nil, fmt.Errorf("%w: only admins may collect garbage", auth.ErrForbidden)
	}
	if h.GC == nil {
		return 0, nil, fmt.Errorf("%w: garbage collection is not configured", auth.ErrInvalid)
	}
	report, err := h.GC(r.Context(), gc.Options{DryRun: r.URL.Query().Get("dry_run") == "true"})
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, report, nil
}

func (h *Handler) setQuota(_ http.ResponseWriter, r *http.Request, a *auth.Principal) (int, any, error) {
	var in struct {
		Bytes *int64 `json:"bytes"`
	}
	if err := decode(r, &in); err != nil {
		return 0, nil, err
	}
	if in.Bytes == nil {
		return 0, nil, errBadJSON
	}
	ns := r.PathValue("ns")
	if err := h.auth.SetQuota(r.Context(), a, ns, *in.Bytes); err != nil {
		return 0, nil, err
	}
	return http.StatusOK, usageJSON{Namespace: ns, Quota: *in.Bytes}, nil
}

type usageJSON struct {
	Namespace string `json:"namespace"`
	Used      int64  `json:"used_bytes"`
	Quota     int64  `json:"quota_bytes"`
}

func (h *Handler) usage(_ http.ResponseWriter, r *http.Request, a *auth.Principal) (int, any, error) {
	ns := r.PathValue("ns")
	used, quota, err := h.auth.Usage(r.Context(), a, ns)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, usageJSON{ns, used, quota}, nil
}

type ruleJSON struct {
	ID           int64   `json:"id"`
	Repositories string  `json:"repositories"`
	Tags         string  `json:"tags"`
	Created      *string `json:"created_at,omitempty"`
}

func (h *Handler) listImmutable(_ http.ResponseWriter, r *http.Request, a *auth.Principal) (int, any, error) {
	rules, err := h.auth.ImmutableRules(r.Context(), a)
	if err != nil {
		return 0, nil, err
	}
	out := []ruleJSON{}
	for _, x := range rules {
		out = append(out, ruleJSON{x.ID, x.Repositories, x.Tags, stamp(x.Created)})
	}
	return http.StatusOK, out, nil
}

func (h *Handler) addImmutable(_ http.ResponseWriter, r *http.Request, a *auth.Principal) (int, any, error) {
	var in struct {
		Repositories string `json:"repositories"`
		Tags         string `json:"tags"`
	}
	if err := decode(r, &in); err != nil {
		return 0, nil, err
	}
	id, err := h.auth.AddImmutableRule(r.Context(), a, in.Repositories, in.Tags)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusCreated, ruleJSON{ID: id, Repositories: in.Repositories, Tags: in.Tags}, nil
}

func (h *Handler) deleteImmutable(_ http.ResponseWriter, r *http.Request, a *auth.Principal) (int, any, error) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		return 0, nil, errBadJSON
	}
	return http.StatusNoContent, nil, h.auth.DeleteImmutableRule(r.Context(), a, id)
}
