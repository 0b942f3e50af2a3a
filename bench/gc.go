package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/berth-registry/berth/internal/gc"
)

// gcGrace is the --gc-grace of the berth the gc workload starts.
const gcGrace = time.Second

// gcBaseline is how long the reader runs before the collection, for its
// latency without one.
const gcBaseline = 3 * time.Second

// gcManifest is one manifest of the gc workload.
type gcManifest struct {
	repo, tag string // tag "" for a manifest pushed by digest
	untag     bool   // pushed with tag, then the tag deleted
	body      []byte
	digest    string
	blobs     [][]byte
	digests   []string
}

// garbage reports whether a collection must remove the manifest.
func (m *gcManifest) garbage() bool { return m.tag == "" || m.untag }

// gcContent builds the manifests of the gc workload: cfg.gcManifests
// manifests over cfg.gcRepos repositories, holding cfg.gcBlobs distinct
// blobs of 64-512 bytes between them (the first blob of each is its
// config). Every other manifest is garbage: a quarter are pushed by digest
// only, a quarter are pushed with a tag that is then deleted.
func gcContent(cfg *config) []*gcManifest {
	r := rand.New(rand.NewPCG(0x6C, 0xB10B))
	ms := make([]*gcManifest, cfg.gcManifests)
	per, extra := cfg.gcBlobs/cfg.gcManifests, cfg.gcBlobs%cfg.gcManifests
	for i := range ms {
		m := &gcManifest{repo: fmt.Sprintf("gc/r%02d", i%cfg.gcRepos)}
		switch i % 4 {
		case 0, 2:
			m.tag = fmt.Sprintf("t%06d", i)
		case 1:
		case 3:
			m.tag, m.untag = fmt.Sprintf("u%06d", i), true
		}
		n := per
		if i < extra {
			n++
		}
		fill(r, m, n)
		ms[i] = m
	}
	return ms
}

// newGCManifest builds an image manifest of n random blobs of 64-512
// bytes, the first its config.
func newGCManifest(r *rand.Rand, repo, tag string, n int) *gcManifest {
	m := &gcManifest{repo: repo, tag: tag}
	fill(r, m, n)
	return m
}

// fill gives m n random blobs of 64-512 bytes, the first its config, and
// the manifest body listing them.
func fill(r *rand.Rand, m *gcManifest, n int) {
	type desc struct {
		MediaType string `json:"mediaType"`
		Digest    string `json:"digest"`
		Size      int    `json:"size"`
	}
	layers := []desc{}
	for j := range n {
		b := randomBytes(r, 64+r.IntN(449))
		d := digestOf(b)
		m.blobs, m.digests = append(m.blobs, b), append(m.digests, d)
		if j > 0 {
			layers = append(layers, desc{ociLayer, d, len(b)})
		}
	}
	m.body, _ = json.Marshal(struct {
		SchemaVersion int    `json:"schemaVersion"`
		MediaType     string `json:"mediaType"`
		Config        desc   `json:"config"`
		Layers        []desc `json:"layers"`
	}{2, ociManifest, desc{ociConfig, m.digests[0], len(m.blobs[0])}, layers})
	m.digest = digestOf(m.body)
}

// collectGarbage runs a collection on s through the admin API (open with
// --auth=none).
func (s *server) collectGarbage(ctx context.Context, dry bool) (*gc.Report, error) {
	url := "/api/v1/gc"
	if dry {
		url += "?dry_run=true"
	}
	r := request{method: http.MethodPost, url: url, want: []int{http.StatusOK}}
	resp, b, err := s.do(ctx, r)
	if err != nil {
		return nil, err
	}
	var rep gc.Report
	err = json.Unmarshal(b, &rep)
	if err := s.check(err == nil && rep.DryRun == dry, resp, b, r, "a JSON report with dry_run %v (%v)", dry, err); err != nil {
		return nil, err
	}
	return &rep, nil
}

// gcLoad is a client that repeats one request (or push) in a loop until
// its context ends, recording when each started and how long it took.
type gcLoad struct {
	starts []time.Time
	lat    []time.Duration
	done   []*gcManifest // what a writer pushed
	err    error
}

// gcLoop calls fn with a counter until stop is set (letting the call in
// flight finish) or fn fails; fn's result (a pushed manifest, or nil) is
// kept.
func gcLoop(ctx context.Context, stop *atomic.Bool, fn func(ctx context.Context, i int) (*gcManifest, error)) *gcLoad {
	l := &gcLoad{}
	for i := 0; !stop.Load(); i++ {
		start := time.Now()
		m, err := fn(ctx, i)
		d := time.Since(start)
		if err != nil {
			l.err = err
			break
		}
		l.starts, l.lat = append(l.starts, start), append(l.lat, d)
		if m != nil {
			l.done = append(l.done, m)
		}
	}
	return l
}

// inside returns the latencies of the calls that ran within [from, to].
func (l *gcLoad) inside(from, to time.Time) []time.Duration {
	var out []time.Duration
	for i, s := range l.starts {
		if !s.Before(from) && !s.Add(l.lat[i]).After(to) {
			out = append(out, l.lat[i])
		}
	}
	return out
}

// overlapping returns the latencies of the calls that ran at some time
// within [from, to]: a call stalled by a collection counts, whenever it
// started.
func (l *gcLoad) overlapping(from, to time.Time) []time.Duration {
	var out []time.Duration
	for i, s := range l.starts {
		if !s.After(to) && !s.Add(l.lat[i]).Before(from) {
			out = append(out, l.lat[i])
		}
	}
	return out
}

// readManifest GETs m by tag and checks it.
func (s *server) readManifest(ctx context.Context, m *gcManifest) error {
	req := request{method: http.MethodGet, url: "/v2/" + m.repo + "/manifests/" + m.tag,
		header: http.Header{"Accept": {manifestAccept}}, want: []int{http.StatusOK}}
	resp, b, err := s.do(ctx, req)
	if err != nil {
		return err
	}
	return s.check(digestOf(b) == m.digest && resp.Header.Get("Docker-Content-Digest") == m.digest, resp, b, req, "manifest %s", m.digest)
}

// pushTiny pushes a new tagged image of two small blobs, as a writer
// during the collection does. A push that a collection stalled for longer
// than the grace period may find its first blob collected (it was older
// than the grace period and no manifest used it yet): it is then pushed
// again, and counted in refused.
func (s *server) pushTiny(ctx context.Context, r *rand.Rand, i int, refused *atomic.Int64) (*gcManifest, error) {
	m := newGCManifest(r, "gc/writer", fmt.Sprintf("w%06d", i), 2)
	for attempt := 0; ; attempt++ {
		start := time.Now()
		for j, bl := range m.blobs {
			if err := s.pushBlob(ctx, m.repo, bl, m.digests[j]); err != nil {
				return nil, err
			}
		}
		err := s.putManifest(ctx, m.repo, m.tag, m.body)
		var he *httpError
		if err == nil || attempt > 0 || time.Since(start) < gcGrace || !errors.As(err, &he) || !strings.Contains(he.respBody, "MANIFEST_BLOB_UNKNOWN") {
			return m, err
		}
		refused.Add(1)
	}
}

// benchGC measures berth's online garbage collection: it starts a berth of
// its own with --gc-grace 1s, pushes the gc workload's manifests (half of
// them garbage) with setupConc clients, waits past the grace period, and
// runs a dry run and then one collection while readers GET tagged
// manifests and a writer pushes images, whose latencies it compares with
// the same clients' just before. It then checks that the collection
// removed exactly the garbage (and what the dry run announced), that a dry
// run after finds nothing, that what is tagged still pulls, and that the
// disk holds exactly the blobs still used.
func (b *bench) benchGC(ctx context.Context, t *target) error {
	switch t.name {
	case "berth":
	case "berth-observed":
		logf("gc: skipped for berth-observed: the gc workload runs once, against a berth of its own in embedded mode")
		return nil
	case "berth-s3":
		logf("gc: skipped for berth-s3: the gc workload times a berth in embedded mode only")
		return nil
	default:
		logf("gc: skipped for %s, which collects garbage only offline (with the registry stopped)", t.name)
		return nil
	}
	cfg := b.cfg
	dataDir := filepath.Join(b.tmp, "berth-gc-data")
	s, err := startOwnBerth(b.berthBin, dataDir, filepath.Join(b.tmp, "berth-gc.log"), setupConc+cfg.gcReaders+1, nil,
		"--gc-grace", gcGrace.String(), "--gc-interval", "24h")
	if err != nil {
		return err
	}
	defer s.stop()
	logf("gc: berth with --gc-grace %v listening on %s (pid %d)", gcGrace, s.base, s.cmd.Process.Pid)

	ms := gcContent(cfg)
	var tagged, garbage []*gcManifest
	var wantBytes int64
	wantBlobs := 0
	for _, m := range ms {
		if !m.garbage() {
			tagged = append(tagged, m)
			continue
		}
		garbage = append(garbage, m)
		wantBlobs += len(m.blobs)
		for _, bl := range m.blobs {
			wantBytes += int64(len(bl))
		}
	}

	// Setup: push everything, untag a quarter.
	cpu0 := s.sample().cpuSec
	_, setup, err := runLoad(ctx, len(ms), setupConc, func(ctx context.Context, i int) error {
		m := ms[i]
		for j, bl := range m.blobs {
			if err := s.pushBlob(ctx, m.repo, bl, m.digests[j]); err != nil {
				return err
			}
		}
		ref := m.tag
		if ref == "" {
			ref = m.digest
		}
		if err := s.putManifest(ctx, m.repo, ref, m.body); err != nil {
			return err
		}
		if m.untag {
			_, _, err := s.do(ctx, request{method: http.MethodDelete, url: "/v2/" + m.repo + "/manifests/" + m.tag, want: []int{http.StatusAccepted}})
			return err
		}
		return nil
	})
	if err != nil {
		return err
	}
	t.set("gc-garbage", float64(len(garbage)))
	t.set("gc-setup", setup.Seconds())
	t.set("gc-setup-rate", float64(len(ms))/setup.Seconds())
	t.set("gc-setup-cpu", s.sample().cpuSec-cpu0)
	logf("gc: pushed %d manifests with %d blobs in %.1fs (%d garbage manifests, %d garbage blobs, %d bytes)",
		len(ms), cfg.gcBlobs, setup.Seconds(), len(garbage), wantBlobs, wantBytes)

	// Readers and a writer run through the grace period (their baseline),
	// a dry run, and the collection.
	var stopLoad atomic.Bool
	var refused atomic.Int64
	defer stopLoad.Store(true)
	loads := make([]*gcLoad, cfg.gcReaders+1)
	var wg sync.WaitGroup
	for i := range loads {
		r := rand.New(rand.NewPCG(uint64(i), 0x4EAD))
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i == cfg.gcReaders {
				loads[i] = gcLoop(ctx, &stopLoad, func(ctx context.Context, n int) (*gcManifest, error) { return s.pushTiny(ctx, r, n, &refused) })
				return
			}
			loads[i] = gcLoop(ctx, &stopLoad, func(ctx context.Context, _ int) (*gcManifest, error) {
				return nil, s.readManifest(ctx, tagged[r.IntN(len(tagged))])
			})
		}()
	}
	baseFrom := time.Now()
	time.Sleep(max(gcBaseline, gcGrace+500*time.Millisecond))
	baseTo := time.Now()
	dryFrom := time.Now()
	preview, err := s.collectGarbage(ctx, true)
	dryTo := time.Now()
	if err != nil {
		stopLoad.Store(true)
		wg.Wait()
		return err
	}
	// Pushes the dry run stalled finish before the collection, which
	// could otherwise find their first blobs past the grace period.
	time.Sleep(gcGrace + 500*time.Millisecond)
	cpu1 := s.sample().cpuSec
	gcFrom := time.Now()
	rep, gcErr := s.collectGarbage(ctx, false)
	gcTo := time.Now()
	cpu2 := s.sample().cpuSec
	time.Sleep(100 * time.Millisecond)
	stopLoad.Store(true)
	wg.Wait()
	if gcErr != nil {
		return gcErr
	}
	var base, during, dryRead []time.Duration
	for _, l := range loads[:cfg.gcReaders] {
		if l.err != nil {
			return fmt.Errorf("gc: a reader failed: %w", l.err)
		}
		base = append(base, l.inside(baseFrom, baseTo)...)
		during = append(during, l.overlapping(gcFrom, gcTo)...)
		dryRead = append(dryRead, l.overlapping(dryFrom, dryTo)...)
	}
	writer := loads[cfg.gcReaders]
	if writer.err != nil {
		return fmt.Errorf("gc: the writer failed: %w", writer.err)
	}
	tagged = append(tagged, writer.done...)
	t.set("gc-refused", float64(refused.Load()))
	t.set("gc-preview", time.Duration(preview.Duration).Seconds())
	t.set("gc-duration", time.Duration(rep.Duration).Seconds())
	t.set("gc-wall", gcTo.Sub(gcFrom).Seconds())
	t.set("gc-cpu", cpu2-cpu1)
	t.set("gc-manifests", float64(len(rep.Manifests)))
	t.set("gc-links", float64(rep.Unlinked))
	t.set("gc-blobs", float64(rep.Blobs))
	t.set("gc-bytes", float64(rep.Bytes))
	for _, x := range []struct {
		key      string
		lat      []time.Duration
		from, to time.Time
	}{
		{"gc-read", during, gcFrom, gcTo},
		{"gc-base", base, baseFrom, baseTo},
		{"gc-write", writer.overlapping(gcFrom, gcTo), gcFrom, gcTo},
		{"gc-wbase", writer.inside(baseFrom, baseTo), baseFrom, baseTo},
		{"gc-dryread", dryRead, dryFrom, dryTo},
		{"gc-drywrite", writer.overlapping(dryFrom, dryTo), dryFrom, dryTo},
	} {
		slices.Sort(x.lat)
		t.set(x.key+"-n", float64(len(x.lat)))
		t.set(x.key+"-rps", float64(len(x.lat))/x.to.Sub(x.from).Seconds())
		t.set(x.key+"-p50", quantile(x.lat, 0.50))
		t.set(x.key+"-p99", quantile(x.lat, 0.99))
		if len(x.lat) > 0 {
			t.set(x.key+"-max", float64(x.lat[len(x.lat)-1])/float64(time.Millisecond))
		}
	}
	logf("gc: collected %d manifests, %d blob links, %d blobs, %d bytes in %.2fs (server) / %.2fs (request; dry run before it %.2fs); during it: %d manifest GETs, %d image pushes",
		len(rep.Manifests), rep.Unlinked, rep.Blobs, rep.Bytes, time.Duration(rep.Duration).Seconds(), gcTo.Sub(gcFrom).Seconds(),
		time.Duration(preview.Duration).Seconds(), len(during), int(t.values["gc-write-n"]))

	// The collection removed exactly the garbage, and nothing is left.
	var problems []string
	if !slices.Equal(preview.Manifests, rep.Manifests) || preview.Unlinked != rep.Unlinked || preview.Blobs != rep.Blobs || preview.Bytes != rep.Bytes {
		problems = append(problems, fmt.Sprintf("the dry run announced %d manifests, %d blob links, %d blobs, %d bytes; the collection right after removed %d, %d, %d, %d",
			len(preview.Manifests), preview.Unlinked, preview.Blobs, preview.Bytes, len(rep.Manifests), rep.Unlinked, rep.Blobs, rep.Bytes))
	}
	if len(rep.Manifests) != len(garbage) || rep.Blobs != wantBlobs || rep.Unlinked != wantBlobs || rep.Bytes != wantBytes {
		problems = append(problems, fmt.Sprintf("the collection removed %d manifests, %d blob links, %d blobs, %d bytes; want %d, %d, %d, %d",
			len(rep.Manifests), rep.Unlinked, rep.Blobs, rep.Bytes, len(garbage), wantBlobs, wantBlobs, wantBytes))
	}
	dry, err := s.collectGarbage(ctx, true)
	if err != nil {
		return err
	}
	t.set("gc-dry-left", float64(len(dry.Manifests)+dry.Unlinked+dry.Blobs))
	if len(dry.Manifests)+dry.Unlinked+dry.Blobs > 0 {
		problems = append(problems, fmt.Sprintf("a dry run right after still finds %d manifests, %d blob links, %d blobs", len(dry.Manifests), dry.Unlinked, dry.Blobs))
	}
	// Every tagged manifest still pulls, and every tenth has its blobs;
	// every tenth garbage manifest is gone.
	_, _, err = runLoad(ctx, len(tagged), setupConc, func(ctx context.Context, i int) error {
		m := tagged[i]
		r := request{method: http.MethodGet, url: "/v2/" + m.repo + "/manifests/" + m.tag, header: http.Header{"Accept": {manifestAccept}}, want: []int{http.StatusOK}}
		resp, body, err := s.do(ctx, r)
		if err == nil {
			err = s.check(digestOf(body) == m.digest, resp, body, r, "manifest %s", m.digest)
		}
		if err != nil || i%10 != 0 {
			return err
		}
		for j, d := range m.digests {
			if err := s.headBlobExact(ctx, m.repo, d, len(m.blobs[j])); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("gc: tagged content after the collection: %w", err)
	}
	for i := 0; i < len(garbage); i += 10 {
		m := garbage[i]
		if _, _, err := s.do(ctx, request{method: http.MethodGet, url: "/v2/" + m.repo + "/manifests/" + m.digest,
			header: http.Header{"Accept": {manifestAccept}}, want: []int{http.StatusNotFound}}); err != nil {
			return fmt.Errorf("gc: garbage manifest after the collection: %w", err)
		}
	}
	files := 0
	err = filepath.WalkDir(filepath.Join(dataDir, "blobs"), func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files++
		}
		return err
	})
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if want := cfg.gcBlobs - wantBlobs + 2*len(writer.done); files != want {
		problems = append(problems, fmt.Sprintf("%d blob files on disk after the collection, want %d", files, want))
	}
	st := s.sample()
	t.set("gc-hwm", float64(st.hwmKiB)/1024)
	t.cpu["gc"] = st.cpuSec // this berth's, not the shared one's
	if len(problems) > 0 {
		return errors.New("gc: " + strings.Join(problems, "; "))
	}
	t.note("gc-duration", fmt.Sprintf("checked: exactly the garbage went, a dry run after found nothing, %d tagged manifests pull, %d blob files remain", len(tagged), files))
	return nil
}

// renderGC renders the gc workload's table, or "" if it did not run.
func renderGC(cfg *config, ts []*target) string {
	t := berthTarget(ts)
	if !cfg.selected("gc") || t == nil {
		return ""
	}
	var w strings.Builder
	fmt.Fprintf(&w, "\n### berth online garbage collection\n\n")
	if err := t.errs["gc"]; err != nil {
		fmt.Fprintf(&w, "FAILED: %s\n", firstLine(err.Error()))
		return w.String()
	}
	v := func(key string, prec int) string {
		x, ok := t.values[key]
		if !ok {
			return "–"
		}
		return fmt.Sprintf("%.*f", prec, x)
	}
	lat := func(key string) string {
		return fmt.Sprintf("%s / %s / %s", v(key+"-p50", 2), v(key+"-p99", 2), v(key+"-max", 2))
	}
	fmt.Fprintf(&w, "%d manifests in %d repositories holding %d distinct blobs of 64-512 B; half the manifests are garbage "+
		"(a quarter pushed by digest only, a quarter untagged after the push). berth runs with `--gc-grace %v`; the collection "+
		"runs through `POST /api/v1/gc` after the grace period while %d reader%s GET%s tagged manifests by tag in a loop "+
		"and one writer pushes new tagged images (two blobs of 64-512 B by POST+PUT, then the manifest) in a loop. "+
		"A dry run ends %v before the collection starts. Latencies during a run count every request that overlapped it "+
		"(a push it stalled counts, whenever that push started); those before count requests that ended before the dry run.\n\n",
		cfg.gcManifests, cfg.gcRepos, cfg.gcBlobs, gcGrace, cfg.gcReaders, map[bool]string{true: "s"}[cfg.gcReaders != 1],
		map[bool]string{true: "s"}[cfg.gcReaders == 1], gcGrace+500*time.Millisecond)
	fmt.Fprintf(&w, "| Metric | berth |\n| --- | ---: |\n")
	rows := [][2]string{
		{fmt.Sprintf("Setup: push %d manifests and their blobs, %d clients (s)", cfg.gcManifests, setupConc), v("gc-setup", 1)},
		{"Setup rate (manifests/s, each with its blobs as POST+PUT)", v("gc-setup-rate", 0)},
		{"Setup server CPU (s)", v("gc-setup-cpu", 1)},
		{fmt.Sprintf("Collection: manifests removed (of %s garbage)", v("gc-garbage", 0)), v("gc-manifests", 0)},
		{"Collection: blob links removed", v("gc-links", 0)},
		{"Collection: blobs removed", v("gc-blobs", 0)},
		{"Collection: bytes freed", v("gc-bytes", 0)},
		{"Collection duration, server-reported (s)", v("gc-duration", 2)},
		{"Dry run just before it, server-reported (s): the metadata sweep alone", v("gc-preview", 2)},
		{"Collection request, wall time (s)", v("gc-wall", 2)},
		{"Server CPU during the collection (s)", v("gc-cpu", 2)},
		{fmt.Sprintf("Reader: manifest GETs, req/s, in the %v before the collections", max(gcBaseline, gcGrace+500*time.Millisecond)), v("gc-base-n", 0) + ", " + v("gc-base-rps", 0)},
		{"Reader: manifest GET latency then, p50 / p99 / max (ms)", lat("gc-base")},
		{"Reader: manifest GETs, req/s, during the collection", v("gc-read-n", 0) + ", " + v("gc-read-rps", 0)},
		{"Reader: manifest GET latency during the collection, p50 / p99 / max (ms)", lat("gc-read")},
		{"Reader: manifest GET latency during the dry run, p50 / p99 / max (ms)", lat("gc-dryread")},
		{"Writer: image pushes, pushes/s, before the collections", v("gc-wbase-n", 0) + ", " + v("gc-wbase-rps", 0)},
		{"Writer: image push latency then, p50 / p99 / max (ms)", lat("gc-wbase")},
		{"Writer: image pushes, pushes/s, during the collection", v("gc-write-n", 0) + ", " + v("gc-write-rps", 0)},
		{"Writer: image push latency during the collection, p50 / p99 / max (ms)", lat("gc-write")},
		{"Writer: image pushes during the dry run, and their latency p50 / p99 / max (ms)", v("gc-drywrite-n", 0) + "; " + lat("gc-drywrite")},
		{"Writer: pushes refused for a blob collected while a collection stalled them past the grace period (pushed again)", v("gc-refused", 0)},
		{"Left for a dry run right after (manifests + links + blobs)", v("gc-dry-left", 0)},
		{"Peak memory of this berth (VmHWM, MiB)", v("gc-hwm", 1)},
	}
	for _, r := range rows {
		fmt.Fprintf(&w, "| %s | %s |\n", r[0], r[1])
	}
	for _, n := range t.notes["gc-duration"] {
		fmt.Fprintf(&w, "\n- %s.\n", n)
	}
	return w.String()
}
