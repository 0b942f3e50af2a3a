package registry

import (
	"context"
	"errors"
	"io"
	"slices"

	"github.com/berth-registry/berth/internal/errcode"
	"github.com/berth-registry/berth/internal/manifest"
	"github.com/berth-registry/berth/internal/metadata"
	"github.com/berth-registry/berth/internal/reference"
)

// MaxTagParams bounds the tag parameters of one manifest push.
const MaxTagParams = 100

var errManifestUnknown = errcode.New(errcode.ManifestUnknown, "manifest unknown to registry")

// checkRef validates a manifest reference: a tag or a digest.
func checkRef(ref string) error {
	if reference.IsDigest(ref) {
		if _, err := reference.ParseDigest(ref); err != nil {
			return errcode.New(errcode.DigestInvalid, "%v", err)
		}
		return nil
	}
	if err := reference.ValidateTag(ref); err != nil {
		return errcode.New(errcode.ManifestInvalid, "%v", err)
	}
	return nil
}

// GetManifest returns a manifest by tag or digest.
func (s *Service) GetManifest(ctx context.Context, repo, ref string) (*metadata.Manifest, error) {
	if err := checkRef(ref); err != nil {
		return nil, err
	}
	m, err := s.meta.GetManifest(ctx, repo, ref)
	if errors.Is(err, metadata.ErrNotFound) {
		return nil, errManifestUnknown
	}
	if err != nil {
		return nil, internal(err, "manifest lookup")
	}
	return m, nil
}

// PutResult is what a client learns from a manifest push.
type PutResult struct {
	Digest  reference.Digest
	Subject reference.Digest
	// Tags are the tags the push set: the reference when it is a tag, and
	// the tag parameters.
	Tags []string
}

// PutManifest checks and stores a manifest under ref (a tag or its digest)
// and the extra tags. The manifest's blobs and child manifests must already
// be in the repository.
func (s *Service) PutManifest(ctx context.Context, repo, ref, contentType string, body io.Reader, extraTags []string) (*PutResult, error) {
	if err := checkRef(ref); err != nil {
		return nil, err
	}
	if len(extraTags) > MaxTagParams {
		return nil, errcode.New(errcode.ManifestInvalid, "at most %d tag parameters per push", MaxTagParams)
	}
	extraTags = slices.Compact(slices.Sorted(slices.Values(extraTags)))
	for _, t := range extraTags {
		if err := reference.ValidateTag(t); err != nil {
			return nil, errcode.New(errcode.ManifestInvalid, "%v", err)
		}
	}
	payload, err := io.ReadAll(io.LimitReader(body, s.opts.MaxManifestSize+1))
	if err != nil {
		return nil, errcode.New(errcode.ManifestInvalid, "reading manifest failed").WithDetail(err.Error())
	}
	if int64(len(payload)) > s.opts.MaxManifestSize {
		return nil, errcode.WithStatus(errcode.SizeInvalid, 413, "manifest larger than %d bytes", s.opts.MaxManifestSize)
	}
	var d reference.Digest
	tags := extraTags
	if reference.IsDigest(ref) {
		want := reference.Digest(ref)
		d = want.Algorithm().FromBytes(payload)
		if d != want {
			return nil, errcode.New(errcode.DigestInvalid, "manifest digest %s does not match reference %s", d, want)
		}
	} else {
		d = reference.SHA256.FromBytes(payload)
		tags = slices.Compact(slices.Sorted(slices.Values(append([]string{ref}, extraTags...))))
	}
	rec, err := manifestRecord(repo, d, contentType, payload)
	if err != nil {
		return nil, err
	}
	rec.Tags = tags
	if err := s.checkManifestQuota(ctx, repo, d, int64(len(payload))); err != nil {
		return nil, err
	}
	if !isAdmin(ctx) {
		if rec.Protect, err = s.ImmutableTags(ctx, repo, tags); err != nil {
			return nil, err
		}
	}
	evs := pushEvents(ctx, rec)
	err = s.meta.PutManifest(metadata.WithEvents(ctx, evs...), rec)
	var missing *metadata.MissingReferenceError
	switch {
	case errors.Is(err, metadata.ErrTagImmutable):
		return nil, errcode.New(errcode.Denied, "%v: an immutable tag cannot be moved to another manifest (an admin can)", err)
	case errors.As(err, &missing):
		return nil, errcode.New(errcode.ManifestBlobUnknown, "%v", err).WithDetail(map[string]string{"digest": string(missing.Digest)})
	case errors.Is(err, metadata.ErrSizeMismatch):
		return nil, errcode.New(errcode.ManifestInvalid, "%v", err)
	case err != nil:
		return nil, internal(err, "manifest store")
	}
	s.committed(ctx, evs)
	return &PutResult{Digest: d, Subject: rec.Subject, Tags: tags}, nil
}

// manifestRecord parses a manifest into what the metadata store records of
// it: its fields and the blobs and child manifests it references.
func manifestRecord(repo string, d reference.Digest, contentType string, payload []byte) (*metadata.PutManifest, error) {
	m, err := manifest.Parse(contentType, payload)
	if err != nil {
		return nil, errcode.New(errcode.ManifestInvalid, "%v", err)
	}
	rec := &metadata.PutManifest{Manifest: metadata.Manifest{
		Repository:   repo,
		Digest:       d,
		MediaType:    m.MediaType,
		ArtifactType: m.ArtifactType,
		Annotations:  m.Annotations,
		Payload:      payload,
	}}
	if m.Subject != nil {
		rec.Subject = reference.Digest(m.Subject.Digest)
	}
	for _, b := range m.Blobs {
		rec.Blobs = append(rec.Blobs, metadata.Ref{Digest: reference.Digest(b.Digest), Size: b.Size})
	}
	for _, c := range m.Children {
		rec.Children = append(rec.Children, metadata.Ref{Digest: reference.Digest(c.Digest), Size: c.Size})
	}
	return rec, nil
}

// DeleteManifest deletes a tag (when ref is a tag) or a manifest and its
// tags (when ref is a digest). Immutable tags, and manifests they reach
// (directly or as children of an index), are kept, except for admins.
func (s *Service) DeleteManifest(ctx context.Context, repo, ref string) error {
	if err := checkRef(ref); err != nil {
		return err
	}
	var err error
	ev := deleteEvent(ctx, repo, ref)
	wctx := metadata.WithEvents(ctx, ev)
	if reference.IsDigest(ref) {
		var guard metadata.Guard
		if guard, err = s.deleteGuard(ctx, repo, "manifest "+ref); err != nil {
			return err
		}
		err = s.meta.DeleteManifest(wctx, repo, reference.Digest(ref), guard)
	} else {
		if err := s.checkDeleteTag(ctx, repo, ref); err != nil {
			return err
		}
		err = s.meta.DeleteTag(wctx, repo, ref)
	}
	var denied *errcode.Error
	switch {
	case errors.Is(err, metadata.ErrNotFound):
		return errManifestUnknown
	case errors.As(err, &denied):
		return err
	case err != nil:
		return internal(err, "manifest delete")
	}
	s.committed(ctx, []metadata.Event{ev})
	return nil
}

// Tags lists a repository's tags.
func (s *Service) Tags(ctx context.Context, repo, last string, n int) ([]string, error) {
	tags, ok, err := s.meta.Tags(ctx, repo, last, n)
	if err != nil {
		return nil, internal(err, "tag list")
	}
	if !ok {
		return nil, errcode.New(errcode.NameUnknown, "repository name not known to registry").WithDetail(map[string]string{"name": repo})
	}
	return tags, nil
}

// Catalog lists repositories.
func (s *Service) Catalog(ctx context.Context, last string, n int) ([]string, error) {
	repos, err := s.meta.Repositories(ctx, last, n)
	if err != nil {
		return nil, internal(err, "catalog")
	}
	return repos, nil
}

// CatalogWhere lists up to n repositories after last that keep accepts
// (those a caller may pull, or whose names match a search), reading the
// catalog batch names at a time until n are found or it ends.
func (s *Service) CatalogWhere(ctx context.Context, last string, n, batch int, keep func(repo string) (bool, error)) ([]string, error) {
	var out []string
	for cursor := last; n > 0 && len(out) < n; {
		names, err := s.Catalog(ctx, cursor, batch)
		if err != nil {
			return nil, err
		}
		for _, repo := range names {
			ok, err := keep(repo)
			if err != nil {
				return nil, err
			}
			if ok {
				if out = append(out, repo); len(out) == n {
					break
				}
			}
		}
		if len(names) < batch {
			break
		}
		cursor = names[len(names)-1]
	}
	return out, nil
}

// Referrers lists the manifests whose subject is d.
func (s *Service) Referrers(ctx context.Context, repo string, d reference.Digest, artifactType string) ([]metadata.Descriptor, error) {
	refs, err := s.meta.Referrers(ctx, repo, d, artifactType)
	if err != nil {
		return nil, internal(err, "referrers")
	}
	return refs, nil
}
