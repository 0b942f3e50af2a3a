package adminclient

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// AuditEntry is one entry of the audit log (GET /api/v1/audit).
type AuditEntry struct {
	ID        int64           `json:"id"`
	At        time.Time       `json:"at"`
	Actor     string          `json:"actor"`
	Address   string          `json:"address"`
	Action    string          `json:"action"`
	Namespace string          `json:"namespace"`
	Target    string          `json:"target"`
	Outcome   string          `json:"outcome"`
	Detail    json.RawMessage `json:"detail"`
	Replica   string          `json:"replica"`
}

// AuditPage is a page of the audit log, newest first; Next is the cursor
// of the next (older) page, empty after the last.
type AuditPage struct {
	Entries []AuditEntry `json:"entries"`
	Next    string       `json:"next"`
}

// AuditQuery selects audit entries; empty fields do not filter. Since and
// Until are RFC 3339 times or ages (1h, 7d); Before is a Next cursor.
type AuditQuery struct {
	Actor, Namespace, Action string
	Since, Until             string
	Limit                    int
	Before                   string
}

// Audit lists audit entries (admins only).
func (c *Client) Audit(ctx context.Context, q AuditQuery) (*AuditPage, json.RawMessage, error) {
	v := url.Values{}
	for k, s := range map[string]string{"actor": q.Actor, "namespace": q.Namespace, "action": q.Action,
		"since": q.Since, "until": q.Until, "before": q.Before} {
		if s != "" {
			v.Set(k, s)
		}
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	path := "/api/v1/audit"
	if len(v) > 0 {
		path += "?" + v.Encode()
	}
	var page AuditPage
	raw, err := c.do(ctx, http.MethodGet, path, nil, &page)
	if err != nil {
		return nil, nil, err
	}
	return &page, raw, nil
}
