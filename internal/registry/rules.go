package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/berth-registry/berth/internal/errcode"
	"github.com/berth-registry/berth/internal/metadata"
	"github.com/berth-registry/berth/internal/reference"
)

type adminKey struct{}

// AsAdmin marks a request as made by an admin, who may move and delete
// immutable tags.
func AsAdmin(ctx context.Context) context.Context { return context.WithValue(ctx, adminKey{}, true) }

func isAdmin(ctx context.Context) bool { v, _ := ctx.Value(adminKey{}).(bool); return v }

// ImmutableTags returns those of tags that an immutable-tag rule protects
// in repo.
func (s *Service) ImmutableTags(ctx context.Context, repo string, tags []string) ([]string, error) {
	if len(tags) == 0 {
		return nil, nil
	}
	immutable, err := s.immutableIn(ctx, repo)
	if err != nil || immutable == nil {
		return nil, err
	}
	var out []string
	for _, t := range tags {
		if immutable(t) {
			out = append(out, t)
		}
	}
	return out, nil
}

// immutableIn returns whether a tag of repo is immutable, or nil when no
// rule covers repo.
func (s *Service) immutableIn(ctx context.Context, repo string) (func(tag string) bool, error) {
	rules, err := s.meta.ImmutableRules(ctx)
	if err != nil {
		return nil, internal(err, "immutable rules")
	}
	var globs []string
	for _, r := range rules {
		if reference.Covers(r.Repositories, repo) {
			globs = append(globs, r.Tags)
		}
	}
	if len(globs) == 0 {
		return nil, nil
	}
	return func(tag string) bool {
		for _, g := range globs {
			if ok, _ := path.Match(g, tag); ok {
				return true
			}
		}
		return false
	}, nil
}

func immutableError(tag, repo string) error {
	return errcode.New(errcode.Denied, "tag %s of %s is immutable: it cannot be moved or deleted (an admin can)", tag, repo)
}

// checkDeleteTag refuses to delete an immutable tag.
func (s *Service) checkDeleteTag(ctx context.Context, repo, tag string) error {
	if isAdmin(ctx) {
		return nil
	}
	protected, err := s.ImmutableTags(ctx, repo, []string{tag})
	if err != nil {
		return err
	}
	if len(protected) > 0 {
		return immutableError(protected[0], repo)
	}
	return nil
}

// deleteGuard returns the guard of a deletion of what (a blob or manifest
// of repo): it refuses when an immutable tag reaches the content. It is nil
// for admins and when no rule covers repo, so that such deletions cost no
// reachability query.
func (s *Service) deleteGuard(ctx context.Context, repo, what string) (metadata.Guard, error) {
	if isAdmin(ctx) {
		return nil, nil
	}
	immutable, err := s.immutableIn(ctx, repo)
	if err != nil || immutable == nil {
		return nil, err
	}
	return func(tags []string) error {
		for _, t := range tags {
			if immutable(t) {
				return errcode.New(errcode.Denied, "cannot delete %s: it is part of immutable tag %s of %s (an admin can)", what, t, repo)
			}
		}
		return nil
	}, nil
}

// namespaceOf is the first component of a repository name.
func namespaceOf(repo string) string {
	ns, _, _ := strings.Cut(repo, "/")
	return ns
}

// checkQuota refuses a blob of size bytes that would take repo's namespace
// over its quota; a blob the namespace already holds costs nothing.
func (s *Service) checkQuota(ctx context.Context, repo string, d reference.Digest, size int64) error {
	_, quota, used, holds, err := s.usage(ctx, repo, string(d))
	if err != nil || quota <= 0 || holds || used+size <= quota {
		return err
	}
	return s.overQuota(ctx, repo, used, humanBytes(size)+" for this blob", quota)
}

// usage returns repo's namespace, its quota (0: none) and, when it has
// one, its usage and whether it holds blob d ("" for none).
func (s *Service) usage(ctx context.Context, repo, d string) (ns string, quota, used int64, holds bool, err error) {
	ns = namespaceOf(repo)
	if quota, err = s.meta.Quota(ctx, ns); err != nil || quota <= 0 {
		return ns, 0, 0, false, internalIf(err, "quota lookup")
	}
	if used, holds, err = s.meta.NamespaceUsage(ctx, ns, d); err != nil {
		return ns, 0, 0, false, internal(err, "quota lookup")
	}
	return ns, quota, used, holds, nil
}

// overQuota refuses what would take repo's namespace over its quota, and
// records the refusal's event.
func (s *Service) overQuota(ctx context.Context, repo string, used int64, what string, quota int64) error {
	s.quotaExceeded(ctx, repo, used, quota, what)
	return quotaError(namespaceOf(repo), used, what, quota)
}

func quotaError(ns string, used int64, what string, quota int64) error {
	return errcode.New(errcode.Denied, "quota of namespace %s exceeded: %s used + %s > quota of %s",
		ns, humanBytes(used), what, humanBytes(quota))
}

// checkManifestQuota refuses a manifest of size bytes that would take
// repo's namespace over its quota; a manifest repo already has costs
// nothing (looked up only when the quota would be exceeded).
func (s *Service) checkManifestQuota(ctx context.Context, repo string, d reference.Digest, size int64) error {
	_, quota, used, _, err := s.usage(ctx, repo, "")
	if err != nil || quota <= 0 || used+size <= quota {
		return err
	}
	switch _, err := s.meta.GetManifest(ctx, repo, string(d)); {
	case err == nil:
		return nil
	case !errors.Is(err, metadata.ErrNotFound):
		return internal(err, "manifest lookup")
	}
	return s.overQuota(ctx, repo, used, humanBytes(size)+" for this manifest", quota)
}

// uploadRoom returns how many bytes an upload of repo may hold without
// taking its namespace over its quota (the namespace's usage plus the
// upload), the usage and the quota; a quota of 0 means no limit (none is
// set). When the upload is of blob d (when known, "" otherwise) and the
// namespace holds it already, it costs nothing, and may hold that blob's
// size: no more.
func (s *Service) uploadRoom(ctx context.Context, repo string, d reference.Digest) (room, used, quota int64, err error) {
	_, quota, used, holds, err := s.usage(ctx, repo, string(d))
	if err != nil || quota <= 0 {
		return 0, 0, 0, err
	}
	if holds {
		// The blob costs nothing, but the upload may not hold more than
		// the blob: a larger body under its digest is no upload of it.
		switch size, err := s.meta.BlobSize(ctx, d); {
		case err == nil:
			return size, used, quota, nil
		case !errors.Is(err, metadata.ErrNotFound): // else collected meanwhile: it costs again
			return 0, 0, 0, internal(err, "blob size")
		}
	}
	return quota - used, used, quota, nil
}

// internalIf is internal for a non-nil error.
func internalIf(err error, what string) error {
	if err == nil {
		return nil
	}
	return internal(err, what)
}

// quotaReader passes at most left bytes of a streamed chunk and fails with
// err on the next, so that the store discards the chunk.
type quotaReader struct {
	r    io.Reader
	left int64
	err  error
}

func (q *quotaReader) Read(p []byte) (int, error) {
	if limit := max(q.left+1, 1); int64(len(p)) > limit {
		p = p[:limit]
	}
	n, err := q.r.Read(p)
	q.left -= int64(n)
	if q.left < 0 {
		return n, q.err
	}
	return n, err
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
