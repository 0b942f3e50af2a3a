package auth

import (
	"context"
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/berth-registry/berth/internal/metadata"
	"github.com/berth-registry/berth/internal/reference"
	"github.com/berth-registry/berth/internal/retention"
)

// SetQuota sets a namespace's quota in bytes; 0 removes it (admins only).
func (s *Service) SetQuota(ctx context.Context, actor *Principal, ns string, bytes int64) error {
	if err := requireAdmin(actor); err != nil {
		return err
	}
	if bytes < 0 {
		return fmt.Errorf("%w: a quota is a number of bytes, 0 for none", ErrInvalid)
	}
	if _, err := s.acc.GetNamespace(ctx, ns); err != nil {
		return storeErr(err, "namespace "+ns)
	}
	if err := s.acc.SetQuota(ctx, ns, bytes); err != nil {
		return err
	}
	s.auditChange(actor, "quota set", "namespace", ns, "bytes", bytes)
	return nil
}

// Usage returns a namespace's stored bytes (each blob counted once, plus
// its manifests) and its quota (admins and owners).
func (s *Service) Usage(ctx context.Context, actor *Principal, ns string) (used, quota int64, err error) {
	if err := s.requireOwner(ctx, actor, ns); err != nil {
		return 0, 0, err
	}
	if used, _, err = s.acc.NamespaceUsage(ctx, ns, ""); err != nil {
		return 0, 0, err
	}
	quota, err = s.acc.Quota(ctx, ns)
	return used, quota, err
}

// AddImmutableRule protects the tags matching tags (a glob such as v* or
// *) in the repositories matching repos ("team/*" or "team/app"): admins,
// or owners of that namespace.
func (s *Service) AddImmutableRule(ctx context.Context, actor *Principal, repos, tags string) (int64, error) {
	if err := reference.ValidatePattern(repos); err != nil {
		return 0, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	base := strings.TrimSuffix(repos, "/*")
	if _, err := path.Match(tags, "x"); err != nil || tags == "" {
		return 0, fmt.Errorf("%w: tags %q is not a glob (e.g. v* or *)", ErrInvalid, tags)
	}
	if err := s.requireOwner(ctx, actor, Namespace(base)); err != nil {
		return 0, err
	}
	id, err := s.acc.AddImmutableRule(ctx, metadata.ImmutableRule{Repositories: repos, Tags: tags})
	if err != nil {
		return 0, err
	}
	s.auditChange(actor, "immutable rule added", "id", id, "repositories", repos, "tags", tags)
	return id, nil
}

// ImmutableRules lists the rules.
func (s *Service) ImmutableRules(ctx context.Context, actor *Principal) ([]metadata.ImmutableRule, error) {
	if actor.Kind != UserKind {
		return nil, fmt.Errorf("%w: users only", ErrForbidden)
	}
	return s.acc.ImmutableRules(ctx)
}

// DeleteImmutableRule removes a rule (admins only).
func (s *Service) DeleteImmutableRule(ctx context.Context, actor *Principal, id int64) error {
	if err := requireAdmin(actor); err != nil {
		return err
	}
	if err := storeErr(s.acc.DeleteImmutableRule(ctx, id), fmt.Sprintf("rule %d", id)); err != nil {
		return err
	}
	s.auditChange(actor, "immutable rule removed", "id", id)
	return nil
}

// CheckRetentionPolicy validates a retention policy and checks that actor
// may set it: admins, or owners of its namespace.
func (s *Service) CheckRetentionPolicy(ctx context.Context, actor *Principal, p metadata.RetentionPolicy) error {
	if err := retention.Validate(p); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return s.requireOwner(ctx, actor, Namespace(strings.TrimSuffix(p.Repositories, "/*")))
}

// AddRetentionPolicy stores a retention policy (admins, or owners of its
// namespace); one per repository pattern.
func (s *Service) AddRetentionPolicy(ctx context.Context, actor *Principal, p metadata.RetentionPolicy) (int64, error) {
	if err := s.CheckRetentionPolicy(ctx, actor, p); err != nil {
		return 0, err
	}
	id, err := s.acc.AddRetentionPolicy(ctx, p)
	if err != nil {
		return 0, storeErr(err, "retention policy for "+p.Repositories)
	}
	s.auditChange(actor, "retention policy added", "id", id, "repositories", p.Repositories, "keep_last", p.KeepLast,
		"keep_tags", strings.Join(p.KeepTags, ","), "untagged_after", p.UntaggedAfter.String(), "unpulled_for", p.UnpulledFor.String())
	return id, nil
}

// RetentionPolicies lists the retention policies (users).
func (s *Service) RetentionPolicies(ctx context.Context, actor *Principal) ([]metadata.RetentionPolicy, error) {
	if actor.Kind != UserKind {
		return nil, fmt.Errorf("%w: users only", ErrForbidden)
	}
	return s.acc.RetentionPolicies(ctx)
}

// DeleteRetentionPolicy removes a retention policy (admins, or owners of
// its namespace).
func (s *Service) DeleteRetentionPolicy(ctx context.Context, actor *Principal, id int64) error {
	ps, err := s.acc.RetentionPolicies(ctx)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(ps, func(p metadata.RetentionPolicy) bool { return p.ID == id })
	if i < 0 {
		return fmt.Errorf("%w: retention policy %d", ErrNotFound, id)
	}
	if err := s.requireOwner(ctx, actor, Namespace(strings.TrimSuffix(ps[i].Repositories, "/*"))); err != nil {
		return err
	}
	if err := storeErr(s.acc.DeleteRetentionPolicy(ctx, id), fmt.Sprintf("retention policy %d", id)); err != nil {
		return err
	}
	s.auditChange(actor, "retention policy removed", "id", id, "repositories", ps[i].Repositories)
	return nil
}
