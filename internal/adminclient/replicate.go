package adminclient

import (
	"context"
	"encoding/json"
	"net/http"
)

// ReplicationRun is what a pull rule's run did.
type ReplicationRun struct {
	StartedAt  string `json:"started_at"`
	FinishedAt string `json:"finished_at"`
	Copied     int64  `json:"copied"`
	Skipped    int64  `json:"skipped"`
	Failed     int64  `json:"failed"`
	Error      string `json:"error"`
}

// ReplicationRule is a rule as GET /api/v1/replication lists it; the
// server never shows the remote's password, only whether there is one.
type ReplicationRule struct {
	Name        string          `json:"name"`
	Direction   string          `json:"direction"`
	URL         string          `json:"url"`
	Filter      string          `json:"filter"`
	Tags        string          `json:"tags"`
	Username    string          `json:"username,omitempty"`
	HasPassword bool            `json:"has_password"`
	Every       string          `json:"every,omitempty"`
	Pending     int64           `json:"pending"`
	Dead        int64           `json:"dead"`
	LastError   string          `json:"last_error,omitempty"`
	LastRun     *ReplicationRun `json:"last_run,omitempty"`
	CreatedBy   string          `json:"created_by,omitempty"`
	CreatedAt   string          `json:"created_at"`
}

// NewReplicationRule is the body of POST /api/v1/replication.
type NewReplicationRule struct {
	Name      string `json:"name"`
	Direction string `json:"direction"`
	URL       string `json:"url"`
	Filter    string `json:"filter,omitempty"`
	Tags      string `json:"tags,omitempty"`
	Username  string `json:"username,omitempty"`
	Password  string `json:"password,omitempty"`
	Every     string `json:"every,omitempty"`
}

// AddReplicationRule records a rule.
func (c *Client) AddReplicationRule(ctx context.Context, r NewReplicationRule) (ReplicationRule, json.RawMessage, error) {
	var out ReplicationRule
	raw, err := c.do(ctx, http.MethodPost, "/api/v1/replication", r, &out)
	return out, raw, err
}

// ReplicationRules lists the rules with their status (admins only).
func (c *Client) ReplicationRules(ctx context.Context) ([]ReplicationRule, json.RawMessage, error) {
	var out []ReplicationRule
	raw, err := c.do(ctx, http.MethodGet, "/api/v1/replication", nil, &out)
	return out, raw, err
}

// RemoveReplicationRule deletes a rule and its queue.
func (c *Client) RemoveReplicationRule(ctx context.Context, name string) error {
	_, err := c.do(ctx, http.MethodDelete, "/api/v1/replication/"+seg(name), nil, nil)
	return err
}

// RunReplicationRule runs a pull rule now and returns what the run did.
func (c *Client) RunReplicationRule(ctx context.Context, name string) (ReplicationRun, json.RawMessage, error) {
	var out ReplicationRun
	raw, err := c.do(ctx, http.MethodPost, "/api/v1/replication/"+seg(name)+"/run", nil, &out)
	return out, raw, err
}

// RedeliverReplication queues a push rule's dead events again and returns
// how many.
func (c *Client) RedeliverReplication(ctx context.Context, name string) (int64, error) {
	var out struct {
		Queued int64 `json:"queued"`
	}
	_, err := c.do(ctx, http.MethodPost, "/api/v1/replication/"+seg(name)+"/redeliver", struct{}{}, &out)
	return out.Queued, err
}
