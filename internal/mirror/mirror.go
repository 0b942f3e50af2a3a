// Package mirror makes berth a pull-through cache of other registries:
// which repository names a mirror serves (its namespace, Docker Hub's
// names without one, containerd's ?ns=), fetching manifests and blobs
// from the upstream on a miss and keeping them, re-checking tags after
// their TTL, serving stale tags when the upstream is down, and sharing one
// download of a blob among all the clients that want it. It knows nothing
// of HTTP requests: package api asks it to Resolve a name and to serve
// Manifests and Blobs; mirrorapi manages the mirrors.
package mirror

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/metadata"
	"github.com/berth-registry/berth/internal/registry"
	"github.com/berth-registry/berth/internal/upstream"
)

// Store is what mirrors need from the metadata store.
type Store interface {
	AddMirror(ctx context.Context, m metadata.Mirror) error
	UpdateMirror(ctx context.Context, m metadata.Mirror) error
	Mirrors(ctx context.Context) ([]metadata.Mirror, error)
	RemoveMirror(ctx context.Context, name string) error
	TagChecked(ctx context.Context, repo, tag string) (time.Time, error)
	SetTagChecked(ctx context.Context, repo, tag string, t time.Time) error
	Tags(ctx context.Context, repo, last string, n int) ([]string, bool, error)
}

// DefaultTagTTL is how long a cached tag is served before the upstream is
// asked again, unless the mirror says otherwise.
const DefaultTagTTL = 10 * time.Minute

// dockerHubHosts are the names containerd and Docker give Docker Hub.
var dockerHubHosts = []string{"docker.io", "registry-1.docker.io", "index.docker.io"}

// Totals are the mirrors' running counts, for metrics.
type Totals struct {
	// ManifestFetches and BlobFetches count requests to upstreams for
	// content (a HEAD to re-check a tag is a TagCheck).
	ManifestFetches, BlobFetches, TagChecks atomic.Int64
	// BlobBytes counts the bytes downloaded from upstreams.
	BlobBytes atomic.Int64
	// Stale counts tags served from the cache because their upstream
	// failed; Faults counts upstream answers refused (wrong digest,
	// truncated body, error in the middle).
	Stale, Faults atomic.Int64
	// Shared counts blob pulls that joined a download in progress.
	Shared atomic.Int64
}

// Service serves mirrored repositories.
type Service struct {
	store  Store
	reg    *registry.Service
	log    *slog.Logger
	totals Totals
	// table is the mirrors as last read (refreshed on every change made
	// here, and every RefreshInterval for changes made by other replicas).
	table atomic.Pointer[table]
	// spoolDir holds downloads when the blob store is not a Spooler.
	spoolDir string

	audit     func(actor, action, ns, name string)
	ensureNS  func(ctx context.Context, actor *auth.Principal, ns string) error
	mu        sync.Mutex
	fills     map[fillKey]*fill
	manifests map[string]*call
}

// table is a snapshot of the mirrors, with an upstream client each.
type table struct {
	byNS   map[string]*entry
	byHost map[string]*entry
	hub    *entry // the Docker Hub mirror, if one is marked so
	list   []metadata.Mirror
}

// entry is one mirror and its client.
type entry struct {
	metadata.Mirror
	client *upstream.Client
}

// New returns the mirrors' service; Refresh loads the mirrors.
func New(store Store, reg *registry.Service, spoolDir string, log *slog.Logger) *Service {
	s := &Service{store: store, reg: reg, log: log, spoolDir: spoolDir, fills: map[fillKey]*fill{}, manifests: map[string]*call{}}
	s.table.Store(&table{byNS: map[string]*entry{}, byHost: map[string]*entry{}})
	return s
}

// Totals returns the running counts.
func (s *Service) Totals() *Totals { return &s.totals }

// RefreshInterval is how often the mirrors should be read again (Refresh),
// for the changes other replicas make.
const RefreshInterval = 10 * time.Second

// Refresh reads the mirrors from the store. Clients of unchanged mirrors
// are kept, with their tokens and connections.
func (s *Service) Refresh(ctx context.Context) error {
	ms, err := s.store.Mirrors(ctx)
	if err != nil {
		return err
	}
	old := s.table.Load()
	t := &table{byNS: map[string]*entry{}, byHost: map[string]*entry{}, list: ms}
	for _, m := range ms {
		e := &entry{Mirror: m}
		if prev := old.byNS[m.Namespace]; prev != nil && sameMirror(&prev.Mirror, &m) {
			e.client = prev.client
		} else if e.client, err = upstream.New(upstream.Options{URL: m.Upstream, Username: m.Username, Password: m.Password, UserAgent: "berth-mirror"}); err != nil {
			s.log.Error("mirror has an unusable upstream", "mirror", m.Name, "err", err)
			continue
		}
		t.byNS[m.Namespace] = e
		for _, h := range hostsOf(&m) {
			t.byHost[h] = e
		}
		if m.DockerHub {
			t.hub = e
		}
	}
	s.table.Store(t)
	return nil
}

func sameMirror(a, b *metadata.Mirror) bool {
	return a.Name == b.Name && a.Upstream == b.Upstream && a.Username == b.Username && a.Password == b.Password
}

// hostsOf lists the registry hosts a mirror answers ?ns= for: its own
// hosts, its upstream's, and Docker Hub's names when it is Docker Hub's.
func hostsOf(m *metadata.Mirror) []string {
	hosts := append([]string(nil), m.Hosts...)
	if u, err := url.Parse(m.Upstream); err == nil && u.Host != "" {
		hosts = append(hosts, u.Host)
	}
	if m.DockerHub {
		hosts = append(hosts, dockerHubHosts...)
	}
	return hosts
}

// Alias returns the repository a name without a mirror's namespace
// resolves to (no ns parameter: Docker Hub's names), for the token
// service, whose grant on name stands for what it resolves to; ok is false
// for names that are no alias (a mirror's own names included).
func (s *Service) Alias(ctx context.Context, name string) (string, bool) {
	t, ok, err := s.Resolve(ctx, name, "")
	if err != nil || !ok || t.Local == name {
		return "", false
	}
	return t.Local, true
}

// Target is a repository name resolved to a mirror.
type Target struct {
	// Local is the repository the content is cached under.
	Local string
	// Upstream is the repository's name at the upstream.
	Upstream string
	// Mirror names the mirror.
	Mirror string
	entry  *entry
}

// Mirrored reports whether a repository name is in a mirror's namespace,
// which clients may not push to; it returns the mirror's upstream URL.
func (s *Service) Mirrored(name string) (upstreamURL string, ok bool) {
	ns, _, _ := strings.Cut(name, "/")
	if e := s.table.Load().byNS[ns]; e != nil {
		return e.Upstream, true
	}
	return "", false
}

// Resolve says which mirror serves a read of repository name, given the
// ns query parameter containerd sends to a mirror ("" when absent): a
// name in a mirror's namespace; a name under the mirror of host ns; a name
// without a known namespace under the Docker Hub mirror, unless a local
// repository has that name. ok is false for names no mirror serves.
func (s *Service) Resolve(ctx context.Context, name, ns string) (Target, bool, error) {
	t := s.table.Load()
	if len(t.byNS) == 0 {
		return Target{}, false, nil
	}
	first, rest, _ := strings.Cut(name, "/")
	if e := t.byNS[first]; e != nil && rest != "" {
		return target(e, name, rest), true, nil
	}
	if ns != "" {
		if e := t.byHost[strings.ToLower(ns)]; e != nil {
			return target(e, e.Namespace+"/"+name, name), true, nil
		}
	}
	if t.hub == nil || (ns != "" && !isDockerHub(ns)) {
		return Target{}, false, nil
	}
	if _, local, err := s.store.Tags(ctx, name, "", 1); err != nil {
		return Target{}, false, fmt.Errorf("look up repository %s: %w", name, err)
	} else if local {
		return Target{}, false, nil
	}
	return target(t.hub, t.hub.Namespace+"/"+name, name), true, nil
}

func isDockerHub(host string) bool {
	for _, h := range dockerHubHosts {
		if strings.EqualFold(host, h) {
			return true
		}
	}
	return false
}

// target names the local and upstream repositories of a mirrored name:
// Docker Hub keeps its official images under library/.
func target(e *entry, local, up string) Target {
	if e.DockerHub && !strings.Contains(up, "/") {
		up = "library/" + up
	}
	return Target{Local: local, Upstream: up, Mirror: e.Name, entry: e}
}
