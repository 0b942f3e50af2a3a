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

// errNotStored says that the store does not hold a blob (CachedBlob).
var errNotStored = errors.New("blob not stored")

// KeepBlob links blob d of size bytes into repo, within the namespace's
// quota, once put has stored it (or checked that the store holds it):
// put runs under the digest lock, so that garbage collection cannot delete
// the blob between its storing and its link.
func (s *Service) KeepBlob(ctx context.Context, repo string, d reference.Digest, size int64, put func(ctx context.Context, store blobstore.Store) error) error {
	if err := s.checkQuota(ctx, repo, d, size); err != nil {
		return err
	}
	unlock, err := s.locks.Lock(ctx, string(d))
	if err != nil {
		return internal(err, "blob link")
	}
	defer unlock()
	if err := put(ctx, s.blobs); err != nil {
		return err
	}
	if err := s.meta.LinkBlob(ctx, repo, d, size, ""); err != nil {
		return internal(err, "blob link")
	}
	return nil
}

// CachedBlob links into repo a blob the store holds already (stored by a
// mirror's download, or by another repository), after the caller checked
// that the upstream has it. It returns false when the store does not have
// it at that size (collected meanwhile, or never stored).
func (s *Service) CachedBlob(ctx context.Context, repo string, d reference.Digest, size int64) (bool, error) {
	err := s.KeepBlob(ctx, repo, d, size, func(ctx context.Context, store blobstore.Store) error {
		switch stored, err := store.Stat(ctx, d); {
		case errors.Is(err, blobstore.ErrNotFound), err == nil && stored != size:
			return errNotStored
		case err != nil:
			return internal(err, "blob stat")
		}
		return nil
	})
	if errors.Is(err, errNotStored) {
		return false, nil
	}
	return err == nil, err
}

// Blobs returns the blob store, for a mirror's downloads.
func (s *Service) Blobs() blobstore.Store { return s.blobs }

// NewUploadID returns a fresh upload id (for uploads the registry does not
// track, such as a mirror's downloads).
func NewUploadID() string { return newID() }
