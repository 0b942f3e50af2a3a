package adminclient

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"time"
)

// GroupMapping gives a directory group's members a role in a namespace.
type GroupMapping struct {
	ID        int64     `json:"id,omitempty"`
	Group     string    `json:"group"`
	Namespace string    `json:"namespace"`
	Role      string    `json:"role"`
	CreatedAt time.Time `json:"created_at,omitzero"`
}

// AddGroupMapping adds (or changes the role of) a group mapping.
func (c *Client) AddGroupMapping(ctx context.Context, m GroupMapping) (GroupMapping, json.RawMessage, error) {
	var out GroupMapping
	raw, err := c.do(ctx, http.MethodPost, "/api/v1/group-mappings", m, &out)
	return out, raw, err
}

// GroupMappings lists the group mappings and returns the raw response.
func (c *Client) GroupMappings(ctx context.Context) ([]GroupMapping, json.RawMessage, error) {
	var out []GroupMapping
	raw, err := c.do(ctx, http.MethodGet, "/api/v1/group-mappings", nil, &out)
	return out, raw, err
}

// DeleteGroupMapping deletes a group mapping.
func (c *Client) DeleteGroupMapping(ctx context.Context, id int64) error {
	_, err := c.do(ctx, http.MethodDelete, "/api/v1/group-mappings/"+strconv.FormatInt(id, 10), nil, nil)
	return err
}

// UserGroups returns the directory groups berth last read for a user.
func (c *Client) UserGroups(ctx context.Context, name string) ([]string, error) {
	var out []string
	_, err := c.do(ctx, http.MethodGet, "/api/v1/users/"+seg(name)+"/groups", nil, &out)
	return out, err
}

// SetUserDisabled disables or enables a user.
func (c *Client) SetUserDisabled(ctx context.Context, name string, disabled bool) error {
	_, err := c.do(ctx, http.MethodPatch, "/api/v1/users/"+seg(name), struct {
		Disabled bool `json:"disabled"`
	}{disabled}, nil)
	return err
}

// PersonalToken is a personal access token; Secret only when created.
type PersonalToken struct {
	ID        int64     `json:"id"`
	Name      string    `json:"name"`
	Scopes    []string  `json:"scopes"`
	Actions   []string  `json:"actions"`
	ExpiresAt time.Time `json:"expires_at"`
	CreatedAt time.Time `json:"created_at,omitzero"`
	LastUsed  time.Time `json:"last_used_at,omitzero"`
	Revoked   bool      `json:"revoked"`
	Secret    string    `json:"secret,omitempty"`
}

// NewPersonalToken is the body of POST /api/v1/tokens.
type NewPersonalToken struct {
	Name      string   `json:"name"`
	Scopes    []string `json:"scopes,omitempty"`
	Actions   []string `json:"actions,omitempty"`
	ExpiresIn string   `json:"expires_in,omitempty"`
}

// CreatePersonalToken makes the signed-in person a token.
func (c *Client) CreatePersonalToken(ctx context.Context, t NewPersonalToken) (PersonalToken, json.RawMessage, error) {
	var out PersonalToken
	raw, err := c.do(ctx, http.MethodPost, "/api/v1/tokens", t, &out)
	return out, raw, err
}

// PersonalTokens lists the signed-in person's tokens.
func (c *Client) PersonalTokens(ctx context.Context) ([]PersonalToken, json.RawMessage, error) {
	var out []PersonalToken
	raw, err := c.do(ctx, http.MethodGet, "/api/v1/tokens", nil, &out)
	return out, raw, err
}

// RevokePersonalToken revokes one of the signed-in person's tokens.
func (c *Client) RevokePersonalToken(ctx context.Context, id int64) error {
	_, err := c.do(ctx, http.MethodDelete, "/api/v1/tokens/"+strconv.FormatInt(id, 10), nil, nil)
	return err
}

// OIDCSession is a session a person got by signing in through OpenID
// Connect: Secret stands for their password until ExpiresAt.
type OIDCSession struct {
	User      string `json:"user"`
	Secret    string `json:"secret"`
	ExpiresAt string `json:"expires_at"`
}

// OIDCSession trades the one-time code a browser sign-in handed the CLI
// on loopback, with the PKCE verifier of the challenge the CLI started
// it with, for a session.
func (c *Client) OIDCSession(ctx context.Context, code, verifier string) (OIDCSession, error) {
	var s OIDCSession
	_, err := c.do(ctx, http.MethodPost, "/oidc/token", map[string]string{"code": code, "code_verifier": verifier}, &s)
	return s, err
}

// EndSession ends the session the client signs in with on the server
// (after berth login --oidc).
func (c *Client) EndSession(ctx context.Context) error {
	_, err := c.do(ctx, http.MethodDelete, "/api/v1/session", nil, nil)
	return err
}
