package adminclient

import (
	"context"
	"encoding/json"
	"net/http"
)

// Mirror is a pull-through mirror as GET /api/v1/mirrors lists it; the
// server never shows the upstream password, only whether there is one.
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
	CreatedAt   string   `json:"created_at"`
}

// MirrorRequest is the body of POST /api/v1/mirrors and PATCH
// /api/v1/mirrors/{name}. In a PATCH, what is left empty (nil DockerHub,
// nil Hosts) stays as it is; a non-nil empty Hosts clears the hosts.
type MirrorRequest struct {
	Name      string   `json:"name,omitempty"`
	Namespace string   `json:"namespace,omitempty"`
	Upstream  string   `json:"upstream,omitempty"`
	Username  string   `json:"username,omitempty"`
	Password  string   `json:"password,omitempty"`
	TagTTL    string   `json:"tag_ttl,omitempty"`
	DockerHub *bool    `json:"docker_hub,omitempty"`
	Hosts     []string `json:"hosts,omitzero"`
	// ClearCredentials (PATCH) makes the upstream anonymous.
	ClearCredentials bool `json:"clear_credentials,omitempty"`
}

// AddMirror records a mirror.
func (c *Client) AddMirror(ctx context.Context, m MirrorRequest) (Mirror, json.RawMessage, error) {
	var out Mirror
	raw, err := c.do(ctx, http.MethodPost, "/api/v1/mirrors", m, &out)
	return out, raw, err
}

// Mirrors lists the mirrors (admins only).
func (c *Client) Mirrors(ctx context.Context) ([]Mirror, json.RawMessage, error) {
	var out []Mirror
	raw, err := c.do(ctx, http.MethodGet, "/api/v1/mirrors", nil, &out)
	return out, raw, err
}

// UpdateMirror changes what m sets of mirror name; m.Name is ignored.
func (c *Client) UpdateMirror(ctx context.Context, name string, m MirrorRequest) (Mirror, json.RawMessage, error) {
	m.Name = ""
	var out Mirror
	raw, err := c.do(ctx, http.MethodPatch, "/api/v1/mirrors/"+seg(name), m, &out)
	return out, raw, err
}

// RemoveMirror deletes a mirror; what it cached stays.
func (c *Client) RemoveMirror(ctx context.Context, name string) error {
	_, err := c.do(ctx, http.MethodDelete, "/api/v1/mirrors/"+seg(name), nil, nil)
	return err
}
