// Package replicateapi serves the replication rules of the admin API
// (/api/v1/replication): a thin HTTP layer over package replicate,
// rendered by package adminapi. Remote passwords go in and never out.
package replicateapi

import (
	"fmt"
	"net/http"
	"time"

	"github.com/berth-registry/berth/internal/adminapi"
	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/metadata"
	"github.com/berth-registry/berth/internal/replicate"
)

type handler struct{ svc *replicate.Service }

func (h *handler) routes() adminapi.Routes {
	return adminapi.Routes{
		"GET /api/v1/replication":                   h.list,
		"POST /api/v1/replication":                  h.add,
		"DELETE /api/v1/replication/{name}":         h.remove,
		"POST /api/v1/replication/{name}/run":       h.run,
		"POST /api/v1/replication/{name}/redeliver": h.redeliver,
	}
}

// Routes returns the replication routes, for the admin API (Register; admins
// only) or, on an open registry, served without authentication
// (ServeOpen).
func Routes(svc *replicate.Service) adminapi.Routes { return (&handler{svc: svc}).routes() }

// Run is a pull rule's run as the API shows it.
type Run struct {
	Started  string `json:"started_at,omitempty"`
	Finished string `json:"finished_at,omitempty"`
	Copied   int64  `json:"copied"`
	Skipped  int64  `json:"skipped"`
	Failed   int64  `json:"failed"`
	Error    string `json:"error,omitempty"`
}

// Rule is a rule as the API shows it: never its password.
type Rule struct {
	Name        string `json:"name"`
	Direction   string `json:"direction"`
	URL         string `json:"url"`
	Filter      string `json:"filter"`
	Tags        string `json:"tags"`
	Username    string `json:"username,omitempty"`
	HasPassword bool   `json:"has_password"`
	Every       string `json:"every,omitempty"`
	// Pending and Dead count a push rule's queued and given-up events;
	// LastError is the newest failure of those not delivered.
	Pending   int64  `json:"pending"`
	Dead      int64  `json:"dead"`
	LastError string `json:"last_error,omitempty"`
	LastRun   *Run   `json:"last_run,omitempty"`
	CreatedBy string `json:"created_by,omitempty"`
	Created   string `json:"created_at"`
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

func runJSON(r metadata.ReplicationRun) *Run {
	return &Run{Started: stamp(r.Started), Finished: stamp(r.Finished), Copied: r.Copied, Skipped: r.Skipped, Failed: r.Failed, Error: r.Error}
}

func ruleJSON(r *replicate.Rule) Rule {
	out := Rule{Name: r.Endpoint.Name, Direction: r.Direction, URL: r.Endpoint.URL, Filter: r.Repositories, Tags: r.Tags,
		Username: r.Username, HasPassword: r.Password != "", Pending: r.Pending, Dead: r.Dead, LastError: r.LastError,
		CreatedBy: r.Endpoint.CreatedBy, Created: stamp(r.Endpoint.Created)}
	if r.Direction == metadata.ReplicatePull {
		out.Every = r.Interval.String()
		if !r.LastRun.Started.IsZero() {
			out.LastRun = runJSON(r.LastRun)
		}
	}
	return out
}

// Request is the body of POST /api/v1/replication.
type Request struct {
	Name      string `json:"name"`
	Direction string `json:"direction"`
	URL       string `json:"url"`
	Filter    string `json:"filter,omitempty"`
	Tags      string `json:"tags,omitempty"`
	Username  string `json:"username,omitempty"`
	Password  string `json:"password,omitempty"`
	Every     string `json:"every,omitempty"`
}

func (h *handler) list(_ http.ResponseWriter, r *http.Request, actor *auth.Principal) (int, any, error) {
	rs, err := h.svc.List(r.Context(), actor)
	if err != nil {
		return 0, nil, err
	}
	out := []Rule{}
	for i := range rs {
		out = append(out, ruleJSON(&rs[i]))
	}
	return http.StatusOK, out, nil
}

func (h *handler) add(_ http.ResponseWriter, r *http.Request, actor *auth.Principal) (int, any, error) {
	var req Request
	if err := adminapi.Decode(r, &req); err != nil {
		return 0, nil, err
	}
	sp := replicate.Spec{Name: req.Name, Direction: req.Direction, URL: req.URL, Repositories: req.Filter, Tags: req.Tags,
		Username: req.Username, Password: req.Password}
	if req.Every != "" {
		d, err := time.ParseDuration(req.Every)
		if err != nil {
			return 0, nil, fmt.Errorf("%w: every %q: a duration such as 30s, 10m or 1h", auth.ErrInvalid, req.Every)
		}
		sp.Interval = d
	}
	rule, err := h.svc.Add(r.Context(), actor, sp)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusCreated, ruleJSON(rule), nil
}

func (h *handler) remove(_ http.ResponseWriter, r *http.Request, actor *auth.Principal) (int, any, error) {
	return http.StatusNoContent, nil, h.svc.Remove(r.Context(), actor, r.PathValue("name"))
}

func (h *handler) run(_ http.ResponseWriter, r *http.Request, actor *auth.Principal) (int, any, error) {
	run, err := h.svc.RunNow(r.Context(), actor, r.PathValue("name"))
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, runJSON(run), nil
}

func (h *handler) redeliver(_ http.ResponseWriter, r *http.Request, actor *auth.Principal) (int, any, error) {
	n, err := h.svc.Redeliver(r.Context(), actor, r.PathValue("name"))
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, map[string]int64{"queued": n}, nil
}
