package metadata

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Event is a change for webhooks to announce, written to the outbox in the
// transaction of the change (WithEvents) and delivered later to every
// endpoint whose namespace and actions match.
type Event struct {
	// ID is unique; receivers de-duplicate on it.
	ID     string
	Action string
	// Namespace selects the endpoints of that namespace besides the global
	// ones; "" reaches global endpoints only.
	Namespace string
	// Repository orders deliveries: an endpoint receives the events of
	// one repository in the order they were written.
	Repository string
	// Payload is the event as package webhook encodes it.
	Payload []byte
	Created time.Time
}

type eventsKey struct{}

// WithEvents returns a context whose next write transaction (the one
// method of Store or the account store called with it) also writes evs to
// the webhook outbox, so that the events exist if and only if the change
// committed. Pass it to exactly one write.
func WithEvents(ctx context.Context, evs ...Event) context.Context {
	if len(evs) == 0 {
		return ctx
	}
	return context.WithValue(ctx, eventsKey{}, evs)
}

func eventsOf(ctx context.Context) []Event {
	evs, _ := ctx.Value(eventsKey{}).([]Event)
	return evs
}

// AppendEvents writes events in a transaction of their own, for changes
// that are not a metadata write (a refused push, a garbage collection run).
func (s *SQL) AppendEvents(ctx context.Context, evs []Event) error {
	if len(evs) == 0 {
		return nil
	}
	return s.tx(ctx, func(ctx context.Context, tx *sql.Tx) error { return s.insertEvents(ctx, tx, evs) })
}

// matchEndpoints selects the endpoints an event reaches (placeholders: its
// namespace, and its action as a LIKE pattern of the endpoints' list).
const matchEndpoints = `FROM webhook_endpoints e WHERE (e.namespace = '' OR e.namespace = ?) AND e.actions LIKE ?`

// insertEvents writes each event that at least one endpoint wants, one
// pending delivery per such endpoint, and counts the deliveries in their
// lanes: an event nobody subscribes to costs one statement that inserts
// nothing.
func (s *SQL) insertEvents(ctx context.Context, tx *sql.Tx, evs []Event) error {
	for _, e := range evs {
		t := e.Created
		if t.IsZero() {
			t = time.Now()
		}
		action := "%," + e.Action + ",%"
		var seq int64
		err := s.queryRow(ctx, tx, `INSERT INTO webhook_events (event_id, action, namespace, repository, payload, created_at)
			SELECT ?, ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 `+matchEndpoints+`) RETURNING id`,
			e.ID, e.Action, e.Namespace, e.Repository, string(e.Payload), t.UnixNano(), e.Namespace, action).Scan(&seq)
		if errors.Is(err, sql.ErrNoRows) {
			continue
		}
		if err != nil {
			return fmt.Errorf("write event to outbox: %w", err)
		}
		if _, err := s.exec(ctx, tx, `INSERT INTO webhook_deliveries (event_seq, endpoint_id, repository, state, attempts,
				next_attempt_at, claim, claimed_until, last_status, last_error, finished_at)
			SELECT ?, e.id, ?, 'pending', 0, ?, '', 0, 0, '', 0 `+matchEndpoints+` ORDER BY e.id`,
			seq, e.Repository, t.UnixNano(), e.Namespace, action); err != nil {
			return fmt.Errorf("queue deliveries: %w", err)
		}
		if _, err := s.exec(ctx, tx, `INSERT INTO webhook_lanes (endpoint_id, repository, pending, due_at, claim, claimed_until)
			SELECT d.endpoint_id, d.repository, 1, ?, '', 0 FROM webhook_deliveries d WHERE d.event_seq = ? ORDER BY d.endpoint_id
			ON CONFLICT (endpoint_id, repository) DO UPDATE SET pending = webhook_lanes.pending + 1`,
			t.UnixNano(), seq); err != nil {
			return fmt.Errorf("queue deliveries: %w", err)
		}
	}
	return nil
}
