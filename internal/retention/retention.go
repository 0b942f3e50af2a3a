// Package retention decides what the retention policies delete: tags beyond
// the newest N or not pulled for a while (except those a pattern or an
// immutable rule keeps), and how long untagged manifests stay. It only
// decides; garbage collection applies the decisions in its transaction, so
// a dry run shows exactly what a real run would remove.
package retention

import (
	"context"
	"fmt"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/berth-registry/berth/internal/metadata"
	"github.com/berth-registry/berth/internal/reference"
)

// Source is what retention reads.
type Source interface {
	RetentionPolicies(ctx context.Context) ([]metadata.RetentionPolicy, error)
	Repositories(ctx context.Context, last string, n int) ([]string, error)
	TagInfos(ctx context.Context, repo string) ([]metadata.TagInfo, error)
}

// Immutable returns those of tags that immutable-tag rules protect in repo.
type Immutable func(ctx context.Context, repo string, tags []string) ([]string, error)

// Validate checks a policy before it is stored.
func Validate(p metadata.RetentionPolicy) error {
	if err := reference.ValidatePattern(p.Repositories); err != nil {
		return err
	}
	for _, g := range p.KeepTags {
		if _, err := path.Match(g, "x"); err != nil || g == "" || strings.Contains(g, ",") {
			return fmt.Errorf("keep_tags %q is not a tag glob (e.g. v* or latest)", g)
		}
	}
	switch {
	case p.KeepLast < 0:
		return fmt.Errorf("keep_last %d: want a number of tags, 0 for no limit", p.KeepLast)
	case p.UntaggedAfter < 0 || p.UnpulledFor < 0:
		return fmt.Errorf("durations must not be negative")
	case p.KeepLast == 0 && p.UntaggedAfter == 0 && p.UnpulledFor == 0:
		return fmt.Errorf("the policy deletes nothing: set keep_last, untagged_after or unpulled_for")
	}
	return nil
}

// Governing returns the policy that governs repo, the most specific one
// that covers it (a repository's own beats team/sub/*, which beats team/*),
// or nil.
func Governing(ps []metadata.RetentionPolicy, repo string) *metadata.RetentionPolicy {
	var best *metadata.RetentionPolicy
	for i := range ps {
		p := &ps[i]
		if !reference.Covers(p.Repositories, repo) {
			continue
		}
		if best == nil || specificity(p.Repositories) > specificity(best.Repositories) {
			best = p
		}
	}
	return best
}

func specificity(pattern string) int {
	if prefix, ok := strings.CutSuffix(pattern, "/*"); ok {
		return 2 * len(prefix)
	}
	return 2*len(pattern) + 1
}

// Decision is what the policies decide at one moment.
type Decision struct {
	// DeleteTags are the tags to delete, with the reason and policy.
	DeleteTags []metadata.TagDeletion
	// UntaggedSince keeps, per repository, untagged manifests created
	// since then (only where a policy keeps them longer than the grace).
	UntaggedSince map[string]time.Time
}

// Planner decides with the stored policies.
type Planner struct {
	src       Source
	immutable Immutable
	// grace of the run being planned: tags pushed within it are kept.
	grace time.Duration
}

// NewPlanner returns a planner reading src and honoring immutable rules.
func NewPlanner(src Source, immutable Immutable) *Planner {
	return &Planner{src: src, immutable: immutable}
}

// Plan decides at now, with the stored policies and, when candidate is set,
// that policy in place of the stored one for its pattern (to show what it
// would do before it is saved), then only for the repositories candidate
// covers. grace is garbage collection's grace period.
func (pl *Planner) Plan(ctx context.Context, now time.Time, grace time.Duration, candidate *metadata.RetentionPolicy) (*Decision, error) {
	pl.grace = grace
	ps, err := pl.src.RetentionPolicies(ctx)
	if err != nil {
		return nil, fmt.Errorf("retention: %w", err)
	}
	if candidate != nil {
		ps = withCandidate(ps, *candidate)
	}
	d := &Decision{UntaggedSince: map[string]time.Time{}}
	if len(ps) == 0 {
		return d, nil
	}
	last, stop := "", ""
	if candidate != nil {
		// List from the candidate's pattern on: "team/*" covers the names
		// between "team/" and "team0"; "team/app" only itself.
		prefix, isPrefix := strings.CutSuffix(candidate.Repositories, "/*")
		if isPrefix {
			last, stop = prefix+"/", prefix+"0"
		} else {
			last, stop = candidate.Repositories[:len(candidate.Repositories)-1], candidate.Repositories+"\x00"
		}
	}
	for {
		repos, err := pl.src.Repositories(ctx, last, 1000)
		if err != nil {
			return nil, fmt.Errorf("retention: %w", err)
		}
		for _, repo := range repos {
			if stop != "" && repo >= stop {
				return d, nil
			}
			if candidate != nil && !reference.Covers(candidate.Repositories, repo) {
				continue
			}
			p := Governing(ps, repo)
			if p == nil {
				continue
			}
			if p.UntaggedAfter > grace {
				d.UntaggedSince[repo] = now.Add(-p.UntaggedAfter)
			}
			if p.KeepLast == 0 && p.UnpulledFor == 0 {
				continue
			}
			dels, err := pl.tags(ctx, p, repo, now)
			if err != nil {
				return nil, err
			}
			d.DeleteTags = append(d.DeleteTags, dels...)
		}
		if len(repos) < 1000 {
			return d, nil
		}
		last = repos[len(repos)-1]
	}
}

func withCandidate(ps []metadata.RetentionPolicy, c metadata.RetentionPolicy) []metadata.RetentionPolicy {
	out := make([]metadata.RetentionPolicy, 0, len(ps)+1)
	for _, p := range ps {
		if p.Repositories != c.Repositories {
			out = append(out, p)
		}
	}
	return append(out, c)
}

// tags decides on one repository's tags.
func (pl *Planner) tags(ctx context.Context, p *metadata.RetentionPolicy, repo string, now time.Time) ([]metadata.TagDeletion, error) {
	tags, err := pl.src.TagInfos(ctx, repo)
	if err != nil {
		return nil, fmt.Errorf("retention: %w", err)
	}
	dels := Evaluate(p, repo, tags, now, pl.grace)
	if len(dels) == 0 || pl.immutable == nil {
		return dels, nil
	}
	names := make([]string, len(dels))
	for i, d := range dels {
		names[i] = d.Tag
	}
	protected, err := pl.immutable(ctx, repo, names)
	if err != nil {
		return nil, fmt.Errorf("retention: %w", err)
	}
	if len(protected) == 0 {
		return dels, nil
	}
	keep := map[string]bool{}
	for _, t := range protected {
		keep[t] = true
	}
	out := dels[:0]
	for _, d := range dels {
		if !keep[d.Tag] {
			out = append(out, d)
		}
	}
	return out, nil
}

// Evaluate applies a policy to a repository's tags, listed newest push
// first: a tag a KeepTags glob matches stays; of the others, those beyond
// the newest KeepLast, and those neither pushed nor pulled within
// UnpulledFor, are deleted. A tag pushed within fresh of now always stays
// (it still counts among the newest): a push is never undone by the run
// that follows it, and replicas' clocks may differ a little.
func Evaluate(p *metadata.RetentionPolicy, repo string, tags []metadata.TagInfo, now time.Time, fresh time.Duration) []metadata.TagDeletion {
	var out []metadata.TagDeletion
	rank := 0
	for _, t := range tags {
		if keptByPattern(p.KeepTags, t.Name) {
			continue
		}
		rank++
		reason := ""
		switch {
		case t.Pushed.After(now.Add(-fresh)):
			continue
		case p.KeepLast > 0 && rank > p.KeepLast:
			reason = fmt.Sprintf("beyond the newest %d tags", p.KeepLast)
		case p.UnpulledFor > 0 && lastUse(t).Before(now.Add(-p.UnpulledFor)):
			reason = fmt.Sprintf("not pulled for %s", p.UnpulledFor)
		default:
			continue
		}
		out = append(out, metadata.TagDeletion{Repository: repo, Tag: t.Name, Digest: t.Digest, Pushed: t.Pushed, Reason: reason, PolicyID: p.ID})
	}
	return out
}

func keptByPattern(globs []string, tag string) bool {
	for _, g := range globs {
		if ok, _ := path.Match(g, tag); ok {
			return true
		}
	}
	return false
}

// lastUse is when a tag was last pushed or its manifest pulled.
func lastUse(t metadata.TagInfo) time.Time {
	if t.LastPulled.After(t.Pushed) {
		return t.LastPulled
	}
	return t.Pushed
}

// ParseDuration reads a policy duration: Go's form (90m, 72h) or whole
// days (30d); empty is 0.
func ParseDuration(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.Atoi(n)
		if err != nil || days < 0 || days > 36500 {
			return 0, fmt.Errorf("duration %q: want e.g. 30d, 72h or 90m", s)
		}
		return time.Duration(days) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("duration %q: want e.g. 30d, 72h or 90m", s)
	}
	return d, nil
}

// FormatDuration writes a duration as ParseDuration reads it, in days
// when whole; empty for 0.
func FormatDuration(d time.Duration) string {
	switch {
	case d == 0:
		return ""
	case d%(24*time.Hour) == 0:
		return strconv.FormatInt(int64(d/(24*time.Hour)), 10) + "d"
	}
	return d.String()
}
