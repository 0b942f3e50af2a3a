package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// setupConc is the concurrency of the untimed setup of the listings.
const setupConc = 16

// nextLink returns the target of a Link header with rel="next", or "".
func nextLink(h string) string {
	for _, part := range strings.Split(h, ",") {
		l, r := strings.Index(part, "<"), strings.Index(part, ">")
		if l < 0 || r < l || !strings.Contains(part[r:], `rel="next"`) {
			continue
		}
		return part[l+1 : r]
	}
	return ""
}

// listAll follows a paginated tags or catalog listing from first and
// returns all entries of field and the number of pages.
func (s *server) listAll(ctx context.Context, first, field string, maxPages int) ([]string, int, error) {
	var all []string
	pages := 0
	for next := first; next != ""; pages++ {
		if pages >= maxPages {
			return nil, pages, fmt.Errorf("%s: listing %s did not end after %d pages", s.name, first, pages)
		}
		r := request{method: http.MethodGet, url: next, want: []int{http.StatusOK}}
		resp, b, err := s.do(ctx, r)
		if err != nil {
			return nil, pages, err
		}
		var page map[string]json.RawMessage
		var items []string
		err = json.Unmarshal(b, &page)
		if err == nil {
			err = json.Unmarshal(page[field], &items)
		}
		if err := s.check(err == nil, resp, b, r, "JSON with a %q list (%v)", field, err); err != nil {
			return nil, pages, err
		}
		all = append(all, items...)
		next = nextLink(resp.Header.Get("Link"))
		// Tag listings name their repository and must not go elsewhere.
		if next != "" && !strings.HasPrefix(next, "/") && !strings.HasPrefix(next, s.base) {
			return nil, pages, s.check(false, resp, b, r, "a Link on this server, got %q", next)
		}
	}
	return all, pages, nil
}

// checkListing verifies that got holds every name of want exactly once
// and reports whether got was in lexical order.
func checkListing(server, what string, got, want []string) (sorted bool, err error) {
	seen := make(map[string]int, len(got))
	for _, g := range got {
		seen[g]++
	}
	for _, w := range want {
		switch seen[w] {
		case 1:
		case 0:
			return false, fmt.Errorf("%s: %s listing lacks %q (%d entries listed)", server, what, w, len(got))
		default:
			return false, fmt.Errorf("%s: %s listing has %q %d times", server, what, w, seen[w])
		}
	}
	return slices.IsSorted(got), nil
}

// timeListing lists repeat times and records the median wall time in ms
// under key, with the page count and order in the target's notes.
func (b *bench) timeListing(ctx context.Context, t *target, key, what, first, field string, want []string) ([]string, error) {
	var ms []float64
	var got []string
	var pages int
	for range b.cfg.listRepeats {
		start := time.Now()
		var err error
		got, pages, err = t.listAll(ctx, first, field, 10*len(want)/b.cfg.pageSize+100)
		if err != nil {
			return nil, err
		}
		ms = append(ms, float64(time.Since(start))/float64(time.Millisecond))
	}
	sorted, err := checkListing(t.name, what, got, want)
	if err != nil {
		return nil, err
	}
	t.set(key, median(ms))
	t.note(key, fmt.Sprintf("%d %s in %d page%s", len(got), what, pages, map[bool]string{true: "s"}[pages != 1]))
	if !sorted {
		t.note(key, "not in lexical order")
	}
	if pages == 1 && len(got) > b.cfg.pageSize {
		t.note(key, fmt.Sprintf("ignored n=%d", b.cfg.pageSize))
	}
	return got, nil
}

// benchTags creates the tags of one repository (untimed apart from the
// informational setup rate) and times their full listing.
func (b *bench) benchTags(ctx context.Context, t *target) error {
	im := *b.hot
	im.repo, im.tag = "bench/tags", "t00000"
	if err := t.pushImage(ctx, &im); err != nil {
		return err
	}
	want := make([]string, b.cfg.tags)
	for i := range want {
		want[i] = fmt.Sprintf("t%05d", i)
	}
	_, elapsed, err := runLoad(ctx, len(want)-1, setupConc, func(ctx context.Context, i int) error {
		return t.putManifest(ctx, im.repo, want[i+1], im.manifest)
	})
	if err != nil {
		return err
	}
	t.set("tags-setup", float64(len(want)-1)/elapsed.Seconds())
	q := url.Values{"n": {strconv.Itoa(b.cfg.pageSize)}}
	_, err = b.timeListing(ctx, t, "tags", "tags", "/v2/"+im.repo+"/tags/list?"+q.Encode(), "tags", want)
	return err
}

// benchCatalog creates the catalog repositories, each with one manifest
// whose blobs are mounted from the first, and times the full catalog
// listing.
func (b *bench) benchCatalog(ctx context.Context, t *target) error {
	want := make([]string, b.cfg.repos)
	for i := range want {
		want[i] = fmt.Sprintf("catalog/r%05d", i)
	}
	elapsed, err := t.makeRepos(ctx, b.hot, want)
	if err != nil {
		return err
	}
	t.set("catalog-setup", float64(len(want)-1)/elapsed.Seconds())
	q := url.Values{"n": {strconv.Itoa(b.cfg.pageSize)}}
	got, err := b.timeListing(ctx, t, "catalog", "repositories", "/v2/_catalog?"+q.Encode(), "repositories", want)
	t.catalogTotal = len(got)
	return err
}

// makeRepos creates the repositories, each with image im tagged latest:
// pushed to the first, then its blobs mounted into each other one and the
// manifest put there, setupConc at a time. It returns the time the other
// repositories took.
func (s *server) makeRepos(ctx context.Context, hot *image, repos []string) (time.Duration, error) {
	im := *hot
	im.repo, im.tag = repos[0], "latest"
	if err := s.pushImage(ctx, &im); err != nil {
		return 0, err
	}
	_, elapsed, err := runLoad(ctx, len(repos)-1, setupConc, func(ctx context.Context, i int) error {
		repo := repos[i+1]
		_, digests := im.blobs()
		for _, d := range digests {
			if err := s.mountBlob(ctx, repo, im.repo, d); err != nil {
				return err
			}
		}
		return s.putManifest(ctx, repo, "latest", im.manifest)
	})
	return elapsed, err
}

// berthTarget returns the berth kind's target, nil if it did not run.
func berthTarget(ts []*target) *target {
	for _, t := range ts {
		if t.name == "berth" {
			return t
		}
	}
	return nil
}
