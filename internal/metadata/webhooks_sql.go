package metadata

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// WebhookEndpoint is a receiver of events.
type WebhookEndpoint struct {
	ID   int64
	Name string
	// Namespace limits the endpoint to that namespace's events; "" is a
	// global endpoint, which receives every event.
	Namespace string
	URL       string
	// Actions are the event actions the endpoint wants.
	Actions []string
	// Format is "distribution" or "cloudevents".
	Format string
	// Secret keys the HMAC signature of each delivery.
	Secret    string
	Timeout   time.Duration
	CreatedBy string
	Created   time.Time
}

// Delivery states.
const (
	DeliveryPending   = "pending"
	DeliveryDelivered = "delivered"
	DeliveryDead      = "dead"
)

// Delivery is one event for one endpoint.
type Delivery struct {
	ID          int64
	Endpoint    WebhookEndpoint
	Event       Event
	State       string
	Attempts    int
	NextAttempt time.Time
	LastStatus  int
	LastError   string
	Finished    time.Time
	// Claim identifies the claim that handed the delivery out (Claim).
	Claim string
}

// DeliveryOutcome is what an attempt to deliver came to.
type DeliveryOutcome struct {
	// State is DeliveryDelivered, DeliveryDead or DeliveryPending (to be
	// tried again at Next).
	State  string
	Next   time.Time
	Status int
	Error  string
}

// DeliveryFilter selects an endpoint's deliveries, newest first.
type DeliveryFilter struct {
	EndpointID int64
	State      string // "" for any
	Before     int64  // only ids below (paging); 0 for none
	Limit      int
}

// AddWebhook records an endpoint (ErrExists if its name is taken).
func (s *SQL) AddWebhook(ctx context.Context, e WebhookEndpoint) (int64, error) {
	var id int64
	err := s.tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		err := s.queryRow(ctx, tx, `INSERT INTO webhook_endpoints (name, namespace, url, actions, format, secret, timeout_ms, created_by, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`, e.Name, e.Namespace, e.URL, ","+strings.Join(e.Actions, ",")+",",
			e.Format, e.Secret, e.Timeout.Milliseconds(), e.CreatedBy, now()).Scan(&id)
		if isUnique(err) {
			return fmt.Errorf("%w: a webhook named %s", ErrExists, e.Name)
		}
		if err != nil {
			return fmt.Errorf("add webhook: %w", err)
		}
		return nil
	})
	return id, err
}

const endpointCols = `e.id, e.name, e.namespace, e.url, e.actions, e.format, e.secret, e.timeout_ms, e.created_by, e.created_at`

func endpointDest(e *WebhookEndpoint, actions *string, timeout, created *int64) []any {
	return []any{&e.ID, &e.Name, &e.Namespace, &e.URL, actions, &e.Format, &e.Secret, timeout, &e.CreatedBy, created}
}

func finishEndpoint(e *WebhookEndpoint, actions string, timeout, created int64) {
	e.Actions = strings.Split(strings.Trim(actions, ","), ",")
	e.Timeout = time.Duration(timeout) * time.Millisecond
	e.Created = time.Unix(0, created)
}

// Webhooks lists the endpoints, by name.
func (s *SQL) Webhooks(ctx context.Context) ([]WebhookEndpoint, error) {
	rows, err := s.query(ctx, `SELECT `+endpointCols+` FROM webhook_endpoints e ORDER BY e.name`)
	if err != nil {
		return nil, fmt.Errorf("list webhooks: %w", err)
	}
	defer rows.Close()
	out := []WebhookEndpoint{}
	for rows.Next() {
		var e WebhookEndpoint
		var actions string
		var timeout, created int64
		if err := rows.Scan(endpointDest(&e, &actions, &timeout, &created)...); err != nil {
			return nil, fmt.Errorf("list webhooks: %w", err)
		}
		finishEndpoint(&e, actions, timeout, created)
		out = append(out, e)
	}
	return out, rows.Err()
}

// Webhook returns an endpoint by name.
func (s *SQL) Webhook(ctx context.Context, name string) (*WebhookEndpoint, error) {
	var e WebhookEndpoint
	var actions string
	var timeout, created int64
	err := s.queryRow(ctx, nil, `SELECT `+endpointCols+` FROM webhook_endpoints e WHERE e.name = ?`, name).
		Scan(endpointDest(&e, &actions, &timeout, &created)...)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("look up webhook: %w", err)
	}
	finishEndpoint(&e, actions, timeout, created)
	return &e, nil
}

// RemoveWebhook deletes an endpoint and its deliveries.
func (s *SQL) RemoveWebhook(ctx context.Context, name string) error {
	return s.tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var id int64
		err := s.queryRow(ctx, tx, `SELECT id FROM webhook_endpoints WHERE name = ?`, name).Scan(&id)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return fmt.Errorf("look up webhook: %w", err)
		}
		if _, err := s.exec(ctx, tx, `DELETE FROM webhook_deliveries WHERE endpoint_id = ?`, id); err != nil {
			return fmt.Errorf("remove deliveries: %w", err)
		}
		if _, err := s.exec(ctx, tx, `DELETE FROM webhook_endpoints WHERE id = ?`, id); err != nil {
			return fmt.Errorf("remove webhook: %w", err)
		}
		return nil
	})
}

// WebhookWants reports whether some endpoint wants events of action.
func (s *SQL) WebhookWants(ctx context.Context, action string) (bool, error) {
	var n int
	err := s.queryRow(ctx, nil, `SELECT COUNT(*) FROM webhook_endpoints WHERE actions LIKE ?`, "%,"+action+",%").Scan(&n)
	if err != nil {
		return false, fmt.Errorf("look up webhooks: %w", err)
	}
	return n > 0, nil
}

const deliveryCols = `d.id, d.state, d.attempts, d.next_attempt_at, d.last_status, d.last_error, d.finished_at, d.claim,
	ev.event_id, ev.action, ev.namespace, ev.repository, ev.payload, ev.created_at, ` + endpointCols

const deliveryJoin = ` FROM webhook_deliveries d JOIN webhook_events ev ON ev.id = d.event_seq
	JOIN webhook_endpoints e ON e.id = d.endpoint_id`

func scanDeliveries(rows *sql.Rows) ([]Delivery, error) {
	defer rows.Close()
	out := []Delivery{}
	for rows.Next() {
		var d Delivery
		var next, finished, evCreated, timeout, created int64
		var payload, actions string
		dest := []any{&d.ID, &d.State, &d.Attempts, &next, &d.LastStatus, &d.LastError, &finished, &d.Claim,
			&d.Event.ID, &d.Event.Action, &d.Event.Namespace, &d.Event.Repository, &payload, &evCreated}
		if err := rows.Scan(append(dest, endpointDest(&d.Endpoint, &actions, &timeout, &created)...)...); err != nil {
			return nil, fmt.Errorf("read deliveries: %w", err)
		}
		finishEndpoint(&d.Endpoint, actions, timeout, created)
		d.NextAttempt, d.Event.Created, d.Event.Payload = time.Unix(0, next), time.Unix(0, evCreated), []byte(payload)
		if finished != 0 {
			d.Finished = time.Unix(0, finished)
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// ClaimDeliveries hands out up to n due deliveries under the claim token,
// each for lease: until the lease ends no other claim takes them, on this
// replica or another. Only the oldest pending delivery of each endpoint
// and repository is due, so that an endpoint receives a repository's
// events in order, one at a time.
func (s *SQL) ClaimDeliveries(ctx context.Context, claim string, n int, lease time.Duration) ([]Delivery, error) {
	t := now()
	var claimed bool
	err := s.tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err := s.exec(ctx, tx, `UPDATE webhook_deliveries SET claim = ?, claimed_until = ? WHERE id IN (
			SELECT d.id FROM webhook_deliveries d WHERE d.state = 'pending' AND d.next_attempt_at <= ? AND d.claimed_until <= ?
			AND NOT EXISTS (SELECT 1 FROM webhook_deliveries p WHERE p.endpoint_id = d.endpoint_id
				AND p.repository = d.repository AND p.state = 'pending' AND p.id < d.id)
			ORDER BY d.id LIMIT ?`+s.dialect.skipLocked+`)`, claim, t+lease.Nanoseconds(), t, t, n)
		if err != nil {
			return fmt.Errorf("claim deliveries: %w", err)
		}
		k, _ := res.RowsAffected()
		claimed = k > 0
		return nil
	})
	if err != nil || !claimed {
		return nil, err
	}
	rows, err := s.query(ctx, `SELECT `+deliveryCols+deliveryJoin+` WHERE d.claim = ? ORDER BY d.id`, claim)
	if err != nil {
		return nil, fmt.Errorf("read claimed deliveries: %w", err)
	}
	return scanDeliveries(rows)
}

// ReleaseClaims ends every claim, for a process that is the store's only
// user (the embedded database) starting after a crash: no attempt of an
// earlier run can still be going on.
func (s *SQL) ReleaseClaims(ctx context.Context) error {
	return s.tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		if _, err := s.exec(ctx, tx, `UPDATE webhook_deliveries SET claim = '', claimed_until = 0 WHERE state = 'pending' AND claim <> ''`); err != nil {
			return fmt.Errorf("release claims: %w", err)
		}
		return nil
	})
}

// FinishDelivery records the outcome of an attempt, unless the claim has
// been lost meanwhile (its lease ended and another claim took the
// delivery): then it reports false and changes nothing.
func (s *SQL) FinishDelivery(ctx context.Context, d *Delivery, o DeliveryOutcome) (bool, error) {
	var ok bool
	err := s.tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var finished, next int64
		if o.State != DeliveryPending {
			finished = now()
		}
		if !o.Next.IsZero() {
			next = o.Next.UnixNano()
		}
		res, err := s.exec(ctx, tx, `UPDATE webhook_deliveries SET state = ?, attempts = attempts + 1, next_attempt_at = ?,
			claim = '', claimed_until = 0, last_status = ?, last_error = ?, finished_at = ? WHERE id = ? AND claim = ?`,
			o.State, next, o.Status, o.Error, finished, d.ID, d.Claim)
		if err != nil {
			return fmt.Errorf("record delivery: %w", err)
		}
		n, _ := res.RowsAffected()
		ok = n > 0
		return nil
	})
	return ok, err
}

// Deliveries lists deliveries, newest first.
func (s *SQL) Deliveries(ctx context.Context, f DeliveryFilter) ([]Delivery, error) {
	q := `SELECT ` + deliveryCols + deliveryJoin + ` WHERE d.endpoint_id = ?`
	args := []any{f.EndpointID}
	if f.State != "" {
		q += ` AND d.state = ?`
		args = append(args, f.State)
	}
	if f.Before > 0 {
		q += ` AND d.id < ?`
		args = append(args, f.Before)
	}
	q += ` ORDER BY d.id DESC LIMIT ?`
	args = append(args, f.Limit)
	rows, err := s.query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list deliveries: %w", err)
	}
	return scanDeliveries(rows)
}

// Redeliver makes deliveries of an endpoint pending again, due now and
// with their attempts reset: those with the given ids (a pending one only
// while no attempt holds it), or with none given every dead one. It
// returns how many it changed.
func (s *SQL) Redeliver(ctx context.Context, endpointID int64, ids []int64) (int64, error) {
	var n int64
	err := s.tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		const set = `UPDATE webhook_deliveries SET state = 'pending', attempts = 0, next_attempt_at = ?, claim = '',
			claimed_until = 0, finished_at = 0 WHERE endpoint_id = ?`
		if len(ids) == 0 {
			res, err := s.exec(ctx, tx, set+` AND state = 'dead'`, now(), endpointID)
			if err != nil {
				return fmt.Errorf("redeliver: %w", err)
			}
			n, _ = res.RowsAffected()
			return nil
		}
		for _, id := range ids {
			t := now() // a pending one now, unless an attempt holds it
			res, err := s.exec(ctx, tx, set+` AND id = ? AND (state <> 'pending' OR claimed_until <= ?)`, t, endpointID, id, t)
			if err != nil {
				return fmt.Errorf("redeliver %d: %w", id, err)
			}
			k, _ := res.RowsAffected()
			n += k
		}
		return nil
	})
	return n, err
}

// DeliveryCounts counts deliveries by state.
func (s *SQL) DeliveryCounts(ctx context.Context) (map[string]int64, error) {
	rows, err := s.query(ctx, `SELECT state, COUNT(*) FROM webhook_deliveries GROUP BY state`)
	if err != nil {
		return nil, fmt.Errorf("count deliveries: %w", err)
	}
	defer rows.Close()
	out := map[string]int64{DeliveryPending: 0, DeliveryDelivered: 0, DeliveryDead: 0}
	for rows.Next() {
		var state string
		var n int64
		if err := rows.Scan(&state, &n); err != nil {
			return nil, fmt.Errorf("count deliveries: %w", err)
		}
		out[state] = n
	}
	return out, rows.Err()
}

// PruneDeliveries deletes deliveries delivered before t, then the events
// left without deliveries; dead ones stay until redelivered or their
// endpoint is removed.
func (s *SQL) PruneDeliveries(ctx context.Context, t time.Time) (int64, error) {
	var n int64
	err := s.tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err := s.exec(ctx, tx, `DELETE FROM webhook_deliveries WHERE state = 'delivered' AND finished_at < ?`, t.UnixNano())
		if err != nil {
			return fmt.Errorf("prune deliveries: %w", err)
		}
		n, _ = res.RowsAffected()
		if _, err := s.exec(ctx, tx, `DELETE FROM webhook_events WHERE created_at < ? AND NOT EXISTS
			(SELECT 1 FROM webhook_deliveries d WHERE d.event_seq = webhook_events.id)`, t.UnixNano()); err != nil {
			return fmt.Errorf("prune events: %w", err)
		}
		return nil
	})
	return n, err
}
