// Package replicate copies images between berth and other registries
// (another berth, CNCF Distribution, any OCI registry), digest for digest.
//
// A push rule copies what is pushed to berth to a target registry. It is a
// webhook endpoint of format "replicate": the push's own transaction
// writes its event to the outbox with a delivery for the rule, and the
// webhook dispatcher hands the delivery to this package's Replicator, with
// the outbox's order per repository, claims, retries with backoff and
// dead letters; so no acknowledged push is skipped, across restarts and
// crashes.
//
// A pull rule copies a remote registry's repositories and tags (those its
// globs select) into berth on a schedule, through the registry's normal
// write path. One replica runs each scheduled run: the run is claimed in
// the metadata store.
package replicate

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/events"
	"github.com/berth-registry/berth/internal/metadata"
	"github.com/berth-registry/berth/internal/reference"
	"github.com/berth-registry/berth/internal/upstream"
)

// Store is what replication needs of the metadata store.
type Store interface {
	AddReplication(ctx context.Context, r metadata.ReplicationRule) (int64, error)
	ReplicationRules(ctx context.Context) ([]metadata.ReplicationRule, error)
	ReplicationRule(ctx context.Context, name string) (*metadata.ReplicationRule, error)
	ReplicationRuleByID(ctx context.Context, endpointID int64) (*metadata.ReplicationRule, error)
	RemoveReplication(ctx context.Context, name string) error
	ClaimReplicationRun(ctx context.Context, endpointID int64, force bool) (bool, error)
	FinishReplicationRun(ctx context.Context, endpointID int64, run metadata.ReplicationRun) error
	ReplicationStatus(ctx context.Context, endpointID int64) (metadata.ReplicationStatus, error)
	Redeliver(ctx context.Context, endpointID int64, ids []int64) (int64, error)
}

// Queue is the webhook dispatcher, which delivers push rules' events.
type Queue interface {
	Refresh(ctx context.Context)
	Wake()
}

// Options tune replication.
type Options struct {
	// UserAgent is sent to remote registries.
	UserAgent string
	// Transport makes the requests to remote registries (default: the
	// upstream client's).
	Transport http.RoundTripper
}

// Limits of the rules.
const (
	DefaultInterval = time.Hour
	MinInterval     = time.Second
	MaxInterval     = 30 * 24 * time.Hour
	// maxRun bounds one pull run.
	maxRun = 6 * time.Hour
)

// Service manages the rules, replicates push events (it is the webhook
// dispatcher's Replicator) and runs pull rules (Run).
type Service struct {
	store Store
	local Local
	queue Queue
	log   *slog.Logger
	opts  Options

	mu      sync.Mutex
	clients map[int64]*remote
	runs    map[int64]*sync.Mutex

	audit func(actor, action, ns, name string)
}

// remote is a cached client of a rule's registry; key says which settings
// it was made with.
type remote struct {
	key string
	c   *upstream.Client
}

// New returns the service; queue may be nil (tests).
func New(store Store, local Local, queue Queue, opts Options, log *slog.Logger) *Service {
	if opts.UserAgent == "" {
		opts.UserAgent = "berth-replicate"
	}
	return &Service{store: store, local: local, queue: queue, log: log, opts: opts,
		clients: map[int64]*remote{}, runs: map[int64]*sync.Mutex{}}
}

// OnChange sets a function told of every change (the audit log).
func (s *Service) OnChange(fn func(actor, action, ns, name string)) { s.audit = fn }

func (s *Service) changed(actor *auth.Principal, action, name string) {
	if s.audit != nil {
		s.audit(auth.ActorName(actor), action, "", name)
	}
}

// storeErr maps the store's errors on rule name.
func storeErr(err error, name string) error {
	return auth.StoreError(err, "no replication rule named "+name)
}

// Spec is a rule as an admin describes it.
type Spec struct {
	Name      string
	Direction string
	// URL is the remote registry: the target of a push rule, the source
	// of a pull rule.
	URL string
	// Repositories and Tags are path.Match globs ("" for all).
	Repositories, Tags string
	Username, Password string
	// Interval is how often a pull rule runs (default 1h).
	Interval time.Duration
}

// check validates a spec and fills its defaults.
func (sp *Spec) check() error {
	if len(sp.Name) == 0 || len(sp.Name) > 64 || strings.Contains(sp.Name, "/") || reference.ValidateName(sp.Name) != nil {
		return fmt.Errorf("%w: rule name %q: use lower-case letters, digits and . _ - between them, at most 64", auth.ErrInvalid, sp.Name)
	}
	switch sp.Direction {
	case metadata.ReplicatePush, metadata.ReplicatePull:
	default:
		return fmt.Errorf("%w: direction %q: push (--to) or pull (--from)", auth.ErrInvalid, sp.Direction)
	}
	if _, err := upstream.New(upstream.Options{URL: sp.URL}); err != nil {
		return fmt.Errorf("%w: remote registry URL: %v", auth.ErrInvalid, strings.TrimPrefix(err.Error(), "upstream: "))
	}
	sp.URL = strings.TrimSuffix(sp.URL, "/")
	for what, g := range map[string]string{"repository filter": sp.Repositories, "tag filter": sp.Tags} {
		if len(g) > 256 {
			return fmt.Errorf("%w: %s: at most 256 characters", auth.ErrInvalid, what)
		}
		if _, err := path.Match(g, ""); err != nil {
			return fmt.Errorf("%w: %s %q: not a glob (path.Match: * ? [...] within a path segment)", auth.ErrInvalid, what, g)
		}
	}
	if (sp.Username == "") != (sp.Password == "") {
		return fmt.Errorf("%w: give both a username and a password for the remote registry, or neither", auth.ErrInvalid)
	}
	if sp.Direction == metadata.ReplicatePush {
		if sp.Interval != 0 {
			return fmt.Errorf("%w: a push rule has no schedule: it copies each push as it happens", auth.ErrInvalid)
		}
		return nil
	}
	switch {
	case sp.Interval == 0:
		sp.Interval = DefaultInterval
	case sp.Interval < MinInterval || sp.Interval > MaxInterval:
		return fmt.Errorf("%w: interval %s: between %s and %s", auth.ErrInvalid, sp.Interval, MinInterval, MaxInterval)
	}
	return nil
}

// namespaceOf is the namespace whose events a push rule needs: the
// filter's first segment when it is literal, else "" (every event).
func namespaceOf(filter string) string {
	first, _, _ := strings.Cut(filter, "/")
	if first == "" || strings.ContainsAny(first, `*?[\`) {
		return ""
	}
	return first
}

// match reports whether s matches glob ("" matches everything).
func match(glob, s string) bool {
	if glob == "" {
		return true
	}
	ok, _ := path.Match(glob, s)
	return ok
}

// Rule is a rule with its queue's status.
type Rule struct {
	metadata.ReplicationRule
	metadata.ReplicationStatus
}

// Add records a rule.
func (s *Service) Add(ctx context.Context, actor *auth.Principal, sp Spec) (*Rule, error) {
	if err := auth.MayAdminister(actor, "replication"); err != nil {
		return nil, err
	}
	if err := sp.check(); err != nil {
		return nil, err
	}
	r := metadata.ReplicationRule{Direction: sp.Direction, Repositories: sp.Repositories, Tags: sp.Tags,
		Username: sp.Username, Password: sp.Password, Interval: sp.Interval}
	r.Endpoint = metadata.WebhookEndpoint{Name: sp.Name, URL: sp.URL, Format: metadata.FormatReplicate,
		Secret: events.NewID(), Timeout: 10 * time.Minute, CreatedBy: auth.ActorName(actor), Created: time.Now()}
	if sp.Direction == metadata.ReplicatePush {
		r.Endpoint.Namespace, r.Endpoint.Actions = namespaceOf(sp.Repositories), []string{events.ActionPush}
	}
	id, err := s.store.AddReplication(ctx, r)
	if err != nil {
		return nil, storeErr(err, sp.Name)
	}
	r.Endpoint.ID = id
	if s.queue != nil {
		s.queue.Refresh(ctx) // this replica's claims cover replication attempts from now on
	}
	s.changed(actor, "replication rule added", sp.Name)
	return &Rule{ReplicationRule: r}, nil
}

// List returns the rules with their status.
func (s *Service) List(ctx context.Context, actor *auth.Principal) ([]Rule, error) {
	if err := auth.MayAdminister(actor, "replication"); err != nil {
		return nil, err
	}
	rs, err := s.store.ReplicationRules(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Rule, 0, len(rs))
	for _, r := range rs {
		st, err := s.store.ReplicationStatus(ctx, r.Endpoint.ID)
		if err != nil {
			return nil, err
		}
		out = append(out, Rule{ReplicationRule: r, ReplicationStatus: st})
	}
	return out, nil
}

// Remove deletes a rule and its queue; what it copied stays.
func (s *Service) Remove(ctx context.Context, actor *auth.Principal, name string) error {
	if err := auth.MayAdminister(actor, "replication"); err != nil {
		return err
	}
	if err := s.store.RemoveReplication(ctx, name); err != nil {
		return storeErr(err, name)
	}
	s.changed(actor, "replication rule removed", name)
	return nil
}

// Redeliver queues a push rule's dead deliveries again.
func (s *Service) Redeliver(ctx context.Context, actor *auth.Principal, name string) (int64, error) {
	if err := auth.MayAdminister(actor, "replication"); err != nil {
		return 0, err
	}
	r, err := s.store.ReplicationRule(ctx, name)
	if err != nil {
		return 0, storeErr(err, name)
	}
	n, err := s.store.Redeliver(ctx, r.Endpoint.ID, nil)
	if err == nil && n > 0 {
		if s.queue != nil {
			s.queue.Wake()
		}
		s.changed(actor, "replication requeued", name)
	}
	return n, err
}

// client returns a client of a rule's registry, made once per settings so
// that its tokens are reused.
func (s *Service) client(r *metadata.ReplicationRule) (*upstream.Client, error) {
	sum := sha256.Sum256([]byte(r.Password))
	key := r.Endpoint.URL + "\x00" + r.Username + "\x00" + hex.EncodeToString(sum[:])
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.clients[r.Endpoint.ID]; c != nil && c.key == key {
		return c.c, nil
	}
	c, err := upstream.New(upstream.Options{URL: r.Endpoint.URL, Username: r.Username, Password: r.Password,
		UserAgent: s.opts.UserAgent, Transport: s.opts.Transport})
	if err != nil {
		return nil, err
	}
	s.clients[r.Endpoint.ID] = &remote{key: key, c: c}
	return c, nil
}

// runLock is the lock that keeps a rule's runs on this replica one at a
// time.
func (s *Service) runLock(id int64) *sync.Mutex {
	s.mu.Lock()
	defer s.mu.Unlock()
	mu := s.runs[id]
	if mu == nil {
		mu = &sync.Mutex{}
		s.runs[id] = mu
	}
	return mu
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

// ---- push rules ----

// Replicate copies what a push event names to a push rule's target: the
// manifest (an index with its child manifests, children first) with the
// blobs the target lacks, byte for byte, then the tag. Events of other
// repositories or tags than the rule's globs select are done at once, as
// are those of content deleted since. A push by digest (a child manifest,
// a referrer such as a signature) always goes, whatever the tag glob.
func (s *Service) Replicate(ctx context.Context, e *metadata.WebhookEndpoint, ev *metadata.Event) error {
	pt, ok, err := pushOf(ev)
	if err != nil || !ok {
		return err
	}
	r, err := s.store.ReplicationRuleByID(ctx, e.ID)
	if errors.Is(err, metadata.ErrNotFound) {
		return nil // removed meanwhile
	}
	if err != nil {
		return err
	}
	if r.Direction != metadata.ReplicatePush || !match(r.Repositories, pt.repo) || (pt.tag != "" && !match(r.Tags, pt.tag)) {
		return nil
	}
	c, err := s.client(r)
	if err != nil {
		return err
	}
	cp := &copier{src: localSource{s.local}, dst: remoteSink{c: c, mountFrom: s.mountFrom(r)}}
	start := time.Now()
	_, err = cp.image(ctx, pt.repo, pt.digest, pt.tag)
	if errors.Is(err, errGone) {
		s.log.Info("replication skipped content deleted since its push", "rule", e.Name, "repository", pt.repo, "digest", pt.digest, "err", err)
		return nil
	}
	if err != nil {
		return err
	}
	s.log.Debug("replicated", "rule", e.Name, "repository", pt.repo, "digest", pt.digest, "tag", pt.tag,
		"manifests", cp.n.Manifests, "blobs", cp.n.Blobs, "bytes", cp.n.Bytes, "took", time.Since(start))
	return nil
}

// mountFrom returns where the target may mount a blob from: other
// repositories of berth that hold it and that the rule replicates (the
// target has them if their pushes were replicated already).
func (s *Service) mountFrom(r *metadata.ReplicationRule) func(ctx context.Context, repo string, d reference.Digest) []string {
	return func(ctx context.Context, repo string, d reference.Digest) []string {
		repos, err := s.local.BlobRepositories(ctx, d, 8)
		if err != nil {
			return nil
		}
		var out []string
		for _, o := range repos {
			if o != repo && match(r.Repositories, o) && len(out) < 2 {
				out = append(out, o)
			}
		}
		return out
	}
}

// ---- pull rules ----

// ScheduleTick is how often RunDue should be called.
const ScheduleTick = time.Second

// RunDue starts the pull rules whose interval has passed and that this
// replica claims (each in a goroutine of its own; a rule running here
// already is left alone). Call it every ScheduleTick.
func (s *Service) RunDue(ctx context.Context) {
	rules, err := s.store.ReplicationRules(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Error("reading replication rules failed", "err", err)
		}
		return
	}
	for i := range rules {
		r := &rules[i]
		if r.Direction != metadata.ReplicatePull || time.Since(r.LastRun.Started) < r.Interval {
			continue
		}
		mu := s.runLock(r.Endpoint.ID)
		if !mu.TryLock() {
			continue // running here already
		}
		go func() {
			defer mu.Unlock()
			ok, err := s.store.ClaimReplicationRun(ctx, r.Endpoint.ID, false)
			if err != nil || !ok {
				return // another replica runs it
			}
			s.finish(ctx, r, s.pull(ctx, r))
		}()
	}
}

// finish records a run.
func (s *Service) finish(ctx context.Context, r *metadata.ReplicationRule, run metadata.ReplicationRun) {
	if err := s.store.FinishReplicationRun(context.WithoutCancel(ctx), r.Endpoint.ID, run); err != nil {
		s.log.Error("recording a replication run failed", "rule", r.Endpoint.Name, "err", err)
	}
	level := slog.LevelInfo
	if run.Error != "" {
		level = slog.LevelWarn
	}
	s.log.Log(ctx, level, "replication run", "rule", r.Endpoint.Name, "copied", run.Copied, "skipped", run.Skipped,
		"failed", run.Failed, "err", run.Error, "took", time.Since(run.Started).Round(time.Millisecond))
}

// RunNow runs a pull rule now (waiting for a run of it going on here) and
// returns what the run did. The run goes on when ctx ends (the client
// gave up waiting).
func (s *Service) RunNow(ctx context.Context, actor *auth.Principal, name string) (metadata.ReplicationRun, error) {
	if err := auth.MayAdminister(actor, "replication"); err != nil {
		return metadata.ReplicationRun{}, err
	}
	r, err := s.store.ReplicationRule(ctx, name)
	if err != nil {
		return metadata.ReplicationRun{}, storeErr(err, name)
	}
	if r.Direction != metadata.ReplicatePull {
		return metadata.ReplicationRun{}, fmt.Errorf("%w: %s is a push rule: it copies each push as it happens (berth replicate list shows its queue)", auth.ErrInvalid, name)
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), maxRun)
	defer cancel()
	mu := s.runLock(r.Endpoint.ID)
	mu.Lock()
	defer mu.Unlock()
	ok, err := s.store.ClaimReplicationRun(ctx, r.Endpoint.ID, true)
	if err != nil {
		return metadata.ReplicationRun{}, err
	}
	if !ok {
		return metadata.ReplicationRun{}, fmt.Errorf("%w: a run of %s is going on on another replica", auth.ErrExists, name)
	}
	s.changed(actor, "replication run", name)
	run := s.pull(ctx, r)
	s.finish(ctx, r, run)
	return run, nil
}

// pull copies what the rule selects of its registry and berth lacks:
// every repository of the catalog its filter matches, every tag its tag
// glob matches, each image with its referrers. A tag that fails is
// counted and the run goes on.
func (s *Service) pull(ctx context.Context, r *metadata.ReplicationRule) (run metadata.ReplicationRun) {
	ctx, cancel := context.WithTimeout(ctx, maxRun)
	defer cancel()
	run.Started = time.Now()
	defer func() { run.Finished = time.Now() }()
	fail := func(err error) {
		run.Failed++
		if run.Error == "" {
			run.Error = err.Error()
		}
	}
	c, err := s.client(r)
	if err != nil {
		fail(err)
		return run
	}
	ctx = events.WithOrigin(ctx, events.Origin{Actor: "replication:" + r.Endpoint.Name})
	repos, err := c.Catalog(ctx)
	if err != nil {
		fail(fmt.Errorf("list the repositories: %w", err))
		return run
	}
	for _, repo := range repos {
		if !match(r.Repositories, repo) || reference.ValidateName(repo) != nil {
			continue
		}
		tags, err := c.Tags(ctx, repo)
		if err != nil {
			fail(fmt.Errorf("list the tags of %s: %w", repo, err))
			continue
		}
		slices.Sort(tags)
		for _, tag := range tags {
			if !match(r.Tags, tag) || reference.ValidateTag(tag) != nil {
				continue
			}
			if ctx.Err() != nil {
				fail(ctx.Err())
				return run
			}
			copied, err := s.pullTag(ctx, c, repo, tag)
			switch {
			case err != nil:
				fail(fmt.Errorf("%s:%s: %w", repo, tag, err))
			case copied:
				run.Copied++
			default:
				run.Skipped++
			}
		}
	}
	return run
}

// pullTag copies repo:tag from the remote unless berth has it already,
// with the referrers of what it copies.
func (s *Service) pullTag(ctx context.Context, c *upstream.Client, repo, tag string) (bool, error) {
	desc, err := c.HeadManifest(ctx, repo, tag)
	if err != nil {
		return false, err
	}
	cp := &copier{src: remoteSource{c}, dst: localSink{s.local}}
	copied, err := cp.image(ctx, repo, desc.Digest, tag)
	if err != nil || !copied {
		return copied, err
	}
	refs, err := c.Referrers(ctx, repo, desc.Digest)
	if err != nil {
		return true, fmt.Errorf("referrers: %w", err)
	}
	for _, ref := range refs {
		if _, _, err := cp.manifest(ctx, repo, ref.Digest, 0); err != nil {
			return true, fmt.Errorf("referrer %s: %w", ref.Digest, err)
		}
	}
	return true, nil
}
