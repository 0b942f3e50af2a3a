package mirror

import (
	"context"
	"errors"
	"time"

	"github.com/berth-registry/berth/internal/errcode"
	"github.com/berth-registry/berth/internal/metadata"
	"github.com/berth-registry/berth/internal/reference"
	"github.com/berth-registry/berth/internal/upstream"
)

// upstreamTimeout bounds a manifest request to an upstream: a slow
// upstream makes a tag stale rather than a pull hang.
const upstreamTimeout = 20 * time.Second

// call is one manifest fetch that concurrent pulls of the same reference
// share.
type call struct {
	done chan struct{}
	m    *metadata.Manifest
	err  error
}

// Manifest returns the manifest ref of a mirrored repository: from the
// cache when it has it (a tag only while it is younger than the mirror's
// TTL), else from the upstream, kept for the next pull. A tag whose
// upstream fails is served from the cache, stale.
func (s *Service) Manifest(ctx context.Context, t Target, ref string) (*metadata.Manifest, error) {
	cached, err := s.reg.GetManifest(ctx, t.Local, ref)
	var e *errcode.Error
	if err != nil && !(errors.As(err, &e) && e.Code == errcode.ManifestUnknown) {
		return nil, err
	}
	if cached != nil && reference.IsDigest(ref) {
		return cached, nil
	}
	if cached != nil {
		checked, err := s.store.TagChecked(ctx, t.Local, ref)
		if err != nil {
			return nil, errcode.Wrap(err, "tag check lookup failed")
		}
		if time.Since(checked) < t.entry.ttl() {
			return cached, nil
		}
	}
	// One fetch per reference at a time; the others wait for its result.
	key := t.Local + "@" + ref
	s.mu.Lock()
	c := s.manifests[key]
	if c == nil {
		c = &call{done: make(chan struct{})}
		s.manifests[key] = c
		go func() {
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), upstreamTimeout)
			c.m, c.err = s.fetchManifest(fctx, t, ref, cached)
			cancel()
			s.mu.Lock()
			delete(s.manifests, key)
			s.mu.Unlock()
			close(c.done)
		}()
	}
	s.mu.Unlock()
	select {
	case <-c.done:
		return c.m, c.err
	case <-ctx.Done():
		return nil, errcode.Wrap(ctx.Err(), "waiting for the upstream")
	}
}

func (e *entry) ttl() time.Duration {
	if e.TagTTL > 0 {
		return e.TagTTL
	}
	return DefaultTagTTL
}

// fetchManifest gets ref from the upstream and caches it. For a cached tag
// it asks with a HEAD first, and fetches only when the tag moved; when the
// upstream fails, the cached tag is served.
func (s *Service) fetchManifest(ctx context.Context, t Target, ref string, cached *metadata.Manifest) (*metadata.Manifest, error) {
	up := t.entry.client
	tag, fetch := "", ref
	if !reference.IsDigest(ref) {
		tag = ref
	}
	if cached != nil {
		s.totals.TagChecks.Add(1)
		desc, err := up.HeadManifest(ctx, t.Upstream, ref)
		switch {
		case err == nil && desc.Digest == cached.Digest:
			s.tagChecked(ctx, t, ref)
			return cached, nil
		case err != nil:
			s.totals.Stale.Add(1)
			s.log.Warn("mirror upstream failed: serving the cached tag, stale", "mirror", t.Mirror, "repository", t.Local, "tag", ref, "digest", cached.Digest, "err", err)
			return cached, nil
		}
		if desc.Digest != "" {
			fetch = string(desc.Digest) // moved: fetch what it points to now
		}
	}
	s.totals.ManifestFetches.Add(1)
	desc, payload, err := up.GetManifest(ctx, t.Upstream, fetch)
	if err != nil {
		if cached != nil {
			s.totals.Stale.Add(1)
			s.log.Warn("mirror upstream failed: serving the cached tag, stale", "mirror", t.Mirror, "repository", t.Local, "digest", cached.Digest, "err", err)
			return cached, nil
		}
		return nil, s.upstreamError(t, err, errcode.ManifestUnknown)
	}
	m, err := s.reg.CacheManifest(ctx, t.Local, tag, desc.Digest, desc.MediaType, payload)
	if err != nil {
		var e *errcode.Error
		if errors.As(err, &e) && e.Code == errcode.Denied { // over quota: serve it without keeping it
			s.log.Warn("mirror cannot keep a manifest", "mirror", t.Mirror, "repository", t.Local, "err", err)
			return &metadata.Manifest{Repository: t.Local, Digest: desc.Digest, MediaType: desc.MediaType, Payload: payload}, nil
		}
		return nil, err
	}
	if tag != "" {
		s.tagChecked(ctx, t, tag)
	}
	return m, nil
}

func (s *Service) tagChecked(ctx context.Context, t Target, tag string) {
	if err := s.store.SetTagChecked(ctx, t.Local, tag, time.Now()); err != nil {
		s.log.Error("recording a mirror tag check failed", "repository", t.Local, "tag", tag, "err", err)
	}
}

// upstreamError maps an upstream failure to the registry's errors: what
// the upstream does not have is unknown here too (with code unknown);
// anything else is a bad gateway.
func (s *Service) upstreamError(t Target, err error, unknown errcode.Code) error {
	if errors.Is(err, upstream.ErrNotFound) {
		return errcode.New(unknown, "not found at the upstream of mirror %s", t.Mirror)
	}
	s.log.Warn("mirror upstream failed", "mirror", t.Mirror, "repository", t.Local, "err", err)
	return errcode.WithStatus(errcode.Internal, 502, "the upstream of mirror %s failed: %v", t.Mirror, err)
}
