package adminclient

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"time"
)

// Identity is the answer of GET /api/v1/whoami.
type Identity struct {
	Name  string `json:"name"`
	Admin bool   `json:"admin"`
}

// User is an account as listed by GET /api/v1/users.
type User struct {
	Name      string    `json:"name"`
	Admin     bool      `json:"admin"`
	CreatedAt time.Time `json:"created_at"`
	// Source is "local" or the directory the user signs in through.
	Source   string `json:"source"`
	Disabled bool   `json:"disabled"`
}

// NewUser is the body of POST /api/v1/users. An empty Password asks the
// server to generate one.
type NewUser struct {
	Name     string `json:"name"`
	Password string `json:"password,omitempty"`
	Admin    bool   `json:"admin"`
}

// CreatedUser is the answer of POST /api/v1/users. Password is set only
// when the server generated it.
type CreatedUser struct {
	Name     string `json:"name"`
	Admin    bool   `json:"admin"`
	Password string `json:"password,omitempty"`
}

// Namespace is a namespace as the caller sees it. Role is the caller's
// role in it, empty for admins who are not members.
type Namespace struct {
	Name      string    `json:"name"`
	Public    bool      `json:"public"`
	CreatedAt time.Time `json:"created_at"`
	Role      string    `json:"role"`
}

// Member is a user's role in a namespace.
type Member struct {
	User string `json:"user"`
	Role string `json:"role"`
}

// Robot is a namespace's robot account. Name is the full name, e.g.
// "team+ci".
type Robot struct {
	Name       string     `json:"name"`
	Namespace  string     `json:"namespace"`
	Scopes     []string   `json:"scopes"`
	Actions    []string   `json:"actions"`
	ExpiresAt  *time.Time `json:"expires_at"`
	CreatedAt  time.Time  `json:"created_at"`
	LastUsedAt *time.Time `json:"last_used_at"`
	Revoked    bool       `json:"revoked"`
}

// NewRobot is the body of POST /api/v1/namespaces/{ns}/robots. Name is the
// short name ("ci"); ExpiresIn is a Go duration or "Nd", empty for never.
type NewRobot struct {
	Name      string   `json:"name"`
	Scopes    []string `json:"scopes"`
	Actions   []string `json:"actions"`
	ExpiresIn string   `json:"expires_in,omitempty"`
}

// CreatedRobot is a new robot with its secret, which the server shows
// only once.
type CreatedRobot struct {
	Robot
	Secret string `json:"secret"`
}

// Roles lists the namespace roles, weakest first.
var Roles = []string{"reader", "writer", "maintainer", "owner"}

// Actions lists the actions a robot can be granted.
var Actions = []string{"pull", "push", "delete"}

func seg(s string) string { return url.PathEscape(s) }

// WhoAmI returns the identity the credentials belong to.
func (c *Client) WhoAmI(ctx context.Context) (Identity, error) {
	var id Identity
	_, err := c.do(ctx, http.MethodGet, "/api/v1/whoami", nil, &id)
	return id, err
}

// ListUsers returns all accounts (admins only) and the raw response.
func (c *Client) ListUsers(ctx context.Context) ([]User, json.RawMessage, error) {
	var users []User
	raw, err := c.do(ctx, http.MethodGet, "/api/v1/users", nil, &users)
	return users, raw, err
}

// CreateUser creates an account.
func (c *Client) CreateUser(ctx context.Context, u NewUser) (CreatedUser, json.RawMessage, error) {
	var out CreatedUser
	raw, err := c.do(ctx, http.MethodPost, "/api/v1/users", u, &out)
	return out, raw, err
}

// DeleteUser deletes an account.
func (c *Client) DeleteUser(ctx context.Context, name string) error {
	_, err := c.do(ctx, http.MethodDelete, "/api/v1/users/"+seg(name), nil, nil)
	return err
}

// SetPassword sets a user's password; an empty password asks the server
// to generate one, which is returned.
func (c *Client) SetPassword(ctx context.Context, name, password string) (generated string, err error) {
	body := struct {
		Password string `json:"password,omitempty"`
	}{password}
	var out struct {
		Password string `json:"password"`
	}
	_, err = c.do(ctx, http.MethodPut, "/api/v1/users/"+seg(name)+"/password", body, &out)
	return out.Password, err
}

// ListNamespaces returns the namespaces the caller can see and the raw
// response.
func (c *Client) ListNamespaces(ctx context.Context) ([]Namespace, json.RawMessage, error) {
	var out []Namespace
	raw, err := c.do(ctx, http.MethodGet, "/api/v1/namespaces", nil, &out)
	return out, raw, err
}

// CreateNamespace creates a namespace.
func (c *Client) CreateNamespace(ctx context.Context, name string, public bool) (Namespace, error) {
	body := struct {
		Name   string `json:"name"`
		Public bool   `json:"public"`
	}{name, public}
	var out Namespace
	_, err := c.do(ctx, http.MethodPost, "/api/v1/namespaces", body, &out)
	return out, err
}

// SetNamespacePublic makes a namespace public (anonymous pull) or private.
func (c *Client) SetNamespacePublic(ctx context.Context, name string, public bool) (Namespace, error) {
	body := struct {
		Public bool `json:"public"`
	}{public}
	var out Namespace
	_, err := c.do(ctx, http.MethodPatch, "/api/v1/namespaces/"+seg(name), body, &out)
	return out, err
}

// DeleteNamespace deletes a namespace.
func (c *Client) DeleteNamespace(ctx context.Context, name string) error {
	_, err := c.do(ctx, http.MethodDelete, "/api/v1/namespaces/"+seg(name), nil, nil)
	return err
}

// ListMembers returns a namespace's members and the raw response.
func (c *Client) ListMembers(ctx context.Context, ns string) ([]Member, json.RawMessage, error) {
	var out []Member
	raw, err := c.do(ctx, http.MethodGet, "/api/v1/namespaces/"+seg(ns)+"/members", nil, &out)
	return out, raw, err
}

// SetMember adds a user to a namespace or changes their role.
func (c *Client) SetMember(ctx context.Context, ns, user, role string) (Member, error) {
	body := struct {
		Role string `json:"role"`
	}{role}
	var out Member
	_, err := c.do(ctx, http.MethodPut, "/api/v1/namespaces/"+seg(ns)+"/members/"+seg(user), body, &out)
	return out, err
}

// RemoveMember removes a user from a namespace.
func (c *Client) RemoveMember(ctx context.Context, ns, user string) error {
	_, err := c.do(ctx, http.MethodDelete, "/api/v1/namespaces/"+seg(ns)+"/members/"+seg(user), nil, nil)
	return err
}

// ListRobots returns a namespace's robots and the raw response.
func (c *Client) ListRobots(ctx context.Context, ns string) ([]Robot, json.RawMessage, error) {
	var out []Robot
	raw, err := c.do(ctx, http.MethodGet, "/api/v1/namespaces/"+seg(ns)+"/robots", nil, &out)
	return out, raw, err
}

// CreateRobot creates a robot in namespace ns and returns it with its
// secret, and the raw response.
func (c *Client) CreateRobot(ctx context.Context, ns string, r NewRobot) (CreatedRobot, json.RawMessage, error) {
	var out CreatedRobot
	raw, err := c.do(ctx, http.MethodPost, "/api/v1/namespaces/"+seg(ns)+"/robots", r, &out)
	return out, raw, err
}

// RevokeRobot revokes a robot; fullName is "ns+name".
func (c *Client) RevokeRobot(ctx context.Context, ns, fullName string) error {
	_, err := c.do(ctx, http.MethodDelete, "/api/v1/namespaces/"+seg(ns)+"/robots/"+seg(fullName), nil, nil)
	return err
}

// RotateKeys makes the server sign new tokens with a new key and returns
// the new key's id.
func (c *Client) RotateKeys(ctx context.Context) (kid string, err error) {
	var out struct {
		Kid string `json:"kid"`
	}
	_, err = c.do(ctx, http.MethodPost, "/api/v1/keys/rotate", nil, &out)
	return out.Kid, err
}

// GCReport is the answer of a garbage collection run.
type GCReport struct {
	DryRun    bool          `json:"dry_run"`
	Tags      []TagDeletion `json:"tags"`
	Manifests []GCManifest  `json:"manifests"`
	Unlinked  int           `json:"unlinked_blob_links"`
	Blobs     int           `json:"blobs"`
	Bytes     int64         `json:"bytes"`
}

// TagDeletion is a tag a retention policy deletes.
type TagDeletion struct {
	Repository string `json:"repository"`
	Tag        string `json:"tag"`
	Digest     string `json:"digest"`
	Reason     string `json:"reason"`
	PolicyID   int64  `json:"policy_id"`
}

// GCManifest is a manifest garbage collection removes.
type GCManifest struct {
	Repository string `json:"repository"`
	Digest     string `json:"digest"`
	Size       int64  `json:"size"`
}

// CollectGarbage runs garbage collection on the server (dry: only report).
func (c *Client) CollectGarbage(ctx context.Context, dryRun bool) (GCReport, json.RawMessage, error) {
	var out GCReport
	path := "/api/v1/gc"
	if dryRun {
		path += "?dry_run=true"
	}
	raw, err := c.do(ctx, http.MethodPost, path, nil, &out)
	return out, raw, err
}

// Usage is a namespace's stored bytes and quota (0: none).
type Usage struct {
	Namespace string `json:"namespace"`
	Used      int64  `json:"used_bytes"`
	Quota     int64  `json:"quota_bytes"`
}

// SetQuota sets a namespace's quota in bytes; 0 removes it.
func (c *Client) SetQuota(ctx context.Context, ns string, bytes int64) error {
	_, err := c.do(ctx, http.MethodPut, "/api/v1/namespaces/"+seg(ns)+"/quota", map[string]int64{"bytes": bytes}, nil)
	return err
}

// Usage returns a namespace's usage and quota.
func (c *Client) Usage(ctx context.Context, ns string) (Usage, error) {
	var u Usage
	_, err := c.do(ctx, http.MethodGet, "/api/v1/namespaces/"+seg(ns)+"/usage", nil, &u)
	return u, err
}

// ImmutableRule protects tags matching Tags in repositories matching
// Repositories.
type ImmutableRule struct {
	ID           int64  `json:"id"`
	Repositories string `json:"repositories"`
	Tags         string `json:"tags"`
}

// AddImmutableRule adds a rule and returns it with its id.
func (c *Client) AddImmutableRule(ctx context.Context, repos, tags string) (ImmutableRule, error) {
	var r ImmutableRule
	_, err := c.do(ctx, http.MethodPost, "/api/v1/immutable-rules", map[string]string{"repositories": repos, "tags": tags}, &r)
	return r, err
}

// ImmutableRules lists the rules.
func (c *Client) ImmutableRules(ctx context.Context) ([]ImmutableRule, json.RawMessage, error) {
	var rs []ImmutableRule
	raw, err := c.do(ctx, http.MethodGet, "/api/v1/immutable-rules", nil, &rs)
	return rs, raw, err
}

// DeleteImmutableRule removes a rule.
func (c *Client) DeleteImmutableRule(ctx context.Context, id int64) error {
	_, err := c.do(ctx, http.MethodDelete, fmt.Sprintf("/api/v1/immutable-rules/%d", id), nil, nil)
	return err
}

// RetentionPolicy says what to keep in the repositories matching
// Repositories; durations read as 30d, 72h or 90m, empty for off.
type RetentionPolicy struct {
	ID            int64    `json:"id,omitempty"`
	Repositories  string   `json:"repositories"`
	KeepLast      int      `json:"keep_last,omitempty"`
	KeepTags      []string `json:"keep_tags,omitempty"`
	UntaggedAfter string   `json:"untagged_after,omitempty"`
	UnpulledFor   string   `json:"unpulled_for,omitempty"`
}

// RetentionDryRun is what a policy would delete if saved and applied now.
type RetentionDryRun struct {
	Policy    RetentionPolicy `json:"policy"`
	Tags      []TagDeletion   `json:"tags"`
	Manifests []GCManifest    `json:"manifests"`
}

// AddRetentionPolicy stores a policy and returns it with its id.
func (c *Client) AddRetentionPolicy(ctx context.Context, p RetentionPolicy) (RetentionPolicy, error) {
	var out RetentionPolicy
	_, err := c.do(ctx, http.MethodPost, "/api/v1/retention-policies", p, &out)
	return out, err
}

// TryRetentionPolicy shows what a policy would delete now, storing nothing.
func (c *Client) TryRetentionPolicy(ctx context.Context, p RetentionPolicy) (RetentionDryRun, json.RawMessage, error) {
	var out RetentionDryRun
	raw, err := c.do(ctx, http.MethodPost, "/api/v1/retention-policies?dry_run=true", p, &out)
	return out, raw, err
}

// RetentionPolicies lists the policies.
func (c *Client) RetentionPolicies(ctx context.Context) ([]RetentionPolicy, json.RawMessage, error) {
	var ps []RetentionPolicy
	raw, err := c.do(ctx, http.MethodGet, "/api/v1/retention-policies", nil, &ps)
	return ps, raw, err
}

// DeleteRetentionPolicy removes a policy.
func (c *Client) DeleteRetentionPolicy(ctx context.Context, id int64) error {
	_, err := c.do(ctx, http.MethodDelete, fmt.Sprintf("/api/v1/retention-policies/%d", id), nil, nil)
	return err
}
