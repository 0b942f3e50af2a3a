package retention

import (
	"slices"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/metadata"
)

func TestGoverningPicksTheMostSpecific(t *testing.T) {
	ps := []metadata.RetentionPolicy{{ID: 1, Repositories: "team/*"}, {ID: 2, Repositories: "team/app"}, {ID: 3, Repositories: "team/sub/*"}, {ID: 4, Repositories: "a/*"}}
	for repo, want := range map[string]int64{"team/app": 2, "team/other": 1, "team/sub/x": 3, "team/sub": 1, "team": 0, "teams/app": 0, "a/b": 4} {
		got := Governing(ps, repo)
		if (got == nil && want != 0) || (got != nil && got.ID != want) {
			t.Errorf("Governing(%s) = %+v, want policy %d", repo, got, want)
		}
	}
}

func TestEvaluate(t *testing.T) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	// Newest push first, as TagInfos lists them.
	tags := []metadata.TagInfo{
		{Name: "latest", Pushed: ago(time.Hour)},
		{Name: "dev-3", Pushed: ago(2 * time.Hour)},
		{Name: "v2", Pushed: ago(3 * time.Hour)},
		{Name: "dev-2", Pushed: ago(40 * 24 * time.Hour), LastPulled: ago(time.Hour)},
		{Name: "dev-1", Pushed: ago(50 * 24 * time.Hour)},
		{Name: "v1", Pushed: ago(60 * 24 * time.Hour)},
	}
	for _, c := range []struct {
		name  string
		p     metadata.RetentionPolicy
		fresh time.Duration
		want  []string
	}{
		{"keep last 2", metadata.RetentionPolicy{KeepLast: 2}, 0, []string{"v2", "dev-2", "dev-1", "v1"}},
		{"keep last 2 besides v* and latest", metadata.RetentionPolicy{KeepLast: 2, KeepTags: []string{"v*", "latest"}}, 0, []string{"dev-1"}},
		{"unpulled for 30d", metadata.RetentionPolicy{UnpulledFor: 30 * 24 * time.Hour}, 0, []string{"dev-1", "v1"}},
		{"unpulled for 30d, v* kept", metadata.RetentionPolicy{UnpulledFor: 30 * 24 * time.Hour, KeepTags: []string{"v*"}}, 0, []string{"dev-1"}},
		{"either rule deletes", metadata.RetentionPolicy{KeepLast: 5, UnpulledFor: 30 * 24 * time.Hour}, 0, []string{"dev-1", "v1"}},
		{"keep everything matching *", metadata.RetentionPolicy{KeepLast: 1, KeepTags: []string{"*"}}, 0, nil},
		{"tags pushed within 2.5h stay", metadata.RetentionPolicy{KeepLast: 1}, 150 * time.Minute, []string{"v2", "dev-2", "dev-1", "v1"}}, // dev-3 (2h) stays
	} {
		var got []string
		for _, d := range Evaluate(&c.p, "r", tags, now, c.fresh) {
			got = append(got, d.Tag)
			if d.Reason == "" || d.Repository != "r" {
				t.Errorf("%s: deletion %+v lacks its reason or repository", c.name, d)
			}
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("%s: deletes %v, want %v", c.name, got, c.want)
		}
	}
}

func TestValidate(t *testing.T) {
	good := []metadata.RetentionPolicy{
		{Repositories: "team/*", KeepLast: 10},
		{Repositories: "team/app", KeepTags: []string{"v*", "latest"}, UnpulledFor: time.Hour},
		{Repositories: "team", UntaggedAfter: time.Hour},
	}
	for _, p := range good {
		if err := Validate(p); err != nil {
			t.Errorf("Validate(%+v) = %v", p, err)
		}
	}
	bad := []metadata.RetentionPolicy{
		{Repositories: "Team/*", KeepLast: 1},
		{Repositories: "team/../x", KeepLast: 1},
		{Repositories: "*", KeepLast: 1},
		{Repositories: "team/app", KeepTags: []string{"["}, KeepLast: 1},
		{Repositories: "team/app", KeepTags: []string{""}, KeepLast: 1},
		{Repositories: "team/app", KeepLast: -1},
		{Repositories: "team/app", UnpulledFor: -time.Second},
		{Repositories: "team/app", KeepTags: []string{"v*"}},
	}
	for _, p := range bad {
		if err := Validate(p); err == nil {
			t.Errorf("Validate(%+v) accepted it", p)
		}
	}
}

func TestDurations(t *testing.T) {
	for in, want := range map[string]time.Duration{"": 0, "30d": 30 * 24 * time.Hour, "72h": 72 * time.Hour, "90m": 90 * time.Minute, "2s": 2 * time.Second} {
		got, err := ParseDuration(in)
		if err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
		if back, _ := ParseDuration(FormatDuration(got)); back != got {
			t.Errorf("FormatDuration(%v) = %q does not read back", got, FormatDuration(got))
		}
	}
	for _, in := range []string{"3x", "-1h", "d", "-2d", "1.5d", "99999999d"} {
		if _, err := ParseDuration(in); err == nil {
			t.Errorf("ParseDuration(%q) accepted it", in)
		}
	}
}

func FuzzParseDuration(f *testing.F) {
	for _, s := range []string{"30d", "72h", "1h30m", "", "-1d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDuration(s)
		if err != nil {
			return
		}
		if d < 0 {
			t.Fatalf("ParseDuration(%q) = %v, negative", s, d)
		}
		if back, err := ParseDuration(FormatDuration(d)); err != nil || back != d {
			t.Fatalf("%q -> %v -> %q -> %v, %v", s, d, FormatDuration(d), back, err)
		}
	})
}
