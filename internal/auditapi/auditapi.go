// Package auditapi serves the audit log over the admin API:
// GET /api/v1/audit, for admins. It only reads the query and renders
// entries; the entries and their rules are package audit's.
package auditapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/berth-registry/berth/internal/adminapi"
	"github.com/berth-registry/berth/internal/audit"
	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/metadata"
)

// Store reads the audit log.
type Store interface {
	ListAudit(ctx context.Context, f metadata.AuditFilter) ([]metadata.AuditEntry, error)
}

// Handler serves the audit log.
type Handler struct {
	store Store
	now   func() time.Time
}

// New returns the handler of the audit log in store.
func New(store Store) *Handler { return &Handler{store: store, now: time.Now} }

// Register adds the endpoint to the admin API.
func (h *Handler) Register(admin *adminapi.Handler) {
	admin.Handle("GET /api/v1/audit", h.List)
}

// EntryJSON is an audit entry on the wire.
type EntryJSON struct {
	ID        int64           `json:"id"`
	At        string          `json:"at"`
	Actor     string          `json:"actor"`
	Address   string          `json:"address"`
	Action    string          `json:"action"`
	Namespace string          `json:"namespace"`
	Target    string          `json:"target"`
	Outcome   string          `json:"outcome"`
	Detail    json.RawMessage `json:"detail"`
	Replica   string          `json:"replica"`
}

// PageJSON is the answer of GET /api/v1/audit: entries newest first, and
// the cursor of the next (older) page, empty when this page is not full.
type PageJSON struct {
	Entries []EntryJSON `json:"entries"`
	Next    string      `json:"next"`
}

// params are the query parameters GET /api/v1/audit takes.
var params = map[string]bool{"actor": true, "namespace": true, "action": true, "since": true, "until": true, "limit": true, "before": true}

// List serves GET /api/v1/audit?actor=&namespace=&action=&since=&until=&limit=&before=.
func (h *Handler) List(_ http.ResponseWriter, r *http.Request, actor *auth.Principal) (int, any, error) {
	if err := auth.RequireAdmin(actor); err != nil {
		return 0, nil, err
	}
	f, err := h.filter(r)
	if err != nil {
		return 0, nil, fmt.Errorf("%w: %w", auth.ErrInvalid, err)
	}
	entries, err := h.store.ListAudit(r.Context(), f)
	if err != nil {
		return 0, nil, err
	}
	page := PageJSON{Entries: make([]EntryJSON, 0, len(entries))}
	for _, e := range entries {
		detail := json.RawMessage(e.Detail)
		if !json.Valid(detail) {
			detail = json.RawMessage("{}")
		}
		page.Entries = append(page.Entries, EntryJSON{ID: e.ID, At: e.At.UTC().Format(time.RFC3339Nano), Actor: e.Actor, Address: e.Address,
			Action: e.Action, Namespace: e.Namespace, Target: e.Target, Outcome: e.Outcome, Detail: detail, Replica: e.Replica})
	}
	if len(entries) > 0 && len(entries) == f.Limit {
		page.Next = strconv.FormatInt(entries[len(entries)-1].ID, 10)
	}
	return http.StatusOK, page, nil
}

// filter reads the query into a filter; an unknown parameter, a repeated
// one or a bad value is an error that names it.
func (h *Handler) filter(r *http.Request) (metadata.AuditFilter, error) {
	q := r.URL.Query()
	for k, vs := range q {
		if !params[k] {
			return metadata.AuditFilter{}, fmt.Errorf("unknown parameter %q (want actor, namespace, action, since, until, limit or before)", k)
		}
		if len(vs) > 1 {
			return metadata.AuditFilter{}, fmt.Errorf("parameter %q given %d times", k, len(vs))
		}
	}
	f := metadata.AuditFilter{Actor: q.Get("actor"), Namespace: q.Get("namespace"), Action: q.Get("action"), Limit: metadata.DefaultAuditLimit}
	now := h.now()
	var err error
	if s := q.Get("since"); s != "" {
		if f.Since, err = audit.ParseTime(s, now); err != nil {
			return f, fmt.Errorf("since: %w", err)
		}
	}
	if s := q.Get("until"); s != "" {
		if f.Until, err = audit.ParseTime(s, now); err != nil {
			return f, fmt.Errorf("until: %w", err)
		}
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Since.Before(f.Until) {
		return f, fmt.Errorf("since (%s) is not before until (%s)", f.Since.UTC().Format(time.RFC3339), f.Until.UTC().Format(time.RFC3339))
	}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > metadata.MaxAuditLimit {
			return f, fmt.Errorf("limit %q: want a number from 1 to %d", s, metadata.MaxAuditLimit)
		}
		f.Limit = n
	}
	if s := q.Get("before"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 1 {
			return f, fmt.Errorf("before %q: want the next cursor of a previous page", s)
		}
		f.Before = n
	}
	return f, nil
}
