package adminclient

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
)

// Webhook is an endpoint as GET /api/v1/webhooks lists it; Secret is set
// only in the answer to its creation.
type Webhook struct {
	Name      string   `json:"name"`
	Namespace string   `json:"namespace"`
	URL       string   `json:"url"`
	Events    []string `json:"events"`
	Format    string   `json:"format"`
	Timeout   string   `json:"timeout"`
	CreatedBy string   `json:"created_by"`
	CreatedAt string   `json:"created_at"`
	Secret    string   `json:"secret,omitempty"`
}

// NewWebhook is the body of POST /api/v1/webhooks.
type NewWebhook struct {
	Name      string   `json:"name"`
	Namespace string   `json:"namespace,omitempty"`
	URL       string   `json:"url"`
	Events    []string `json:"events,omitempty"`
	Format    string   `json:"format,omitempty"`
	Secret    string   `json:"secret,omitempty"`
	Timeout   string   `json:"timeout,omitempty"`
}

// WebhookDelivery is one event's delivery to an endpoint.
type WebhookDelivery struct {
	ID          int64  `json:"id"`
	Event       string `json:"event"`
	Action      string `json:"action"`
	Repository  string `json:"repository"`
	State       string `json:"state"`
	Attempts    int    `json:"attempts"`
	NextAttempt string `json:"next_attempt_at"`
	LastStatus  int    `json:"last_status"`
	LastError   string `json:"last_error"`
	CreatedAt   string `json:"created_at"`
	FinishedAt  string `json:"finished_at"`
}

// WebhookTest is the answer of POST /api/v1/webhooks/{name}/test.
type WebhookTest struct {
	OK     bool   `json:"ok"`
	Status int    `json:"status"`
	Error  string `json:"error"`
}

// AddWebhook registers an endpoint.
func (c *Client) AddWebhook(ctx context.Context, w NewWebhook) (Webhook, json.RawMessage, error) {
	var out Webhook
	raw, err := c.do(ctx, http.MethodPost, "/api/v1/webhooks", w, &out)
	return out, raw, err
}

// Webhooks lists the endpoints the caller manages.
func (c *Client) Webhooks(ctx context.Context) ([]Webhook, json.RawMessage, error) {
	var out []Webhook
	raw, err := c.do(ctx, http.MethodGet, "/api/v1/webhooks", nil, &out)
	return out, raw, err
}

// RemoveWebhook deletes an endpoint.
func (c *Client) RemoveWebhook(ctx context.Context, name string) error {
	_, err := c.do(ctx, http.MethodDelete, "/api/v1/webhooks/"+seg(name), nil, nil)
	return err
}

// TestWebhook sends a ping event to an endpoint.
func (c *Client) TestWebhook(ctx context.Context, name string) (WebhookTest, error) {
	var out WebhookTest
	_, err := c.do(ctx, http.MethodPost, "/api/v1/webhooks/"+seg(name)+"/test", nil, &out)
	return out, err
}

// WebhookDeliveries lists an endpoint's deliveries, newest first: of one
// state ("" for any), with ids below before (0: from the newest).
func (c *Client) WebhookDeliveries(ctx context.Context, name, state string, before int64, limit int) ([]WebhookDelivery, json.RawMessage, error) {
	q := url.Values{}
	if state != "" {
		q.Set("state", state)
	}
	if before > 0 {
		q.Set("before", strconv.FormatInt(before, 10))
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var out []WebhookDelivery
	raw, err := c.do(ctx, http.MethodGet, fmt.Sprintf("/api/v1/webhooks/%s/deliveries?%s", seg(name), q.Encode()), nil, &out)
	return out, raw, err
}

// RedeliverWebhook queues deliveries again (every dead one when ids is
// empty) and returns how many.
func (c *Client) RedeliverWebhook(ctx context.Context, name string, ids []int64) (int64, error) {
	var out struct {
		Queued int64 `json:"queued"`
	}
	_, err := c.do(ctx, http.MethodPost, "/api/v1/webhooks/"+seg(name)+"/redeliver", map[string][]int64{"ids": ids}, &out)
	return out.Queued, err
}
