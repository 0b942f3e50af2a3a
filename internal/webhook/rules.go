package webhook

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/berth-registry/berth/internal/events"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/metadata"
	"github.com/berth-registry/berth/internal/reference"
)

// Authorizer is the rule of who may manage a namespace's webhooks (ns ""
// is the whole registry's).
type Authorizer interface {
	RequireOwner(ctx context.Context, actor *auth.Principal, ns string) error
}

// Service applies the rules of webhook management: admins manage global
// endpoints, a namespace's owners (and admins) that namespace's.
type Service struct {
	store Store
	authz Authorizer
	d     *Dispatcher
	// audit, when set, records each change (never the secret or URL,
	// whose query may hold a receiver's token).
	audit func(actor, action, ns, name string)
}

// OnChange sets what records each change to an endpoint (the audit log).
func (s *Service) OnChange(fn func(actor, action, ns, name string)) { s.audit = fn }

func (s *Service) changed(actor *auth.Principal, action, ns, name string) {
	if s.audit != nil {
		s.audit(actor.Name, action, ns, name)
	}
}

// NewService returns the management rules over store, testing endpoints
// with d.
func NewService(store Store, authz Authorizer, d *Dispatcher) *Service {
	return &Service{store: store, authz: authz, d: d}
}

// Spec is an endpoint to add.
type Spec struct {
	Name      string
	Namespace string
	URL       string
	Actions   []string
	Format    string
	// Secret is generated when empty.
	Secret  string
	Timeout time.Duration
}

// check validates a spec and fills in defaults.
func (sp *Spec) check() error {
	if len(sp.Name) == 0 || len(sp.Name) > 64 || strings.Contains(sp.Name, "/") || reference.ValidateName(sp.Name) != nil {
		return fmt.Errorf("%w: webhook name %q: use lower-case letters, digits and . _ - between them, at most 64", auth.ErrInvalid, sp.Name)
	}
	if sp.Namespace != "" && (strings.Contains(sp.Namespace, "/") || reference.ValidateName(sp.Namespace) != nil) {
		return fmt.Errorf("%w: %q is not a namespace name", auth.ErrInvalid, sp.Namespace)
	}
	u, err := url.Parse(sp.URL)
	switch {
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || len(sp.URL) > 2048:
		return fmt.Errorf("%w: webhook URL %q: give an absolute http:// or https:// URL", auth.ErrInvalid, sp.URL)
	case u.User != nil:
		return fmt.Errorf("%w: webhook URL carries credentials: deliveries are signed with the webhook's secret instead", auth.ErrInvalid)
	}
	if len(sp.Actions) == 0 {
		sp.Actions = slices.Clone(events.DefaultActions)
	}
	for _, a := range sp.Actions {
		if !slices.Contains(events.Actions, a) {
			return fmt.Errorf("%w: unknown event %q (one of %s)", auth.ErrInvalid, a, strings.Join(events.Actions, ", "))
		}
	}
	sp.Actions = slices.Compact(slices.Sorted(slices.Values(sp.Actions)))
	switch sp.Format {
	case "":
		sp.Format = FormatDistribution
	case FormatDistribution, FormatCloudEvents:
	case FormatReplicate:
		return fmt.Errorf("%w: format %q: replication rules are managed with berth replicate (/api/v1/replication), not as webhooks", auth.ErrInvalid, sp.Format)
	default:
		return fmt.Errorf("%w: unknown format %q (distribution or cloudevents)", auth.ErrInvalid, sp.Format)
	}
	switch {
	case sp.Timeout == 0:
		sp.Timeout = DefaultTimeout
	case sp.Timeout < 100*time.Millisecond || sp.Timeout > MaxTimeout:
		return fmt.Errorf("%w: timeout %s: between 100ms and %s", auth.ErrInvalid, sp.Timeout, MaxTimeout)
	}
	switch {
	case sp.Secret == "":
		sp.Secret = events.NewID() + events.NewID()
	case len(sp.Secret) < 16 || len(sp.Secret) > 256:
		return fmt.Errorf("%w: a webhook secret has 16 to 256 characters", auth.ErrInvalid)
	}
	return nil
}

func storeErr(err error, name string) error {
	return auth.StoreError(err, "no webhook "+name)
}

// Add records an endpoint and returns it with its secret, which is shown
// this once.
func (s *Service) Add(ctx context.Context, actor *auth.Principal, sp Spec) (*metadata.WebhookEndpoint, error) {
	if err := sp.check(); err != nil {
		return nil, err
	}
	if err := s.authz.RequireOwner(ctx, actor, sp.Namespace); err != nil {
		return nil, err
	}
	e := metadata.WebhookEndpoint{Name: sp.Name, Namespace: sp.Namespace, URL: sp.URL, Actions: sp.Actions, Format: sp.Format,
		Secret: sp.Secret, Timeout: sp.Timeout, CreatedBy: actor.Name, Created: time.Now()}
	id, err := s.store.AddWebhook(ctx, e)
	if err != nil {
		return nil, storeErr(err, sp.Name)
	}
	e.ID = id
	s.d.refresh(ctx) // this replica's dispatcher starts reading the outbox now
	s.changed(actor, "webhook added", e.Namespace, e.Name)
	return &e, nil
}

// get returns an endpoint the actor may manage.
func (s *Service) get(ctx context.Context, actor *auth.Principal, name string) (*metadata.WebhookEndpoint, error) {
	e, err := s.store.Webhook(ctx, name)
	if err != nil {
		return nil, storeErr(err, name)
	}
	if e.Format == FormatReplicate {
		return nil, fmt.Errorf("%w: no webhook %s (%s is a replication rule: see berth replicate)", auth.ErrNotFound, name, name)
	}
	if err := s.authz.RequireOwner(ctx, actor, e.Namespace); err != nil {
		return nil, fmt.Errorf("%w: no webhook %s", auth.ErrNotFound, name) // do not reveal others' endpoints
	}
	return e, nil
}

// List returns the endpoints the actor may manage, without secrets.
func (s *Service) List(ctx context.Context, actor *auth.Principal) ([]metadata.WebhookEndpoint, error) {
	all, err := s.store.Webhooks(ctx)
	if err != nil {
		return nil, err
	}
	out := []metadata.WebhookEndpoint{}
	for _, e := range all {
		if e.Format == FormatReplicate {
			continue // replication rules: berth replicate list
		}
		if s.authz.RequireOwner(ctx, actor, e.Namespace) == nil {
			e.Secret = ""
			out = append(out, e)
		}
	}
	return out, nil
}

// Remove deletes an endpoint and its pending and past deliveries.
func (s *Service) Remove(ctx context.Context, actor *auth.Principal, name string) error {
	e, err := s.get(ctx, actor, name)
	if err != nil {
		return err
	}
	if err := s.store.RemoveWebhook(ctx, name); err != nil {
		return storeErr(err, name)
	}
	s.changed(actor, "webhook removed", e.Namespace, name)
	return nil
}

// TestResult is the outcome of a test delivery.
type TestResult struct {
	Status int
	Error  string
}

// Test sends a ping event to an endpoint now, outside the outbox, and
// reports what it answered.
func (s *Service) Test(ctx context.Context, actor *auth.Principal, name string) (*TestResult, error) {
	e, err := s.get(ctx, actor, name)
	if err != nil {
		return nil, err
	}
	ev := events.NewDetail(ctx, events.ActionPing, e.Namespace, map[string]any{"webhook": e.Name})
	status, err := s.d.send(ctx, e, ev.ID, ev.Payload, 1, MaxTimeout)
	res := &TestResult{Status: status}
	if err != nil {
		res.Error = err.Error()
	}
	return res, nil
}

// Deliveries lists an endpoint's deliveries, newest first.
func (s *Service) Deliveries(ctx context.Context, actor *auth.Principal, name, state string, before int64, limit int) ([]metadata.Delivery, error) {
	e, err := s.get(ctx, actor, name)
	if err != nil {
		return nil, err
	}
	switch state {
	case "", metadata.DeliveryPending, metadata.DeliveryDelivered, metadata.DeliveryDead:
	default:
		return nil, fmt.Errorf("%w: state %q: pending, delivered or dead", auth.ErrInvalid, state)
	}
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	return s.store.Deliveries(ctx, metadata.DeliveryFilter{EndpointID: e.ID, State: state, Before: before, Limit: limit})
}

// Redeliver queues deliveries of an endpoint again: the given ones, or
// every dead one when ids is empty.
func (s *Service) Redeliver(ctx context.Context, actor *auth.Principal, name string, ids []int64) (int64, error) {
	e, err := s.get(ctx, actor, name)
	if err != nil {
		return 0, err
	}
	if len(ids) > 1000 {
		return 0, fmt.Errorf("%w: at most 1000 deliveries at once", auth.ErrInvalid)
	}
	n, err := s.store.Redeliver(ctx, e.ID, ids)
	if err == nil && n > 0 {
		s.d.Wake()
		s.changed(actor, "webhook deliveries requeued", e.Namespace, name)
	}
	return n, err
}
