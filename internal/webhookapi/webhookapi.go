// Package webhookapi serves the webhook endpoints of the admin API
// (/api/v1/webhooks): a thin HTTP layer over package webhook's rules,
// authenticated and rendered by package adminapi.
package webhookapi

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/berth-registry/berth/internal/adminapi"
	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/metadata"
	"github.com/berth-registry/berth/internal/webhook"
)

// Register adds the webhook routes to the admin API.
func Register(admin *adminapi.Handler, svc *webhook.Service) {
	h := &handler{svc: svc}
	admin.Handle("GET /api/v1/webhooks", h.list)
	admin.Handle("POST /api/v1/webhooks", h.add)
	admin.Handle("DELETE /api/v1/webhooks/{name}", h.remove)
	admin.Handle("POST /api/v1/webhooks/{name}/test", h.test)
	admin.Handle("GET /api/v1/webhooks/{name}/deliveries", h.deliveries)
	admin.Handle("POST /api/v1/webhooks/{name}/redeliver", h.redeliver)
}

type handler struct{ svc *webhook.Service }

// Endpoint is a webhook as the API shows it; Secret only in the answer to
// its creation.
type Endpoint struct {
	Name      string   `json:"name"`
	Namespace string   `json:"namespace"`
	URL       string   `json:"url"`
	Events    []string `json:"events"`
	Format    string   `json:"format"`
	Timeout   string   `json:"timeout"`
	CreatedBy string   `json:"created_by"`
	Created   string   `json:"created_at"`
	Secret    string   `json:"secret,omitempty"`
}

// Delivery is a delivery as the API shows it.
type Delivery struct {
	ID          int64  `json:"id"`
	Event       string `json:"event"`
	Action      string `json:"action"`
	Repository  string `json:"repository,omitempty"`
	State       string `json:"state"`
	Attempts    int    `json:"attempts"`
	NextAttempt string `json:"next_attempt_at,omitempty"`
	LastStatus  int    `json:"last_status,omitempty"`
	LastError   string `json:"last_error,omitempty"`
	Created     string `json:"created_at"`
	Finished    string `json:"finished_at,omitempty"`
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

func endpointJSON(e *metadata.WebhookEndpoint) Endpoint {
	return Endpoint{Name: e.Name, Namespace: e.Namespace, URL: e.URL, Events: e.Actions, Format: e.Format,
		Timeout: e.Timeout.String(), CreatedBy: e.CreatedBy, Created: stamp(e.Created), Secret: e.Secret}
}

func (h *handler) list(_ http.ResponseWriter, r *http.Request, actor *auth.Principal) (int, any, error) {
	es, err := h.svc.List(r.Context(), actor)
	if err != nil {
		return 0, nil, err
	}
	out := []Endpoint{}
	for i := range es {
		out = append(out, endpointJSON(&es[i]))
	}
	return http.StatusOK, out, nil
}

type addRequest struct {
	Name      string   `json:"name"`
	Namespace string   `json:"namespace"`
	URL       string   `json:"url"`
	Events    []string `json:"events"`
	Format    string   `json:"format"`
	Secret    string   `json:"secret"`
	Timeout   string   `json:"timeout"`
}

func (h *handler) add(_ http.ResponseWriter, r *http.Request, actor *auth.Principal) (int, any, error) {
	var req addRequest
	if err := adminapi.Decode(r, &req); err != nil {
		return 0, nil, err
	}
	sp := webhook.Spec{Name: req.Name, Namespace: req.Namespace, URL: req.URL, Actions: req.Events, Format: req.Format, Secret: req.Secret}
	if req.Timeout != "" {
		d, err := time.ParseDuration(req.Timeout)
		if err != nil {
			return 0, nil, fmt.Errorf("%w: timeout %q: a duration such as 10s", auth.ErrInvalid, req.Timeout)
		}
		sp.Timeout = d
	}
	e, err := h.svc.Add(r.Context(), actor, sp)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusCreated, endpointJSON(e), nil
}

func (h *handler) remove(_ http.ResponseWriter, r *http.Request, actor *auth.Principal) (int, any, error) {
	return http.StatusNoContent, nil, h.svc.Remove(r.Context(), actor, r.PathValue("name"))
}

func (h *handler) test(_ http.ResponseWriter, r *http.Request, actor *auth.Principal) (int, any, error) {
	res, err := h.svc.Test(r.Context(), actor, r.PathValue("name"))
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, map[string]any{"status": res.Status, "error": res.Error, "ok": res.Error == ""}, nil
}

func (h *handler) deliveries(_ http.ResponseWriter, r *http.Request, actor *auth.Principal) (int, any, error) {
	q := r.URL.Query()
	var before int64
	var limit int
	var err error
	if v := q.Get("before"); v != "" {
		if before, err = strconv.ParseInt(v, 10, 64); err != nil || before < 0 {
			return 0, nil, fmt.Errorf("%w: before=%q: a delivery id", auth.ErrInvalid, v)
		}
	}
	if v := q.Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 || limit > 1000 {
			return 0, nil, fmt.Errorf("%w: limit=%q: 1 to 1000", auth.ErrInvalid, v)
		}
	}
	ds, err := h.svc.Deliveries(r.Context(), actor, r.PathValue("name"), q.Get("state"), before, limit)
	if err != nil {
		return 0, nil, err
	}
	out := []Delivery{}
	for _, d := range ds {
		dj := Delivery{ID: d.ID, Event: d.Event.ID, Action: d.Event.Action, Repository: d.Event.Repository, State: d.State,
			Attempts: d.Attempts, LastStatus: d.LastStatus, LastError: d.LastError, Created: stamp(d.Event.Created), Finished: stamp(d.Finished)}
		if d.State == metadata.DeliveryPending {
			dj.NextAttempt = stamp(d.NextAttempt)
		}
		out = append(out, dj)
	}
	return http.StatusOK, out, nil
}

type redeliverRequest struct {
	IDs []int64 `json:"ids"`
}

func (h *handler) redeliver(_ http.ResponseWriter, r *http.Request, actor *auth.Principal) (int, any, error) {
	var req redeliverRequest
	if err := adminapi.Decode(r, &req); err != nil {
		return 0, nil, err
	}
	n, err := h.svc.Redeliver(r.Context(), actor, r.PathValue("name"), req.IDs)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, map[string]int64{"queued": n}, nil
}
