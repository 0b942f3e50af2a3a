package registry

import (
	"context"
	"fmt"
	"path"
	"strings"

	"github.com/berth-registry/berth/internal/errcode"
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
	rules, err := s.meta.ImmutableRules(ctx)
	if err != nil {
		return nil, internal(err, "immutable rules")
	}
	var out []string
	for _, t := range tags {
		for _, r := range rules {
			if ok, _ := path.Match(r.Tags, t); ok && reference.Covers(r.Repositories, repo) {
				out = append(out, t)
				break
			}
		}
	}
	return out, nil
}

func immutableError(tag, repo string) error {
	return errcode.New(errcode.Denied, "tag %s of %s is immutable: it cannot be moved or deleted (an admin can)", tag, repo)
}

// checkDelete refuses deletions that would remove immutable tags.
func (s *Service) checkDelete(ctx context.Context, repo, ref string) error {
	if isAdmin(ctx) {
		return nil
	}
	tags := []string{ref}
	if reference.IsDigest(ref) {
		var err error
		if tags, err = s.meta.TagsOf(ctx, repo, reference.Digest(ref)); err != nil {
			return internal(err, "tag lookup")
		}
	}
	protected, err := s.ImmutableTags(ctx, repo, tags)
	if err != nil {
		return err
	}
	if len(protected) > 0 {
		return immutableError(protected[0], repo)
	}
	return nil
}

// namespaceOf is the first component of a repository name.
func namespaceOf(repo string) string {
	ns, _, _ := strings.Cut(repo, "/")
	return ns
}

// checkQuota refuses a blob of size bytes that would take repo's namespace
// over its quota; a blob the namespace already holds costs nothing.
func (s *Service) checkQuota(ctx context.Context, repo string, d reference.Digest, size int64) error {
	ns := namespaceOf(repo)
	quota, err := s.meta.Quota(ctx, ns)
	if err != nil {
		return internal(err, "quota lookup")
	}
	if quota <= 0 {
		return nil
	}
	used, holds, err := s.meta.NamespaceUsage(ctx, ns, string(d))
	if err != nil {
		return internal(err, "quota lookup")
	}
	if holds || used+size <= quota {
		return nil
	}
	return errcode.New(errcode.Denied, "quota of namespace %s exceeded: %s used + %s for this blob > quota of %s",
		ns, humanBytes(used), humanBytes(size), humanBytes(quota))
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
