package retention

import (
	"context"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/metadata"
)

// recordingSource serves a fixed registry and records whose tags were read.
type recordingSource struct {
	policies []metadata.RetentionPolicy
	repos    []string
	read     []string
	listed   int
}

func (s *recordingSource) RetentionPolicies(context.Context) ([]metadata.RetentionPolicy, error) {
	return s.policies, nil
}

func (s *recordingSource) Repositories(_ context.Context, last string, n int) ([]string, error) {
	var out []string
	for _, r := range s.repos {
		if r > last && len(out) < n {
			out = append(out, r)
		}
	}
	s.listed += len(out)
	return out, nil
}

func (s *recordingSource) TagInfos(_ context.Context, repo string) ([]metadata.TagInfo, error) {
	s.read = append(s.read, repo)
	return []metadata.TagInfo{{Name: "old", Pushed: time.Now().Add(-48 * time.Hour)}, {Name: "new", Pushed: time.Now().Add(-24 * time.Hour)}}, nil
}

// Hardening: trying a candidate policy (a dry run any namespace owner may
// ask for) reads only the repositories the candidate covers, however many
// others the stored policies cover.
func TestCandidatePlanReadsOnlyItsRepositories(t *testing.T) {
	src := &recordingSource{policies: []metadata.RetentionPolicy{{ID: 1, Repositories: "big/*", KeepLast: 1}}}
	for i := range 3000 {
		src.repos = append(src.repos, "big/r"+string(rune('a'+i%26))+string(rune('a'+i/26%26))+string(rune('a'+i/676)))
	}
	src.repos = append(src.repos, "alice/app", "alice/tool", "alicex/app", "zeta/app")
	sort.Strings(src.repos)
	src.repos = slices.Compact(src.repos)
	pl := NewPlanner(src, func(context.Context, string, []string) ([]string, error) { return nil, nil })
	for _, c := range []struct {
		pattern string
		want    []string
	}{
		{"alice/*", []string{"alice/app", "alice/tool"}},
		{"alice/tool", []string{"alice/tool"}},
	} {
		src.read, src.listed = nil, 0
		d, err := pl.Plan(context.Background(), time.Now(), time.Hour, &metadata.RetentionPolicy{Repositories: c.pattern, KeepLast: 1})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(src.read, c.want) {
			t.Errorf("candidate %s read the tags of %v, want %v", c.pattern, src.read, c.want)
		}
		if src.listed > 1000 { // one page of names, not the registry
			t.Errorf("candidate %s listed %d repository names", c.pattern, src.listed)
		}
		for _, del := range d.DeleteTags {
			if !slices.Contains(c.want, del.Repository) {
				t.Errorf("candidate %s decided on %s", c.pattern, del.Repository)
			}
		}
	}
}
