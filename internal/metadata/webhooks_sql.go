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
// replica or another. What is claimed is a lane (an endpoint and a
// repository with pending deliveries), and what is handed out its oldest
// pending delivery, so that an endpoint receives a repository's events in
// order, one at a time; a claim reads the due lanes, not the backlog.
func (s *SQL) ClaimDeliveries(ctx context.Context, claim string, n int, lease time.Duration) ([]Delivery, error) {
	t := now()
	var claimed bool
	err := s.tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err := s.exec(ctx, tx, `UPDATE webhook_lanes SET claim = ?, claimed_until = ? WHERE (endpoint_id, repository) IN (
			SELECT endpoint_id, repository FROM webhook_lanes WHERE due_at <= ? AND claimed_until <= ? AND pending > 0
			ORDER BY due_at LIMIT ?`+s.dialect.skipLocked+`)`, claim, t+lease.Nanoseconds(), t, t, n)
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
	rows, err := s.query(ctx, `SELECT `+deliveryCols+` FROM webhook_lanes l
		JOIN webhook_deliveries d ON d.id = (SELECT MIN(p.id) FROM webhook_deliveries p
			WHERE p.endpoint_id = l.endpoint_id AND p.repository = l.repository AND p.state = 'pending')
		JOIN webhook_events ev ON ev.id = d.event_seq
		JOIN webhook_endpoints e ON e.id = d.endpoint_id
		WHERE l.claim = ? ORDER BY d.id`, claim)
	if err != nil {
		return nil, fmt.Errorf("read claimed deliveries: %w", err)
	}
	ds, err := scanDeliveries(rows)
	for i := range ds {
		ds[i].Claim = claim
	}
	return ds, err
}

// ReleaseClaims ends every claim, for a process that is the store's only
// user (the embedded database) starting after a crash: no attempt of an
// earlier run can still be going on.
func (s *SQL) ReleaseClaims(ctx context.Context) error {
	return s.tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		if _, err := s.exec(ctx, tx, `UPDATE webhook_lanes SET claim = '', claimed_until = 0 WHERE claim <> ''`); err != nil {
			return fmt.Errorf("release claims: %w", err)
		}
		return nil
	})
}

// FinishDelivery records the outcome of an attempt and releases its lane,
// unless the claim has been lost meanwhile (its lease ended and another
// claim took the lane): then it reports false and changes nothing.
func (s *SQL) FinishDelivery(ctx context.Context, d *Delivery, o DeliveryOutcome) (bool, error) {
	var ok bool
	err := s.tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		t := now()
		var finished, done int64
		due := t // the lane's next delivery is due at once
		if o.State != DeliveryPending {
			finished, done = t, 1
		} else if !o.Next.IsZero() {
			due = o.Next.UnixNano()
		}
		res, err := s.exec(ctx, tx, `UPDATE webhook_lanes SET claim = '', claimed_until = 0, due_at = ?, pending = pending - ?
			WHERE endpoint_id = ? AND repository = ? AND claim = ?`, due, done, d.Endpoint.ID, d.Event.Repository, d.Claim)
		if err != nil {
			return fmt.Errorf("release lane: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return nil
		}
		ok = true
		if _, err := s.exec(ctx, tx, `UPDATE webhook_deliveries SET state = ?, attempts = attempts + 1, next_attempt_at = ?,
			last_status = ?, last_error = ?, finished_at = ? WHERE id = ?`,
			o.State, due, o.Status, o.Error, finished, d.ID); err != nil {
			return fmt.Errorf("record delivery: %w", err)
		}
		if _, err := s.exec(ctx, tx, `DELETE FROM webhook_lanes WHERE endpoint_id = ? AND repository = ? AND pending <= 0`,
			d.Endpoint.ID, d.Event.Repository); err != nil {
			return fmt.Errorf("drop empty lane: %w", err)
		}
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
// while its lane is not claimed), or with none given every dead one. It
// returns how many it changed.
func (s *SQL) Redeliver(ctx context.Context, endpointID int64, ids []int64) (int64, error) {
	var n int64
	err := s.tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		t := now()
		q := `SELECT d.id, d.repository, d.state FROM webhook_deliveries d LEFT JOIN webhook_lanes l
			ON l.endpoint_id = d.endpoint_id AND l.repository = d.repository
			WHERE d.endpoint_id = ? AND (d.state <> 'pending' OR COALESCE(l.claimed_until, 0) <= ?)`
		args := []any{endpointID, t}
		if len(ids) == 0 {
			q += ` AND d.state = 'dead'`
		} else {
			q += ` AND d.id IN (` + strings.TrimSuffix(strings.Repeat("?,", len(ids)), ",") + `)`
			for _, id := range ids {
				args = append(args, id)
			}
		}
		rows, err := tx.QueryContext(ctx, s.q(q), args...)
		if err != nil {
			return fmt.Errorf("redeliver: %w", err)
		}
		type pick struct {
			id          int64
			repo, state string
		}
		var picks []pick
		for rows.Next() {
			var p pick
			if err := rows.Scan(&p.id, &p.repo, &p.state); err != nil {
				rows.Close()
				return fmt.Errorf("redeliver: %w", err)
			}
			picks = append(picks, p)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("redeliver: %w", err)
		}
		for _, p := range picks {
			if _, err := s.exec(ctx, tx, `UPDATE webhook_deliveries SET state = 'pending', attempts = 0, next_attempt_at = ?,
				finished_at = 0 WHERE id = ?`, t, p.id); err != nil {
				return fmt.Errorf("redeliver %d: %w", p.id, err)
			}
			added := int64(0)
			if p.state != DeliveryPending {
				added = 1
			}
			if _, err := s.exec(ctx, tx, `INSERT INTO webhook_lanes (endpoint_id, repository, pending, due_at, claim, claimed_until)
				VALUES (?, ?, ?, ?, '', 0) ON CONFLICT (endpoint_id, repository)
				DO UPDATE SET pending = webhook_lanes.pending + excluded.pending, due_at = excluded.due_at`,
				endpointID, p.repo, added, t); err != nil {
				return fmt.Errorf("redeliver %d: %w", p.id, err)
			}
			n++
		}
		return nil
	})
	return n, err
}

// DeliveryCounts counts the deliveries waiting (pending) and given up on
// (dead), from the lanes and an index: no scan of the delivered history.
func (s *SQL) DeliveryCounts(ctx context.Context) (map[string]int64, error) {
	var pending, dead int64
	err := s.queryRow(ctx, nil, `SELECT (SELECT COALESCE(SUM(pending), 0) FROM webhook_lanes),
		(SELECT COUNT(*) FROM webhook_deliveries WHERE state = 'dead')`).Scan(&pending, &dead)
	if err != nil {
		return nil, fmt.Errorf("count deliveries: %w", err)
	}
	return map[string]int64{DeliveryPending: pending, DeliveryDead: dead}, nil
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
