package webhook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/berth-registry/berth/internal/events"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/berth-registry/berth/internal/metadata"
)

// Store is what webhooks need from the metadata store.
type Store interface {
	AppendEvents(ctx context.Context, evs []metadata.Event) error
	ClaimDeliveries(ctx context.Context, claim string, n int, lease time.Duration) ([]metadata.Delivery, error)
	FinishDelivery(ctx context.Context, d *metadata.Delivery, o metadata.DeliveryOutcome) (bool, error)
	DeliveryCounts(ctx context.Context) (map[string]int64, error)
	PruneDeliveries(ctx context.Context, before time.Time) (int64, error)
	WebhookWants(ctx context.Context, action string) (bool, error)
	ReleaseClaims(ctx context.Context) error

	AddWebhook(ctx context.Context, e metadata.WebhookEndpoint) (int64, error)
	Webhooks(ctx context.Context) ([]metadata.WebhookEndpoint, error)
	Webhook(ctx context.Context, name string) (*metadata.WebhookEndpoint, error)
	RemoveWebhook(ctx context.Context, name string) error
	Deliveries(ctx context.Context, f metadata.DeliveryFilter) ([]metadata.Delivery, error)
	Redeliver(ctx context.Context, endpointID int64, ids []int64) (int64, error)
}

// Options tune delivery.
type Options struct {
	// MaxAttempts is how many failed attempts make a delivery dead.
	MaxAttempts int
	// BackoffBase and BackoffMax bound the wait after a failed attempt:
	// BackoffBase doubled per attempt, at most BackoffMax, with jitter.
	BackoffBase, BackoffMax time.Duration
	// Workers is how many deliveries are in flight at once per replica.
	Workers int
	// Poll is how often the outbox is read when nothing wakes the
	// dispatcher (events written by other replicas, retries coming due).
	Poll time.Duration
	// History is how long delivered deliveries are kept for listing.
	History time.Duration
	// UserAgent is sent with every delivery.
	UserAgent string
	// Exclusive says this process is the only one using the store (the
	// embedded database): claims left by an earlier run are released at
	// start instead of waiting for their leases to end.
	Exclusive bool
}

// Defaults for Options.
const (
	DefaultMaxAttempts = 10
	DefaultBackoffBase = time.Second
	DefaultBackoffMax  = 5 * time.Minute
	DefaultTimeout     = 10 * time.Second
	MaxTimeout         = time.Minute
	// ReplicateTimeout bounds an attempt at a replication endpoint (one
	// image copied to another registry, which may be big).
	ReplicateTimeout = 10 * time.Minute
	defaultWorkers   = 16
	defaultPoll      = time.Second
	defaultHistory   = 7 * 24 * time.Hour
	// leaseMargin is how much longer a claim holds a delivery than the
	// longest endpoint timeout: an attempt always ends before its claim,
	// so that two replicas never send one delivery at the same time.
	leaseMargin = 15 * time.Second
)

func (o *Options) defaults() {
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = DefaultMaxAttempts
	}
	if o.BackoffBase <= 0 {
		o.BackoffBase = DefaultBackoffBase
	}
	if o.BackoffMax <= 0 {
		o.BackoffMax = DefaultBackoffMax
	}
	if o.Workers <= 0 {
		o.Workers = defaultWorkers
	}
	if o.Poll <= 0 {
		o.Poll = defaultPoll
	}
	if o.History <= 0 {
		o.History = defaultHistory
	}
	if o.UserAgent == "" {
		o.UserAgent = "berth-webhook"
	}
}

// Totals are the dispatcher's running totals and the outbox's last counts,
// for metrics.
type Totals struct {
	Delivered, Failed, Dead atomic.Int64
	// Pending and DeadQueued are the outbox's deliveries by state, as last
	// counted (every few seconds, not per scrape).
	Pending, DeadQueued atomic.Int64
}

// FormatReplicate is the format of the endpoints that are replication
// rules (package replicate manages them): their deliveries go to the
// Replicator, not to an HTTP POST.
const FormatReplicate = metadata.FormatReplicate

// Replicator copies what an event names to the registry of a replication
// endpoint. Its error makes the delivery pending again, with backoff, as a
// webhook's failed POST does (dead after the last attempt); nil marks it
// delivered.
type Replicator interface {
	Replicate(ctx context.Context, e *metadata.WebhookEndpoint, ev *metadata.Event) error
}

// Dispatcher delivers the outbox's events.
type Dispatcher struct {
	store  Store
	opts   Options
	log    *slog.Logger
	client *http.Client
	wake   chan struct{}
	totals Totals
	// wantsPull caches whether some endpoint subscribes to pulls, so that
	// pulls cost nothing when none does.
	wantsPull atomic.Bool
	inflight  atomic.Int64
	// lease is how long claims last: the longest endpoint timeout plus
	// leaseMargin (refreshed with the endpoints).
	lease atomic.Int64
	// endpoints is how many endpoints there are (refreshed every few
	// seconds): with none, the outbox is not read at all.
	endpoints atomic.Int64
	// replicator takes the deliveries of replication endpoints.
	replicator atomic.Pointer[Replicator]
}

// SetReplicator sets what delivers to replication endpoints; until it is
// set, their deliveries fail and are retried.
func (d *Dispatcher) SetReplicator(r Replicator) { d.replicator.Store(&r) }

// Refresh re-reads the endpoints now (after one was added: the lease of
// claims follows the longest attempt timeout).
func (d *Dispatcher) Refresh(ctx context.Context) { d.refresh(ctx) }

// NewDispatcher returns a dispatcher; Run starts it.
func NewDispatcher(store Store, opts Options, log *slog.Logger) *Dispatcher {
	opts.defaults()
	client := &http.Client{
		// Each attempt has its endpoint's timeout (a context deadline).
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	d := &Dispatcher{store: store, opts: opts, log: log, client: client, wake: make(chan struct{}, 1)}
	d.lease.Store(int64(MaxTimeout + leaseMargin))
	return d
}

// Totals returns the running totals.
func (d *Dispatcher) Totals() *Totals { return &d.totals }

// WantsPull reports whether some endpoint subscribes to pull events (as of
// a few seconds ago).
func (d *Dispatcher) WantsPull() bool { return d.wantsPull.Load() }

// Wake makes the dispatcher read the outbox now: call it after committing
// events.
func (d *Dispatcher) Wake() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// Run delivers until ctx ends; deliveries in flight then are abandoned and
// their claims expire, so another replica (or the next start) retries
// them.
func (d *Dispatcher) Run(ctx context.Context) {
	if d.opts.Exclusive {
		if err := d.store.ReleaseClaims(ctx); err != nil {
			d.log.Error("releasing the webhook claims of an earlier run failed", "err", err)
		}
	}
	d.refresh(ctx)
	go d.housekeeping(ctx)
	t := time.NewTimer(d.opts.Poll)
	defer t.Stop()
	for ctx.Err() == nil {
		claimed := 0
		if free := int64(d.opts.Workers) - d.inflight.Load(); free > 0 && d.endpoints.Load() > 0 {
			lease := time.Duration(d.lease.Load())
			ds, err := d.store.ClaimDeliveries(ctx, events.NewID(), int(free), lease)
			if err != nil && ctx.Err() == nil {
				d.log.Error("claiming webhook deliveries failed", "err", err)
			}
			claimed = len(ds)
			for i := range ds {
				d.inflight.Add(1)
				go func(dl *metadata.Delivery) {
					defer d.inflight.Add(-1)
					defer d.Wake() // the repository's next event may be due
					d.deliver(ctx, dl, lease-leaseMargin)
				}(&ds[i])
			}
		}
		if claimed > 0 {
			continue
		}
		t.Reset(d.opts.Poll)
		select {
		case <-ctx.Done():
		case <-d.wake:
		case <-t.C:
		}
	}
}

// housekeeping refreshes the counts and the pull subscription, and prunes
// old deliveries.
func (d *Dispatcher) housekeeping(ctx context.Context) {
	lastPrune := time.Time{}
	for {
		d.refresh(ctx)
		if time.Since(lastPrune) > time.Hour {
			lastPrune = time.Now()
			if n, err := d.store.PruneDeliveries(ctx, time.Now().Add(-d.opts.History)); err != nil && ctx.Err() == nil {
				d.log.Error("pruning webhook deliveries failed", "err", err)
			} else if n > 0 {
				d.log.Info("pruned webhook deliveries", "count", n)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(5 * time.Second):
		}
	}
}

// refresh reads what the dispatcher caches: the outbox's counts, whether
// pulls are wanted and the longest endpoint timeout.
func (d *Dispatcher) refresh(ctx context.Context) {
	if counts, err := d.store.DeliveryCounts(ctx); err == nil {
		d.totals.Pending.Store(counts[metadata.DeliveryPending])
		d.totals.DeadQueued.Store(counts[metadata.DeliveryDead])
	}
	if wants, err := d.store.WebhookWants(ctx, events.ActionPull); err == nil {
		d.wantsPull.Store(wants)
	}
	if es, err := d.store.Webhooks(ctx); err == nil {
		longest := time.Duration(0)
		for _, e := range es {
			if e.Format == FormatReplicate && !slices.Contains(e.Actions, events.ActionPush) {
				continue // a pull rule: never delivered to
			}
			longest = max(longest, attemptTimeout(&e))
		}
		d.lease.Store(int64(max(longest, time.Second) + leaseMargin))
		d.endpoints.Store(int64(len(es)))
	}
}

// attemptTimeout is how long an attempt at an endpoint may take.
func attemptTimeout(e *metadata.WebhookEndpoint) time.Duration {
	if e.Format == FormatReplicate {
		return ReplicateTimeout
	}
	if e.Timeout <= 0 || e.Timeout > MaxTimeout {
		return DefaultTimeout
	}
	return e.Timeout
}

// deliver makes one attempt, of at most limit (what its claim allows),
// and records its outcome.
func (d *Dispatcher) deliver(ctx context.Context, dl *metadata.Delivery, limit time.Duration) {
	var status int
	var err error
	if dl.Endpoint.Format == FormatReplicate {
		err = d.replicate(ctx, dl, limit)
	} else {
		status, err = d.send(ctx, &dl.Endpoint, dl.Event.ID, dl.Event.Payload, dl.Attempts+1, limit)
	}
	if ctx.Err() != nil {
		return // shutting down: the claim expires and the delivery is retried
	}
	o := metadata.DeliveryOutcome{State: metadata.DeliveryDelivered, Status: status}
	switch {
	case err == nil:
		d.totals.Delivered.Add(1)
	case dl.Attempts+1 >= d.opts.MaxAttempts:
		o.State, o.Error = metadata.DeliveryDead, err.Error()
		d.totals.Failed.Add(1)
		d.totals.Dead.Add(1)
		d.log.Warn("webhook delivery dead", "webhook", dl.Endpoint.Name, "event", dl.Event.ID, "attempts", dl.Attempts+1, "err", err)
	default:
		o.State, o.Error, o.Next = metadata.DeliveryPending, err.Error(), time.Now().Add(d.backoff(dl.Attempts+1))
		d.totals.Failed.Add(1)
	}
	ok, ferr := d.store.FinishDelivery(context.WithoutCancel(ctx), dl, o)
	switch {
	case ferr != nil:
		d.log.Error("recording webhook delivery failed", "webhook", dl.Endpoint.Name, "event", dl.Event.ID, "err", ferr)
	case !ok:
		d.log.Warn("webhook delivery outlived its claim", "webhook", dl.Endpoint.Name, "event", dl.Event.ID)
	}
}

// backoff is the wait after the given number of failed attempts: the base
// doubled per attempt, capped, and jittered down by up to a half.
func (d *Dispatcher) backoff(failed int) time.Duration {
	w := d.opts.BackoffMax
	if failed < 30 {
		w = min(d.opts.BackoffBase<<(failed-1), d.opts.BackoffMax)
	}
	return w/2 + rand.N(w/2+1)
}

// replicate hands a delivery of a replication endpoint to the replicator,
// within the attempt's time.
func (d *Dispatcher) replicate(ctx context.Context, dl *metadata.Delivery, limit time.Duration) error {
	r := d.replicator.Load()
	if r == nil {
		return errors.New("replication is not set up on this server")
	}
	ctx, cancel := context.WithTimeout(ctx, min(ReplicateTimeout, limit))
	defer cancel()
	return (*r).Replicate(ctx, &dl.Endpoint, &dl.Event)
}

// errStatus is an answer outside 2xx.
var errStatus = errors.New("endpoint answered")

// send posts one event to an endpoint and returns the status it answered.
func (d *Dispatcher) send(ctx context.Context, e *metadata.WebhookEndpoint, eventID string, payload []byte, attempt int, limit time.Duration) (int, error) {
	body, ctype, err := Encode(e.Format, payload)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, min(attemptTimeout(e), limit))
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.URL, bytes.NewReader(body))
	if err != nil {
		return 0, fmt.Errorf("build request: %w", err)
	}
	h := req.Header
	h.Set("Content-Type", ctype)
	h.Set("User-Agent", d.opts.UserAgent)
	h.Set(SignatureHeader, Sign(e.Secret, time.Now(), body))
	h.Set(EventHeader, eventID)
	h.Set(AttemptHeader, strconv.Itoa(attempt))
	resp, err := d.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // without the URL, which may hold a receiver's token
		}
		return 0, fmt.Errorf("post: %w", err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return resp.StatusCode, fmt.Errorf("%w %d", errStatus, resp.StatusCode)
	}
	return resp.StatusCode, nil
}
