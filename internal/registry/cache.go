package registry

import (
	"context"
	"errors"

	"github.com/berth-registry/berth/internal/blobstore"
	"github.com/berth-registry/berth/internal/errcode"
	"github.com/berth-registry/berth/internal/metadata"
	"github.com/berth-registry/berth/internal/reference"
)

// The write path of a mirror (package mirror): what it fetched from its
// upstream, already verified against its digest, is recorded here with
// the same quota rules as a push, but no push events and no immutable-tag
// checks (a mirror follows its upstream).

// CacheManifest records a manifest fetched from a mirror's upstream under
// repo, tagged tag ("" for none). Its blobs and child manifests need not
// be there yet: they are fetched on their first pull.
func (s *Service) CacheManifest(ctx context.Context, repo, tag string, d reference.Digest, mediaType string, payload []byte) (*metadata.Manifest, error) {
	if int64(len(payload)) > s.opts.MaxManifestSize {
		return nil, errcode.WithStatus(errcode.SizeInvalid, 413, "upstream manifest larger than %d bytes", s.opts.MaxManifestSize)
	}
	rec, err := manifestRecord(repo, d, mediaType, payload)
	if err != nil {
		return nil, err
	}
	rec.Lazy = true
	if tag != "" {
		rec.Tags = []string{tag}
	}
	if err := s.checkManifestQuota(ctx, repo, d, int64(len(payload))); err != nil {
		return nil, err
	}
	if err := s.meta.PutManifest(ctx, rec); err != nil {
		if errors.Is(err, metadata.ErrSizeMismatch) {
			return nil, errcode.New(errcode.ManifestInvalid, "upstream manifest: %v", err)
		}
		return nil, internal(err, "manifest store")
	}
	return &rec.Manifest, nil
}

// CachedBlob links into repo a blob the store holds already (stored by a
// mirror's download, or by another repository), after the caller checked
// that the upstream has it. It returns false when the store does not have
// it (collected meanwhile, or never stored).
func (s *Service) CachedBlob(ctx context.Context, repo string, d reference.Digest, size int64) (bool, error) {
	if err := s.checkQuota(ctx, repo, d, size); err != nil {
		return false, err
	}
	unlock, err := s.locks.Lock(ctx, string(d))
	if err != nil {
		return false, internal(err, "blob link")
	}
	defer unlock()
	switch stored, err := s.blobs.Stat(ctx, d); {
	case errors.Is(err, blobstore.ErrNotFound):
		return false, nil
	case err != nil:
		return false, internal(err, "blob stat")
	case stored != size:
		return false, nil
	}
	if err := s.meta.LinkBlob(ctx, repo, d, size, ""); err != nil {
		return false, internal(err, "blob link")
	}
	return true, nil
}

// CheckQuota refuses a blob of size bytes that would take repo's namespace
// over its quota (nothing when the namespace holds d already).
func (s *Service) CheckQuota(ctx context.Context, repo string, d reference.Digest, size int64) error {
	return s.checkQuota(ctx, repo, d, size)
}

// Blobs returns the blob store, for a mirror's downloads.
func (s *Service) Blobs() blobstore.Store { return s.blobs }

// Lock takes the digest lock of d, which keeps the garbage collector from
// deleting it until unlock.
func (s *Service) Lock(ctx context.Context, d reference.Digest) (unlock func(), err error) {
	return s.locks.Lock(ctx, string(d))
}

// LinkStored links a blob just stored under d into repo; call it holding
// the digest lock.
func (s *Service) LinkStored(ctx context.Context, repo string, d reference.Digest, size int64) error {
	if err := s.meta.LinkBlob(ctx, repo, d, size, ""); err != nil {
		return internal(err, "blob link")
	}
	return nil
}
