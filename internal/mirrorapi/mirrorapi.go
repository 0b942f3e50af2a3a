// Package mirrorapi serves the mirrors of the admin API
// (/api/v1/mirrors): a thin HTTP layer over package mirror's rules,
// rendered by package adminapi. Upstream passwords go in and never out.
package mirrorapi

import (
	"fmt"
	"net/http"
	"time"

	"github.com/berth-registry/berth/internal/adminapi"
	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/metadata"
	"github.com/berth-registry/berth/internal/mirror"
)

type handler struct{ svc *mirror.Service }

func (h *handler) routes() adminapi.Routes {
	return adminapi.Routes{
		"GET /api/v1/mirrors":           h.list,
		"POST /api/v1/mirrors":          h.add,
		"PATCH /api/v1/mirrors/{name}":  h.update,
		"DELETE /api/v1/mirrors/{name}": h.remove,
	}
}

// Routes returns the mirror routes, for the admin API (Register; admins
// only) or, on an open registry, served without authentication
// (ServeOpen).
func Routes(svc *mirror.Service) adminapi.Routes { return (&handler{svc: svc}).routes() }

// Mirror is a mirror as the API shows it: never its password.
type Mirror struct {
	Name        string   `json:"name"`
	Namespace   string   `json:"namespace"`
	Upstream    string   `json:"upstream"`
	Username    string   `json:"username,omitempty"`
	HasPassword bool     `json:"has_password"`
	TagTTL      string   `json:"tag_ttl"`
	DockerHub   bool     `json:"docker_hub"`
	Hosts       []string `json:"hosts"`
	CreatedBy   string   `json:"created_by,omitempty"`
	Created     string   `json:"created_at"`
}

func mirrorJSON(m *metadata.Mirror) Mirror {
	ttl := m.TagTTL
	if ttl == 0 {
		ttl = mirror.DefaultTagTTL
	}
	hosts := m.Hosts
	if hosts == nil {
		hosts = []string{}
	}
	return Mirror{Name: m.Name, Namespace: m.Namespace, Upstream: m.Upstream, Username: m.Username, HasPassword: m.Password != "",
		TagTTL: ttl.String(), DockerHub: m.DockerHub, Hosts: hosts, CreatedBy: m.CreatedBy, Created: m.Created.UTC().Format(time.RFC3339)}
}

// Request is the body of POST /api/v1/mirrors and PATCH
// /api/v1/mirrors/{name}.
type Request struct {
	Name      string   `json:"name,omitempty"`
	Namespace string   `json:"namespace,omitempty"`
	Upstream  string   `json:"upstream,omitempty"`
	Username  string   `json:"username,omitempty"`
	Password  string   `json:"password,omitempty"`
	TagTTL    string   `json:"tag_ttl,omitempty"`
	DockerHub *bool    `json:"docker_hub,omitempty"`
	Hosts     []string `json:"hosts,omitempty"`
	// ClearCredentials (PATCH) makes the upstream anonymous.
	ClearCredentials bool `json:"clear_credentials,omitempty"`
}

func (req *Request) spec() (mirror.Spec, error) {
	sp := mirror.Spec{Name: req.Name, Namespace: req.Namespace, Upstream: req.Upstream, Username: req.Username, Password: req.Password,
		DockerHub: req.DockerHub != nil && *req.DockerHub, Hosts: req.Hosts}
	if req.TagTTL != "" {
		d, err := time.ParseDuration(req.TagTTL)
		if err != nil {
			return sp, fmt.Errorf("%w: tag_ttl %q: a duration such as 10m or 24h", auth.ErrInvalid, req.TagTTL)
		}
		sp.TagTTL = d
	}
	return sp, nil
}

func (h *handler) list(_ http.ResponseWriter, r *http.Request, actor *auth.Principal) (int, any, error) {
	ms, err := h.svc.List(r.Context(), actor)
	if err != nil {
		return 0, nil, err
	}
	out := []Mirror{}
	for i := range ms {
		out = append(out, mirrorJSON(&ms[i]))
	}
	return http.StatusOK, out, nil
}

func (h *handler) add(_ http.ResponseWriter, r *http.Request, actor *auth.Principal) (int, any, error) {
	var req Request
	if err := adminapi.Decode(r, &req); err != nil {
		return 0, nil, err
	}
	sp, err := req.spec()
	if err != nil {
		return 0, nil, err
	}
	m, err := h.svc.Add(r.Context(), actor, sp)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusCreated, mirrorJSON(m), nil
}

func (h *handler) update(_ http.ResponseWriter, r *http.Request, actor *auth.Principal) (int, any, error) {
	var req Request
	if err := adminapi.Decode(r, &req); err != nil {
		return 0, nil, err
	}
	req.Name = r.PathValue("name")
	// What the request leaves out stays as it is.
	cur, err := h.find(r, actor, req.Name)
	if err != nil {
		return 0, nil, err
	}
	if req.TagTTL == "" {
		req.TagTTL = cur.TagTTL.String()
	}
	if req.DockerHub == nil {
		req.DockerHub = &cur.DockerHub
	}
	if req.Hosts == nil {
		req.Hosts = cur.Hosts
	}
	sp, err := req.spec()
	if err != nil {
		return 0, nil, err
	}
	m, err := h.svc.Update(r.Context(), actor, sp, req.ClearCredentials)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, mirrorJSON(m), nil
}

func (h *handler) find(r *http.Request, actor *auth.Principal, name string) (*metadata.Mirror, error) {
	ms, err := h.svc.List(r.Context(), actor)
	if err != nil {
		return nil, err
	}
	for i := range ms {
		if ms[i].Name == name {
			return &ms[i], nil
		}
	}
	return nil, fmt.Errorf("%w: no mirror named %s", auth.ErrNotFound, name)
}

func (h *handler) remove(_ http.ResponseWriter, r *http.Request, actor *auth.Principal) (int, any, error) {
	return http.StatusNoContent, nil, h.svc.Remove(r.Context(), actor, r.PathValue("name"))
}
