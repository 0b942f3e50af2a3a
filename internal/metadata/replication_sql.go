package metadata

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Replication directions.
const (
	// ReplicatePush copies what is pushed to berth to a remote registry.
	ReplicatePush = "push"
	// ReplicatePull copies a remote registry's images into berth on a
	// schedule.
	ReplicatePull = "pull"
)

// FormatReplicate is the format of the webhook endpoints that are
// replication rules: the dispatcher hands their deliveries to the
// replicator instead of posting them.
const FormatReplicate = "replicate"

// ReplicationRule is a replication rule: a webhook endpoint of format
// "replicate" (Endpoint.URL is the remote registry: the target of a push
// rule, the source of a pull rule) and its settings.
type ReplicationRule struct {
	Endpoint  WebhookEndpoint
	Direction string
	// Repositories and Tags are path.Match globs; "" matches everything.
	Repositories, Tags string
	// Username and Password authenticate to the remote ("" anonymous).
	Username, Password string
	// Interval is how often a pull rule runs (0 for push rules).
	Interval time.Duration
	// LastRun is a pull rule's last run.
	LastRun ReplicationRun
}

// ReplicationRun is what a pull rule's run came to.
type ReplicationRun struct {
	Started, Finished       time.Time
	Copied, Skipped, Failed int64
	Error                   string
}

// ReplicationStatus is what a push rule's queue holds.
type ReplicationStatus struct {
	Pending, Dead int64
	// LastError is the error of the newest delivery not delivered yet
	// (pending after a failed attempt, or dead); "" when none failed.
	LastError string
}

// AddReplication records a rule and its endpoint in one transaction and
// returns the endpoint's id (ErrExists if a webhook or rule has its name).
func (s *SQL) AddReplication(ctx context.Context, r ReplicationRule) (int64, error) {
	var id int64
	e := r.Endpoint
	err := s.tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		err := s.queryRow(ctx, tx, `INSERT INTO webhook_endpoints (name, namespace, url, actions, format, secret, timeout_ms, created_by, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`, e.Name, e.Namespace, e.URL, ","+strings.Join(e.Actions, ",")+",",
			FormatReplicate, e.Secret, e.Timeout.Milliseconds(), e.CreatedBy, now()).Scan(&id)
		if isUnique(err) {
			return fmt.Errorf("%w: a webhook or replication rule named %s", ErrExists, e.Name)
		}
		if err != nil {
			return fmt.Errorf("add replication endpoint: %w", err)
		}
		if _, err := s.exec(ctx, tx, `INSERT INTO replication_rules (endpoint_id, direction, repositories, tags, username, password,
			interval_ms, run_started_at, run_finished_at, run_copied, run_skipped, run_failed, run_error)
			VALUES (?, ?, ?, ?, ?, ?, ?, 0, 0, 0, 0, 0, '')`, id, r.Direction, r.Repositories, r.Tags, r.Username, r.Password,
			r.Interval.Milliseconds()); err != nil {
			return fmt.Errorf("add replication rule: %w", err)
		}
		return nil
	})
	return id, err
}

const replicationCols = endpointCols + `, r.direction, r.repositories, r.tags, r.username, r.password, r.interval_ms,
	r.run_started_at, r.run_finished_at, r.run_copied, r.run_skipped, r.run_failed, r.run_error`

const replicationJoin = ` FROM replication_rules r JOIN webhook_endpoints e ON e.id = r.endpoint_id`

func scanReplication(row interface{ Scan(...any) error }) (*ReplicationRule, error) {
	var r ReplicationRule
	var actions string
	var timeout, created, interval, started, finished int64
	dest := append(endpointDest(&r.Endpoint, &actions, &timeout, &created), &r.Direction, &r.Repositories, &r.Tags,
		&r.Username, &r.Password, &interval, &started, &finished, &r.LastRun.Copied, &r.LastRun.Skipped, &r.LastRun.Failed, &r.LastRun.Error)
	if err := row.Scan(dest...); err != nil {
		return nil, err
	}
	finishEndpoint(&r.Endpoint, actions, timeout, created)
	r.Interval = time.Duration(interval) * time.Millisecond
	if started != 0 {
		r.LastRun.Started = time.Unix(0, started)
	}
	if finished != 0 {
		r.LastRun.Finished = time.Unix(0, finished)
	}
	return &r, nil
}

// ReplicationRules lists the rules, by name.
func (s *SQL) ReplicationRules(ctx context.Context) ([]ReplicationRule, error) {
	out, err := scanAll(scanReplication)(s.query(ctx, `SELECT `+replicationCols+replicationJoin+` ORDER BY e.name`))
	if err != nil {
		return nil, fmt.Errorf("list replication rules: %w", err)
	}
	return out, nil
}

// ReplicationRuleByID returns the rule of an endpoint (ErrNotFound when
// the endpoint is no replication rule).
func (s *SQL) ReplicationRuleByID(ctx context.Context, endpointID int64) (*ReplicationRule, error) {
	r, err := scanReplication(s.queryRow(ctx, nil, `SELECT `+replicationCols+replicationJoin+` WHERE r.endpoint_id = ?`, endpointID))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("look up replication rule: %w", err)
	}
	return r, nil
}

// ReplicationRule returns a rule by name.
func (s *SQL) ReplicationRule(ctx context.Context, name string) (*ReplicationRule, error) {
	r, err := scanReplication(s.queryRow(ctx, nil, `SELECT `+replicationCols+replicationJoin+` WHERE e.name = ?`, name))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("look up replication rule: %w", err)
	}
	return r, nil
}

// RemoveReplication deletes a rule with its endpoint, deliveries and lanes
// (ErrNotFound when no rule has that name: a webhook of that name stays).
func (s *SQL) RemoveReplication(ctx context.Context, name string) error {
	return s.tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var id int64
		err := s.queryRow(ctx, tx, `SELECT e.id`+replicationJoin+` WHERE e.name = ?`, name).Scan(&id)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return fmt.Errorf("look up replication rule: %w", err)
		}
		for _, q := range []string{`DELETE FROM webhook_lanes WHERE endpoint_id = ?`, `DELETE FROM webhook_deliveries WHERE endpoint_id = ?`,
			`DELETE FROM replication_rules WHERE endpoint_id = ?`, `DELETE FROM webhook_endpoints WHERE id = ?`} {
			if _, err := s.exec(ctx, tx, q, id); err != nil {
				return fmt.Errorf("remove replication rule: %w", err)
			}
		}
		return nil
	})
}

// staleRun is how long after its start an unfinished run (its replica
// died) stops keeping other replicas from running the rule.
const staleRun = 30 * time.Minute

// ClaimReplicationRun marks a pull rule's run as started now, and reports
// whether this caller got it: when its interval has passed since the last
// run started (or always with force) and no run is going on (unless it
// started more than half an hour ago), so that of several replicas one
// runs it.
func (s *SQL) ClaimReplicationRun(ctx context.Context, endpointID int64, force bool) (bool, error) {
	var ok bool
	err := s.tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		t := now()
		q := `UPDATE replication_rules SET run_started_at = ? WHERE endpoint_id = ?
			AND (run_finished_at >= run_started_at OR run_started_at <= ?)`
		args := []any{t, endpointID, t - staleRun.Nanoseconds()}
		if !force {
			q += ` AND run_started_at + interval_ms * 1000000 <= ?`
			args = append(args, t)
		}
		res, err := s.exec(ctx, tx, q, args...)
		if err != nil {
			return fmt.Errorf("claim replication run: %w", err)
		}
		n, _ := res.RowsAffected()
		ok = n > 0
		return nil
	})
	return ok, err
}

// FinishReplicationRun records a run's outcome.
func (s *SQL) FinishReplicationRun(ctx context.Context, endpointID int64, run ReplicationRun) error {
	return s.tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		if _, err := s.exec(ctx, tx, `UPDATE replication_rules SET run_finished_at = ?, run_copied = ?, run_skipped = ?,
			run_failed = ?, run_error = ? WHERE endpoint_id = ?`, now(), run.Copied, run.Skipped, run.Failed, run.Error, endpointID); err != nil {
			return fmt.Errorf("record replication run: %w", err)
		}
		return nil
	})
}

// ReplicationStatus counts a rule's pending and dead deliveries and
// returns the newest failure among those not delivered.
func (s *SQL) ReplicationStatus(ctx context.Context, endpointID int64) (ReplicationStatus, error) {
	var st ReplicationStatus
	err := s.queryRow(ctx, nil, `SELECT (SELECT COALESCE(SUM(pending), 0) FROM webhook_lanes WHERE endpoint_id = ?),
		(SELECT COUNT(*) FROM webhook_deliveries WHERE endpoint_id = ? AND state = 'dead')`, endpointID, endpointID).Scan(&st.Pending, &st.Dead)
	if err != nil {
		return st, fmt.Errorf("replication status: %w", err)
	}
	err = s.queryRow(ctx, nil, `SELECT last_error FROM webhook_deliveries WHERE endpoint_id = ? AND state <> 'delivered'
		AND last_error <> '' ORDER BY id DESC LIMIT 1`, endpointID).Scan(&st.LastError)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return st, fmt.Errorf("replication status: %w", err)
	}
	return st, nil
}
