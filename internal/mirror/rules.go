package mirror

import (
	"context"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/metadata"
	"github.com/berth-registry/berth/internal/reference"
)

// Spec is a mirror as an admin describes it.
type Spec struct {
	Name string
	// Namespace is where the mirror caches (default: Name).
	Namespace          string
	Upstream           string
	Username, Password string
	TagTTL             time.Duration
	DockerHub          bool
	Hosts              []string
}

var (
	validMirrorName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)
	validHost       = regexp.MustCompile(`^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]{1,5})?$`)
)

// MaxTagTTL bounds a mirror's tag TTL.
const MaxTagTTL = 30 * 24 * time.Hour

// check validates a spec and fills its defaults.
func (sp *Spec) check() error {
	if !validMirrorName.MatchString(sp.Name) {
		return fmt.Errorf("%w: mirror name %q: lowercase letters, digits and '-', at most 63", auth.ErrInvalid, sp.Name)
	}
	if sp.Namespace == "" {
		sp.Namespace = sp.Name
	}
	if strings.Contains(sp.Namespace, "/") || reference.ValidateName(sp.Namespace) != nil {
		return fmt.Errorf("%w: namespace %q: one path component of a repository name", auth.ErrInvalid, sp.Namespace)
	}
	u, err := url.Parse(sp.Upstream)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || strings.Trim(u.Path, "/") != "" {
		return fmt.Errorf("%w: upstream %q: an http:// or https:// URL of a registry, without path or credentials (e.g. https://registry-1.docker.io)", auth.ErrInvalid, sp.Upstream)
	}
	sp.Upstream = u.Scheme + "://" + u.Host
	if (sp.Username == "") != (sp.Password == "") {
		return fmt.Errorf("%w: give both a username and a password for the upstream, or neither", auth.ErrInvalid)
	}
	if sp.TagTTL < 0 || sp.TagTTL > MaxTagTTL {
		return fmt.Errorf("%w: tag TTL %s: between 0 (default %s) and %s", auth.ErrInvalid, sp.TagTTL, DefaultTagTTL, MaxTagTTL)
	}
	for i, h := range sp.Hosts {
		h = strings.ToLower(strings.TrimSpace(h))
		if !validHost.MatchString(h) {
			return fmt.Errorf("%w: host %q: a registry host name, with a port if not 443", auth.ErrInvalid, h)
		}
		sp.Hosts[i] = h
	}
	return nil
}

// storeErr maps the store's errors on mirror name.
func storeErr(err error, name string) error {
	return auth.StoreError(err, "no mirror named "+name)
}

// Add records a mirror. A second Docker Hub mirror, or a host another
// mirror serves, is refused.
func (s *Service) Add(ctx context.Context, actor *auth.Principal, sp Spec) (*metadata.Mirror, error) {
	if err := auth.MayAdminister(actor, "mirrors"); err != nil {
		return nil, err
	}
	if err := sp.check(); err != nil {
		return nil, err
	}
	if err := s.Refresh(ctx); err != nil {
		return nil, err
	}
	m := metadata.Mirror{Name: sp.Name, Namespace: sp.Namespace, Upstream: sp.Upstream, Username: sp.Username, Password: sp.Password,
		TagTTL: sp.TagTTL, DockerHub: sp.DockerHub, Hosts: sp.Hosts, CreatedBy: auth.ActorName(actor)}
	if err := s.conflicts(&m); err != nil {
		return nil, err
	}
	if s.ensureNS != nil {
		if err := s.ensureNS(ctx, actor, m.Namespace); err != nil {
			return nil, err
		}
	}
	if err := s.store.AddMirror(ctx, m); err != nil {
		return nil, storeErr(err, sp.Name)
	}
	s.changed(actor, "mirror added", m.Namespace, m.Name)
	return &m, s.Refresh(ctx)
}

// conflicts refuses a mirror that would serve what another serves.
func (s *Service) conflicts(m *metadata.Mirror) error {
	t := s.table.Load()
	for _, o := range t.list {
		if o.Name == m.Name {
			continue
		}
		if m.DockerHub && o.DockerHub {
			return fmt.Errorf("%w: mirror %s is Docker Hub's already", auth.ErrExists, o.Name)
		}
		theirs := map[string]bool{}
		for _, h := range hostsOf(&o) {
			theirs[h] = true
		}
		for _, h := range hostsOf(m) {
			if theirs[h] {
				return fmt.Errorf("%w: mirror %s serves host %s already", auth.ErrExists, o.Name, h)
			}
		}
	}
	return nil
}

// Update changes a mirror; its name and namespace stay. Empty credentials
// keep the stored ones unless clear is set.
func (s *Service) Update(ctx context.Context, actor *auth.Principal, sp Spec, clearCredentials bool) (*metadata.Mirror, error) {
	if err := auth.MayAdminister(actor, "mirrors"); err != nil {
		return nil, err
	}
	if err := s.Refresh(ctx); err != nil {
		return nil, err
	}
	cur := s.find(sp.Name)
	if cur == nil {
		return nil, storeErr(metadata.ErrNotFound, sp.Name)
	}
	sp.Namespace = cur.Namespace
	if sp.Upstream == "" {
		sp.Upstream = cur.Upstream
	}
	if sp.Username == "" && sp.Password == "" && !clearCredentials {
		sp.Username, sp.Password = cur.Username, cur.Password
	}
	if err := sp.check(); err != nil {
		return nil, err
	}
	m := *cur
	m.Upstream, m.Username, m.Password, m.TagTTL, m.DockerHub, m.Hosts = sp.Upstream, sp.Username, sp.Password, sp.TagTTL, sp.DockerHub, sp.Hosts
	if err := s.conflicts(&m); err != nil {
		return nil, err
	}
	if err := s.store.UpdateMirror(ctx, m); err != nil {
		return nil, storeErr(err, sp.Name)
	}
	s.changed(actor, "mirror changed", m.Namespace, m.Name)
	return &m, s.Refresh(ctx)
}

func (s *Service) find(name string) *metadata.Mirror {
	for _, m := range s.table.Load().list {
		if m.Name == name {
			return &m
		}
	}
	return nil
}

// List returns the mirrors.
func (s *Service) List(ctx context.Context, actor *auth.Principal) ([]metadata.Mirror, error) {
	if err := auth.MayAdminister(actor, "mirrors"); err != nil {
		return nil, err
	}
	if err := s.Refresh(ctx); err != nil {
		return nil, err
	}
	return s.table.Load().list, nil
}

// Remove deletes a mirror; what it cached stays, as an ordinary (and now
// writable) namespace, until deleted or collected.
func (s *Service) Remove(ctx context.Context, actor *auth.Principal, name string) error {
	if err := auth.MayAdminister(actor, "mirrors"); err != nil {
		return err
	}
	if err := s.store.RemoveMirror(ctx, name); err != nil {
		return storeErr(err, name)
	}
	s.changed(actor, "mirror removed", "", name)
	return s.Refresh(ctx)
}

// UseNamespaces sets how a mirror's namespace is made to exist (with auth
// on, an account namespace, private until made public, whose members and
// robots may pull from it); without it, namespaces need no record.
func (s *Service) UseNamespaces(ensure func(ctx context.Context, actor *auth.Principal, ns string) error) {
	s.ensureNS = ensure
}

// OnChange sets a function told of every change (the audit log).
func (s *Service) OnChange(fn func(actor, action, ns, name string)) { s.audit = fn }

func (s *Service) changed(actor *auth.Principal, action, ns, name string) {
	if s.audit != nil {
		s.audit(auth.ActorName(actor), action, ns, name)
	}
}
