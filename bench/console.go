package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// The console workload (issue 12): the web console's repository list and
// tag list on a berth of its own holding consoleRepos repositories and
// consoleTags tags in one repository, timed from the loopback client
// (an upper bound of the server's time), and the bytes a first page
// transfers, raw and gzip-compressed.

const (
	consoleRepos = 10000
	consoleTags  = 5000
	// consoleSamples is how many times each page is fetched, one at a time.
	consoleSamples = 200
	// consoleLimitMS and consoleAssetLimit are issue 12's targets: the
	// median first page under 50 ms, its assets under 150 KB compressed.
	consoleLimitMS    = 50.0
	consoleAssetLimit = 150 << 10
)

// consolePage is one page the workload times.
type consolePage struct {
	key, label, path string
	// want is text the page must hold (a check that it is the full page).
	want string
	// rows is how many table rows or list items it must show.
	rows int
}

// benchConsole runs only for the berth kind, against a berth of its own
// (--auth=none: permission checks are off, see the report).
func (b *bench) benchConsole(ctx context.Context, t *target) error {
	if t.name != "berth" {
		logf("console: skipped for %s: the console workload runs once, against a berth of its own", t.name)
		return nil
	}
	s, err := startOwnBerth(b.berthBin, filepath.Join(b.tmp, "berth-console-data"), filepath.Join(b.tmp, "berth-console.log"), setupConc, nil)
	if err != nil {
		return err
	}
	defer s.stop()
	logf("console: berth listening on %s (pid %d); creating %d repositories and %d tags", s.base, s.cmd.Process.Pid, consoleRepos, consoleTags)

	// Setup: the repositories (each a manifest whose blobs are mounted
	// from the first), and the tags of one more.
	repos := make([]string, consoleRepos)
	for i := range repos {
		repos[i] = fmt.Sprintf("console/r%05d", i)
	}
	start := time.Now()
	if _, err := s.makeRepos(ctx, b.hot, repos); err != nil {
		return err
	}
	im := *b.hot
	im.repo, im.tag = repos[0], "latest"
	tagsRepo := "console/tags"
	im.repo = tagsRepo
	if err := s.pushImage(ctx, &im); err != nil {
		return err
	}
	if _, _, err := runLoad(ctx, consoleTags-1, setupConc, func(ctx context.Context, i int) error {
		return s.putManifest(ctx, tagsRepo, fmt.Sprintf("t%05d", i+1), im.manifest)
	}); err != nil {
		return err
	}
	t.set("console-setup-s", time.Since(start).Seconds())

	pages := []consolePage{
		{"console-repos", "Repository list, first page (50 of 10,001)", "/", repos[0], 50},
		{"console-search", "Repository search matching 10 of 10,001 (scans them all)", "/?q=r0999", "console/r09990", 10},
		{"console-tags", "Tag list of 5,000 tags, first page (100), newest first", "/repo?name=" + tagsRepo, "t04999", 100},
		{"console-tags-name", "Tag list of 5,000 tags, first page (100), by name", "/repo?name=" + tagsRepo + "&sort=name", "t00099", 100},
		{"console-image", "Image page", "/image?name=" + repos[0] + "&ref=latest", im.manifestDigest, 0},
	}
	for _, p := range pages {
		lat := make([]time.Duration, 0, consoleSamples)
		var body []byte
		for range consoleSamples {
			t0 := time.Now()
			_, b, err := s.do(ctx, request{method: http.MethodGet, url: p.path, want: []int{http.StatusOK}})
			if err != nil {
				return err
			}
			lat = append(lat, time.Since(t0))
			body = b
		}
		if !bytes.Contains(body, []byte(p.want)) {
			return fmt.Errorf("console page %s does not hold %q:\n%s", p.path, p.want, snippet(body))
		}
		if n := bytes.Count(body, []byte("<li><a href=\"/repo?")) + bytes.Count(body, []byte("<tr>\n<td><a href=\"/image?")); p.rows > 0 && n != p.rows {
			return fmt.Errorf("console page %s shows %d rows, want %d", p.path, n, p.rows)
		}
		slices.Sort(lat)
		t.set(p.key+"-p50", quantile(lat, 0.5))
		t.set(p.key+"-p99", quantile(lat, 0.99))
		t.set(p.key+"-bytes", float64(len(body)))
		t.set(p.key+"-gzip", float64(gzipSize(body)))
	}
	for _, a := range []string{"/static/console.css", "/static/console.js"} {
		_, body, err := s.do(ctx, request{method: http.MethodGet, url: a, want: []int{http.StatusOK}})
		if err != nil {
			return err
		}
		t.set("console-asset-bytes", t.values["console-asset-bytes"]+float64(len(body)))
		t.set("console-asset-gzip", t.values["console-asset-gzip"]+float64(gzipSize(body)))
	}
	t.consolePages = pages
	return nil
}

// gzipSize is the size of b gzip-compressed at the default level.
func gzipSize(b []byte) int {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	_, _ = w.Write(b)
	_ = w.Close()
	return buf.Len()
}

// renderConsole renders the console workload's section.
func renderConsole(cfg *config, ts []*target) string {
	t := berthTarget(ts)
	if !cfg.selected("console") || t == nil {
		return ""
	}
	var w strings.Builder
	w.WriteString("\n### berth web console (issue 12)\n\n")
	if err := t.errs["console"]; err != nil {
		fmt.Fprintf(&w, "FAILED: %s\n", firstLine(err.Error()))
		return w.String()
	}
	fmt.Fprintf(&w, "A berth of its own (`--auth=none`: no permission checks; with auth a page adds one rights lookup per namespace "+
		"it lists) holding %d repositories (each one manifest) and one more with %d tags (set up in %.0f s). Each page "+
		"is fetched %d times, one request at a time, by the benchmark's client on loopback: the latency is the server's "+
		"time plus the loopback round trip. The targets: a median under %.0f ms; a first page's HTML, style sheet and "+
		"script under %d KB gzip-compressed (berth serves them uncompressed; the raw size is given too).\n\n",
		consoleRepos, consoleTags, t.values["console-setup-s"], consoleSamples, consoleLimitMS, consoleAssetLimit>>10)
	w.WriteString("| Page | median (ms) | p99 (ms) | HTML (KB) | HTML + CSS + JS, gzip (KB) | within target |\n| --- | ---: | ---: | ---: | ---: | :---: |\n")
	assetsRaw, assetsGz := t.values["console-asset-bytes"], t.values["console-asset-gzip"]
	for _, p := range t.consolePages {
		p50, gz := t.values[p.key+"-p50"], t.values[p.key+"-gzip"]+assetsGz
		ok := p50 < consoleLimitMS && gz < consoleAssetLimit
		fmt.Fprintf(&w, "| %s | %.2f | %.2f | %.1f | %.1f | %s |\n", p.label, p50, t.values[p.key+"-p99"],
			t.values[p.key+"-bytes"]/1024, gz/1024, map[bool]string{true: "yes", false: "**no**"}[ok])
	}
	fmt.Fprintf(&w, "\nThe style sheet and script: %.1f KB raw, %.1f KB gzip-compressed.\n", assetsRaw/1024, assetsGz/1024)
	return w.String()
}
