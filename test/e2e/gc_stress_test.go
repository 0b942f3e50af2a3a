package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/gc"
)

// Settings of the garbage collection stress test.
const (
	gcsClients         = 8
	gcsRepoCount       = 4
	gcsGrace           = 2 * time.Second
	gcsDefaultDuration = 60 * time.Second
	gcsRequestTimeout  = 30 * time.Second
	gcsSharedLayers    = 48
	gcsMaxLayer        = 256 << 10
	// gcsMaxReported caps the failures reported one by one.
	gcsMaxReported = 40

	gcsEmptyDigest = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
	gcsEmptyType   = "application/vnd.oci.empty.v1+json"
	gcsConfigType  = "application/vnd.oci.image.config.v1+json"
	gcsLayerType   = "application/vnd.oci.image.layer.v1.tar"
	gcsSigType     = "application/vnd.berth.gcstress.signature"
)

// TestGCStress runs online garbage collection in a loop while eight
// clients push images (some layers shared between clients and images,
// blobs uploaded monolithically, in PATCH chunks or by cross-repository
// mount, after a HEAD as docker does), push indexes and referrers, move and
// delete tags, delete manifests by digest and pull. As docker, a client
// skips the upload of a blob that a HEAD finds, often through an old link
// whose manifests were deleted; a manifest refused with
// MANIFEST_BLOB_UNKNOWN for a blob that a HEAD or mount reported present
// is counted and fails the test (docker does not retry). Each client owns its
// tags, so pulls of its own tags must always succeed; pulls of other
// clients' tags may miss, but whatever is served must be what was pushed.
// Afterwards every tagged manifest must pull in full, a last collection
// past the grace period must leave nothing for a dry run, unreachable
// manifests must be gone, and the blob files on disk must be exactly the
// blobs the tagged manifests, their children and their referrers use.
//
// BERTH_GC_STRESS_DURATION (a Go duration) changes the 60 s of load.
func TestGCStress(t *testing.T) {
	duration := gcsDefaultDuration
	if v := os.Getenv("BERTH_GC_STRESS_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("BERTH_GC_STRESS_DURATION: %v", err)
		}
		duration = d
	}
	srv := gcsStartBerth(t, "--gc-grace", gcsGrace.String(), "--gc-interval", "1h")
	w := newGCSWorld(t, srv)

	var stop, gcStop atomic.Bool
	var wg, gcWG sync.WaitGroup
	gcWG.Add(1)
	go func() {
		defer gcWG.Done()
		w.collectLoop(&gcStop)
	}()
	for _, c := range w.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				c.step()
			}
		}()
	}
	time.Sleep(duration)
	stop.Store(true)
	wg.Wait()
	gcStop.Store(true)
	gcWG.Wait()
	lastWrite := time.Now()
	w.logStats(duration)
	if n := w.st.presentRefusals.Load(); n > 0 {
		t.Errorf("%d manifest pushes were refused with MANIFEST_BLOB_UNKNOWN for a blob that a HEAD or mount had just reported present", n)
	}

	// Everything tagged pulls in full, and the registry holds exactly the
	// tags the clients own.
	before := w.checkRegistry("after the load")
	t.Logf("after the load: %d tags, %d reachable manifests, %d referenced blobs", before.tags, len(before.manifests), len(before.blobs))

	// Past the grace period, one more collection removes the rest, exactly
	// what a dry run just before it announces.
	time.Sleep(time.Until(lastWrite.Add(gcsGrace + 500*time.Millisecond)))
	preview, err := w.collect(true)
	if err != nil {
		t.Fatalf("dry run before the final collection: %v", err)
	}
	final, err := w.collect(false)
	if err != nil {
		t.Fatalf("final collection: %v", err)
	}
	t.Logf("final collection: %d manifests, %d blob links, %d blobs, %d bytes in %s",
		len(final.Manifests), final.Unlinked, final.Blobs, final.Bytes, time.Duration(final.Duration))
	if !slices.Equal(preview.Manifests, final.Manifests) || preview.Unlinked != final.Unlinked || preview.Blobs != final.Blobs || preview.Bytes != final.Bytes {
		t.Errorf("the dry run announced %d manifests, %d blob links, %d blobs, %d bytes; the collection right after removed %d manifests, %d blob links, %d blobs, %d bytes",
			len(preview.Manifests), preview.Unlinked, preview.Blobs, preview.Bytes, len(final.Manifests), final.Unlinked, final.Blobs, final.Bytes)
	}
	after := w.checkRegistry("after the final collection")
	if !maps.Equal(before.manifests, after.manifests) {
		t.Errorf("the final collection changed the reachable manifests: %d before, %d after", len(before.manifests), len(after.manifests))
	}
	if !maps.Equal(before.blobs, after.blobs) {
		t.Errorf("the final collection changed the referenced blobs: %d before, %d after", len(before.blobs), len(after.blobs))
	}
	dry, err := w.collect(true)
	if err != nil {
		t.Fatalf("dry run: %v", err)
	}
	if len(dry.Manifests) != 0 || dry.Unlinked != 0 || dry.Blobs != 0 || dry.Bytes != 0 {
		t.Errorf("a dry run right after the final collection still finds garbage: %d manifests %v, %d blob links, %d blobs, %d bytes",
			len(dry.Manifests), gcsFirst(dry.Manifests, 10), dry.Unlinked, dry.Blobs, dry.Bytes)
	}

	// Every acknowledged manifest that nothing reaches any more is gone.
	collected := w.checkUnreachableGone(after.manifests)

	// The blob files on disk are exactly the referenced blobs.
	disk := gcsDiskBlobs(t, filepath.Join(srv.DataDir, "blobs"))
	var leftover, missingOnDisk []string
	for d := range disk {
		if !after.blobs[d] {
			leftover = append(leftover, d+" ("+w.describeBlob(d)+")")
		}
	}
	for d := range after.blobs {
		if _, ok := disk[d]; !ok {
			missingOnDisk = append(missingOnDisk, d)
		}
	}
	sort.Strings(leftover)
	sort.Strings(missingOnDisk)
	if len(leftover) > 0 {
		t.Errorf("%d blob files on disk that no tagged manifest, child or referrer uses: %s", len(leftover), strings.Join(gcsFirst(leftover, 20), ", "))
	}
	if len(missingOnDisk) > 0 {
		t.Errorf("%d referenced blobs have no file on disk: %s", len(missingOnDisk), strings.Join(gcsFirst(missingOnDisk, 20), ", "))
	}
	var diskBytes int64
	for _, n := range disk {
		diskBytes += n
	}
	t.Logf("disk: %d blob files, %d bytes; %d blobs referenced; %d unreachable acknowledged manifests checked gone",
		len(disk), diskBytes, len(after.blobs), collected)
	if t.Failed() {
		t.Logf("last lines of the berth log (%s):\n%s", srv.LogPath, tailFile(srv.LogPath, 40))
	}
}

// TestGCGraceCoversRepushes checks the grace period's promise for content
// pushed again: a blob uploaded again (201) into a repository whose old
// link no manifest uses, and a manifest pushed again by digest before the
// index that lists it, must survive a collection that runs right after,
// because they were just pushed.
func TestGCGraceCoversRepushes(t *testing.T) {
	srv := gcsStartBerth(t, "--gc-grace", gcsGrace.String(), "--gc-interval", "1h")
	w := newGCSWorld(t, srv)
	a := w.api
	must := func(want int, what string) func(r *gcsResp, err error) {
		return func(r *gcsResp, err error) {
			t.Helper()
			if err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			if r.status != want {
				t.Fatalf("%s: %s, want %d", what, r, want)
			}
		}
	}
	upload := func(repo string, b *gcsBlob) {
		t.Helper()
		must(201, "upload "+b.digest)(a.do(http.MethodPost, "/v2/"+repo+"/blobs/uploads/?digest="+b.digest, b.bytes()))
	}
	put := func(m *gcsManifest, ref string) (*gcsResp, error) {
		return a.do(http.MethodPut, "/v2/"+m.repo+"/manifests/"+ref, m.body, "Content-Type", m.mediaType)
	}
	c := w.clients[0]

	// Blob: image v1 uses layer L; v1 is untagged, so L's link is unused.
	layer := &gcsBlob{seed: 7, size: 1000}
	layer.digest = sha256Digest(layer.bytes())
	v1 := c.newImageWith("repush/blob", []*gcsBlob{layer})
	for _, b := range v1.blobs {
		upload(v1.repo, b)
	}
	must(201, "push v1")(put(v1, "v1"))
	must(202, "untag v1")(a.do(http.MethodDelete, "/v2/repush/blob/manifests/v1", nil))

	// Manifest: child is pushed by digest for an index never pushed, while
	// its blobs stay in use by a tagged image.
	shared := &gcsBlob{seed: 8, size: 1000}
	shared.digest = sha256Digest(shared.bytes())
	keep := c.newImageWith("repush/manifest", []*gcsBlob{shared})
	child := c.newImageWith("repush/manifest", []*gcsBlob{shared})
	for _, b := range slices.Concat(keep.blobs, child.blobs[:1]) {
		upload(keep.repo, b)
	}
	must(201, "push keep")(put(keep, "keep"))
	must(201, "push child by digest")(put(child, child.digest))

	time.Sleep(gcsGrace + 500*time.Millisecond)
	// The clients come back: both push again what they need, with 201s.
	v2 := c.newImageWith("repush/blob", []*gcsBlob{layer})
	for _, b := range v2.blobs {
		upload(v2.repo, b)
	}
	must(201, "push child by digest again")(put(child, child.digest))
	index := c.newIndex("repush/manifest", child)
	// A collection runs now; what was just pushed must survive it.
	report, err := w.collect(false)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("collection: %d manifests %v, %d blob links, %d blobs", len(report.Manifests), report.Manifests, report.Unlinked, report.Blobs)
	if r, err := put(v2, "v2"); err != nil || r.status != 201 {
		t.Errorf("blob %s was uploaded again (201) just before the collection, yet the manifest using it is refused: %v %v", layer.digest, r, err)
	}
	if r, err := put(index, "multi"); err != nil || r.status != 201 {
		t.Errorf("manifest %s was pushed again by digest (201) just before the collection, yet the index listing it is refused: %v %v", child.digest, r, err)
	}
}

// ---- server and HTTP ----

// gcsStartBerth starts berth with --auth=none and extra flags on a free
// port and a fresh data directory, and stops it with SIGTERM at cleanup.
func gcsStartBerth(t *testing.T, extra ...string) *server {
	t.Helper()
	return start(t, launch{Args: append([]string{"--auth=none", "--log-level=warn"}, extra...)}).server
}

// gcsAPI sends registry and admin API requests; it never fails the test.
type gcsAPI struct {
	base   string
	client *http.Client
}

// gcsResp is a whole response.
type gcsResp struct {
	method, url string
	status      int
	header      http.Header
	body        []byte
}

func (r *gcsResp) String() string {
	if r == nil {
		return "<no response>"
	}
	return fmt.Sprintf("%s %s: %d %s", r.method, r.url, r.status, truncate(strings.TrimSpace(string(r.body)), 300))
}

// errCode returns the first registry error code of the body.
func (r *gcsResp) errCode() string {
	var e struct {
		Errors []struct {
			Code string `json:"code"`
		} `json:"errors"`
	}
	if json.Unmarshal(r.body, &e) == nil && len(e.Errors) > 0 {
		return e.Errors[0].Code
	}
	return ""
}

// errDigest returns the digest in the detail of the first registry error
// of the body (MANIFEST_BLOB_UNKNOWN names the missing blob so).
func (r *gcsResp) errDigest() string {
	var e struct {
		Errors []struct {
			Detail struct {
				Digest string `json:"digest"`
			} `json:"detail"`
		} `json:"errors"`
	}
	if json.Unmarshal(r.body, &e) == nil && len(e.Errors) > 0 {
		return e.Errors[0].Detail.Digest
	}
	return ""
}

// do sends a request (target is a path or an absolute URL) with header
// name/value pairs and reads the whole answer.
func (a *gcsAPI) do(method, target string, body []byte, hdr ...string) (*gcsResp, error) {
	u := target
	if strings.HasPrefix(u, "/") {
		u = a.base + u
	}
	ctx, cancel := context.WithTimeout(context.Background(), gcsRequestTimeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, err
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := a.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, u, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: reading the body: %w", method, u, err)
	}
	return &gcsResp{method: method, url: u, status: res.StatusCode, header: res.Header, body: b}, nil
}

// withDigest adds ?digest= to an upload Location.
func (a *gcsAPI) withDigest(loc, d string) string {
	u, err := url.Parse(loc)
	if err != nil {
		return loc
	}
	q := u.Query()
	q.Set("digest", d)
	u.RawQuery = q.Encode()
	if u.IsAbs() {
		return u.String()
	}
	return a.base + u.String()
}

// ---- model ----

// gcsBlob is a blob; layers are regenerated from their seed when uploaded.
type gcsBlob struct {
	digest string
	size   int
	seed   uint64
	data   []byte
	shared bool
}

func (b *gcsBlob) bytes() []byte {
	if b.data != nil {
		return b.data
	}
	return content(b.seed, b.size)
}

// gcsManifest is a manifest a client built (and maybe pushed).
type gcsManifest struct {
	kind      string // "image", "index" or "referrer"
	repo      string
	owner     *gcsClient
	digest    string
	mediaType string
	body      []byte
	blobs     []*gcsBlob
	children  []*gcsManifest
	subject   *gcsManifest
	child     bool // pushed as an index's child
	acked     bool // a push was acknowledged at least once
	// gone is set once the manifest became unreachable after its last
	// acknowledged push: it may have been collected since.
	gone bool
}

// gcsWorld is the state shared by the clients, the collector loop and the
// final checks.
type gcsWorld struct {
	t       *testing.T
	srv     *server
	api     *gcsAPI
	repos   []string
	shared  []*gcsBlob
	empty   *gcsBlob
	clients []*gcsClient
	start   time.Time

	mu    sync.Mutex
	known map[string]*gcsManifest // repo@digest of every manifest built
	tags  map[string]*gcsManifest // repo:tag of every client's tag, for foreign pulls

	gcMu   sync.Mutex
	gcRuns []gcsRun

	failures atomic.Int64
	st       gcsStats
}

// gcsRun is one collection of the loop.
type gcsRun struct {
	start, end time.Time
	dry        bool
	manifests  int
	blobs      int
	bytes      int64
}

// gcsStats counts what the clients and the collector did.
type gcsStats struct {
	pushes, indexes, referrers, uploads, chunked, streamed, monolithic, mounts, mountFallbacks atomic.Int64
	headHits, presentRefusals, slowRetries, retags, retagsRefused, tagDeletes, digestDeletes   atomic.Int64
	digestDeletesGone, ownPulls, foreignPulls, foreignMisses, foreignBlobMisses, blobsPulled   atomic.Int64
	gcRuns, gcDryRuns, gcManifests, gcBlobs, gcBytes, gcUnlinked                               atomic.Int64
}

func newGCSWorld(t *testing.T, srv *server) *gcsWorld {
	w := &gcsWorld{t: t, srv: srv, start: time.Now(), known: map[string]*gcsManifest{}, tags: map[string]*gcsManifest{},
		api: &gcsAPI{base: srv.URL, client: &http.Client{
			Transport:     &http.Transport{MaxIdleConnsPerHost: 4 * gcsClients, DisableCompression: true},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}}}
	for i := range gcsRepoCount {
		w.repos = append(w.repos, fmt.Sprintf("gcstress/r%d", i))
	}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0x6c5))
	for range gcsSharedLayers {
		b := &gcsBlob{seed: rng.Uint64(), size: 1 + rng.IntN(gcsMaxLayer), shared: true}
		b.digest = sha256Digest(b.bytes())
		w.shared = append(w.shared, b)
	}
	w.empty = &gcsBlob{digest: gcsEmptyDigest, size: 2, data: []byte("{}"), shared: true}
	for i := range gcsClients {
		w.clients = append(w.clients, &gcsClient{w: w, id: i, rng: rand.New(rand.NewPCG(rng.Uint64(), uint64(i))),
			tags: map[string]map[string]*gcsManifest{}, manifests: map[string][]*gcsManifest{},
			lastChange: map[string]time.Time{}, mutating: map[string]int{}})
	}
	return w
}

// fail reports a failure with the collections that ran shortly before.
func (w *gcsWorld) fail(format string, args ...any) {
	if w.failures.Add(1) > gcsMaxReported {
		return
	}
	w.t.Errorf("[%6.2fs] %s%s", time.Since(w.start).Seconds(), fmt.Sprintf(format, args...), w.recentGC(3*time.Second))
}

// recentGC describes the collections of the last d.
func (w *gcsWorld) recentGC(d time.Duration) string {
	w.gcMu.Lock()
	defer w.gcMu.Unlock()
	var parts []string
	for i := len(w.gcRuns) - 1; i >= 0 && time.Since(w.gcRuns[i].end) < d; i-- {
		r := w.gcRuns[i]
		parts = append(parts, fmt.Sprintf("%.2f-%.2fs dry=%v manifests=%d blobs=%d", r.start.Sub(w.start).Seconds(), r.end.Sub(w.start).Seconds(), r.dry, r.manifests, r.blobs))
	}
	if len(parts) == 0 {
		return ""
	}
	slices.Reverse(parts)
	return "\n\tcollections just before: " + strings.Join(parts, "; ")
}

// collect runs one collection through the admin API.
func (w *gcsWorld) collect(dry bool) (*gc.Report, error) {
	path := "/api/v1/gc"
	if dry {
		path += "?dry_run=true"
	}
	r, err := w.api.do(http.MethodPost, path, nil)
	if err != nil {
		return nil, err
	}
	if r.status != http.StatusOK {
		return nil, fmt.Errorf("%s", r)
	}
	var rep gc.Report
	if err := json.Unmarshal(r.body, &rep); err != nil {
		return nil, fmt.Errorf("%s: %v", r, err)
	}
	if rep.DryRun != dry {
		return nil, fmt.Errorf("%s: dry_run is %v", r, rep.DryRun)
	}
	return &rep, nil
}

// collectLoop collects (one run in eight dry) until stop, and checks that
// no run removed a manifest its owner had kept reachable since before the
// run began.
func (w *gcsWorld) collectLoop(stop *atomic.Bool) {
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0x9c))
	for !stop.Load() {
		dry := rng.IntN(8) == 0
		start := time.Now()
		rep, err := w.collect(dry)
		end := time.Now()
		if err != nil {
			w.fail("collection (dry=%v): %v", dry, err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		w.gcMu.Lock()
		w.gcRuns = append(w.gcRuns, gcsRun{start: start, end: end, dry: dry, manifests: len(rep.Manifests), blobs: rep.Blobs, bytes: rep.Bytes})
		w.gcMu.Unlock()
		if dry {
			w.st.gcDryRuns.Add(1)
		} else {
			w.st.gcRuns.Add(1)
			w.st.gcManifests.Add(int64(len(rep.Manifests)))
			w.st.gcBlobs.Add(int64(rep.Blobs))
			w.st.gcBytes.Add(rep.Bytes)
			w.st.gcUnlinked.Add(int64(rep.Unlinked))
		}
		for _, m := range rep.Manifests {
			w.mu.Lock()
			pm := w.known[m.Repository+"@"+string(m.Digest)]
			w.mu.Unlock()
			if pm == nil {
				w.fail("collection (dry=%v) reports %s@%s, which no client pushed", dry, m.Repository, m.Digest)
				continue
			}
			if pm.owner.keptSince(pm, start) {
				w.fail("collection (dry=%v, %.2f-%.2fs) removed %s %s@%s, which client %d kept reachable (tagged, an index child or a referrer of such) since before the run began",
					dry, start.Sub(w.start).Seconds(), end.Sub(w.start).Seconds(), pm.kind, m.Repository, m.Digest, pm.owner.id)
			}
		}
		time.Sleep(time.Duration(rng.IntN(200)) * time.Millisecond)
	}
}

// ---- clients ----

// gcsClient is one pushing and pulling client. It owns its tags (named
// c<id>-<n>) and the manifests it builds; all its HTTP requests run in its
// own goroutine, and mu guards its model against the collector's checks.
type gcsClient struct {
	w   *gcsWorld
	id  int
	rng *rand.Rand
	n   int

	mu         sync.Mutex
	tags       map[string]map[string]*gcsManifest // repo → tag → manifest
	manifests  map[string][]*gcsManifest          // repo → manifests pushed at least once
	lastChange map[string]time.Time               // repo → last change of what the client keeps reachable
	mutating   map[string]int                     // repo → requests in flight that may change it
}

// step does one random operation.
func (c *gcsClient) step() {
	repo := c.w.repos[c.rng.IntN(len(c.w.repos))]
	c.mu.Lock()
	ntags := 0
	for _, ts := range c.tags {
		ntags += len(ts)
	}
	c.mu.Unlock()
	crowded := ntags > 12
	switch r := c.rng.IntN(100); {
	case r < 26:
		c.opPushImage(repo)
	case r < 31:
		c.opPushIndex(repo)
	case r < 37:
		c.opPushReferrer(repo)
	case r < 47:
		c.opRetag(repo)
	case r < 54 || crowded && r < 62:
		c.opDeleteTag()
	case r < 61 || crowded && r < 70:
		c.opDeleteDigest(repo)
	case r < 88:
		c.opPullOwn()
	default:
		c.opPullForeign()
	}
}

// ---- model, under c.mu ----

// reachable returns what the client's tags in repo keep alive: the tagged
// manifests, their children, and (recursively) the referrers of those.
func (c *gcsClient) reachable(repo string) map[*gcsManifest]bool {
	live := map[*gcsManifest]bool{}
	var visit func(m *gcsManifest)
	visit = func(m *gcsManifest) {
		if m.gone || live[m] {
			return
		}
		live[m] = true
		for _, ch := range m.children {
			visit(ch)
		}
	}
	for _, m := range c.tags[repo] {
		visit(m)
	}
	for changed := true; changed; {
		changed = false
		for _, m := range c.manifests[repo] {
			if m.kind == "referrer" && !m.gone && !live[m] && live[m.subject] {
				visit(m)
				changed = true
			}
		}
	}
	return live
}

// refresh marks what is no longer reachable in repo as possibly gone.
func (c *gcsClient) refresh(repo string) {
	live := c.reachable(repo)
	for _, m := range c.manifests[repo] {
		if !live[m] {
			m.gone = true
		}
	}
	c.lastChange[repo] = time.Now()
}

// acked records an acknowledged push of m.
func (c *gcsClient) acked(m *gcsManifest) {
	if !m.acked {
		m.acked = true
		c.manifests[m.repo] = append(c.manifests[m.repo], m)
	}
	m.gone = false
	// A manifest in the registry has its children (pushes check them, and
	// a collection removes an index with the children it alone keeps).
	for _, ch := range m.children {
		ch.gone = false
	}
}

func (c *gcsClient) setTag(repo, tag string, m *gcsManifest) {
	if c.tags[repo] == nil {
		c.tags[repo] = map[string]*gcsManifest{}
	}
	c.tags[repo][tag] = m
	c.w.mu.Lock()
	c.w.tags[repo+":"+tag] = m
	c.w.mu.Unlock()
}

func (c *gcsClient) dropTag(repo, tag string) {
	delete(c.tags[repo], tag)
	c.w.mu.Lock()
	delete(c.w.tags, repo+":"+tag)
	c.w.mu.Unlock()
}

// beginChange and endChange bracket a request that may change what repo
// keeps reachable (a tag move or deletion), for keptSince.
func (c *gcsClient) beginChange(repo string) {
	c.mu.Lock()
	c.mutating[repo]++
	c.lastChange[repo] = time.Now()
	c.mu.Unlock()
}

// endChange runs update under the lock and ends the change.
func (c *gcsClient) endChange(repo string, update func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if update != nil {
		update()
	}
	c.mutating[repo]--
	c.refresh(repo)
}

// keptSince reports whether the client has kept m reachable without
// interruption since t (and has no change of its repository in flight).
func (c *gcsClient) keptSince(m *gcsManifest, t time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mutating[m.repo] == 0 && c.lastChange[m.repo].Before(t) && c.reachable(m.repo)[m]
}

// pickTag returns a tag to push to in repo: one of the client's own
// (moving it) a quarter of the time, or half of the time once the client
// has a few tags there, else a new one.
func (c *gcsClient) pickTag(repo string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ts := c.tags[repo]; len(ts) > 0 && (c.rng.IntN(4) == 0 || len(ts) > 4 && c.rng.IntN(2) == 0) {
		return gcsPick(c.rng, slices.Sorted(maps.Keys(ts)))
	}
	c.n++
	return fmt.Sprintf("c%d-%d", c.id, c.n)
}

// ---- building manifests ----

type gcsDesc struct {
	MediaType    string            `json:"mediaType"`
	Digest       string            `json:"digest"`
	Size         int               `json:"size"`
	ArtifactType string            `json:"artifactType,omitempty"`
	Platform     map[string]string `json:"platform,omitempty"`
}

func (c *gcsClient) register(m *gcsManifest) *gcsManifest {
	m.owner = c
	m.digest = sha256Digest(m.body)
	c.w.mu.Lock()
	c.w.known[m.repo+"@"+m.digest] = m
	c.w.mu.Unlock()
	return m
}

func (c *gcsClient) nonce() string {
	c.n++
	return fmt.Sprintf("c%d-%d-%016x", c.id, c.n, c.rng.Uint64())
}

// newImage builds an image of 1-3 layers of 1 B-256 KiB, about a third of
// them from the shared pool.
func (c *gcsClient) newImage(repo string) *gcsManifest {
	var layers []*gcsBlob
	for range 1 + c.rng.IntN(3) {
		var b *gcsBlob
		if c.rng.IntN(100) < 35 {
			b = gcsPick(c.rng, c.w.shared)
		} else {
			b = &gcsBlob{seed: c.rng.Uint64(), size: 1 + c.rng.IntN(gcsMaxLayer)}
			b.digest = sha256Digest(b.bytes())
		}
		if !slices.Contains(layers, b) {
			layers = append(layers, b)
		}
	}
	return c.newImageWith(repo, layers)
}

// newImageWith builds an image of the layers with a unique config.
func (c *gcsClient) newImageWith(repo string, layers []*gcsBlob) *gcsManifest {
	var diffIDs []string
	var descs []gcsDesc
	for _, l := range layers {
		diffIDs = append(diffIDs, l.digest)
		descs = append(descs, gcsDesc{MediaType: gcsLayerType, Digest: l.digest, Size: l.size})
	}
	cfg, _ := json.Marshal(map[string]any{"architecture": "amd64", "os": "linux",
		"config": map[string]any{"Labels": map[string]string{"gcstress": c.nonce()}},
		"rootfs": map[string]any{"type": "layers", "diff_ids": diffIDs}})
	config := &gcsBlob{digest: sha256Digest(cfg), size: len(cfg), data: cfg}
	body, _ := json.Marshal(struct {
		SchemaVersion int       `json:"schemaVersion"`
		MediaType     string    `json:"mediaType"`
		Config        gcsDesc   `json:"config"`
		Layers        []gcsDesc `json:"layers"`
	}{2, mediaTypeOCIManifest, gcsDesc{MediaType: gcsConfigType, Digest: config.digest, Size: config.size}, descs})
	return c.register(&gcsManifest{kind: "image", repo: repo, mediaType: mediaTypeOCIManifest, body: body, blobs: append([]*gcsBlob{config}, layers...)})
}

// newIndex builds an index of the children.
func (c *gcsClient) newIndex(repo string, children ...*gcsManifest) *gcsManifest {
	var descs []gcsDesc
	for i, ch := range children {
		descs = append(descs, gcsDesc{MediaType: ch.mediaType, Digest: ch.digest, Size: len(ch.body),
			Platform: map[string]string{"os": "linux", "architecture": []string{"amd64", "arm64", "s390x"}[i%3]}})
	}
	body, _ := json.Marshal(struct {
		SchemaVersion int               `json:"schemaVersion"`
		MediaType     string            `json:"mediaType"`
		Manifests     []gcsDesc         `json:"manifests"`
		Annotations   map[string]string `json:"annotations"`
	}{2, mediaTypeOCIIndex, descs, map[string]string{"gcstress": c.nonce()}})
	return c.register(&gcsManifest{kind: "index", repo: repo, mediaType: mediaTypeOCIIndex, body: body, children: children})
}

// newReferrer builds a signature-like artifact whose subject is s.
func (c *gcsClient) newReferrer(s *gcsManifest) *gcsManifest {
	layer := &gcsBlob{seed: c.rng.Uint64(), size: 1 + c.rng.IntN(4096)}
	layer.digest = sha256Digest(layer.bytes())
	body, _ := json.Marshal(struct {
		SchemaVersion int               `json:"schemaVersion"`
		MediaType     string            `json:"mediaType"`
		ArtifactType  string            `json:"artifactType"`
		Config        gcsDesc           `json:"config"`
		Layers        []gcsDesc         `json:"layers"`
		Subject       gcsDesc           `json:"subject"`
		Annotations   map[string]string `json:"annotations"`
	}{2, mediaTypeOCIManifest, gcsSigType, gcsDesc{MediaType: gcsEmptyType, Digest: gcsEmptyDigest, Size: 2},
		[]gcsDesc{{MediaType: "application/octet-stream", Digest: layer.digest, Size: layer.size}},
		gcsDesc{MediaType: s.mediaType, Digest: s.digest, Size: len(s.body)}, map[string]string{"gcstress": c.nonce()}})
	return c.register(&gcsManifest{kind: "referrer", repo: s.repo, mediaType: mediaTypeOCIManifest, body: body,
		blobs: []*gcsBlob{c.w.empty, layer}, subject: s})
}

// ---- pushing ----

// pushBlobs makes the blobs present in repo as docker does: HEAD each,
// skip those found, and upload or mount the missing ones. It returns when
// each blob that the registry reported present without an upload (a HEAD
// answering 200, a mount answering 201) was so reported: the client relies
// on those, often old links whose manifests were deleted, and the registry
// must keep them for the grace period. ok says whether all went well.
func (c *gcsClient) pushBlobs(repo string, blobs []*gcsBlob) (present map[string]time.Time, ok bool) {
	a := c.w.api
	present = map[string]time.Time{}
	for _, b := range blobs {
		r, err := a.do(http.MethodHead, "/v2/"+repo+"/blobs/"+b.digest, nil)
		if err != nil {
			c.w.fail("client %d: %v", c.id, err)
			return nil, false
		}
		if r.status == http.StatusOK {
			if r.header.Get("Content-Length") != strconv.Itoa(b.size) {
				c.w.fail("client %d: %s: Content-Length %q, want %d", c.id, r, r.header.Get("Content-Length"), b.size)
				return nil, false
			}
			present[b.digest] = time.Now()
			c.w.st.headHits.Add(1)
			continue
		}
		if r.status != http.StatusNotFound {
			c.w.fail("client %d: %s, want 200 or 404", c.id, r)
			return nil, false
		}
		mounted, ok := c.uploadBlob(repo, b)
		if !ok {
			return nil, false
		}
		if mounted {
			present[b.digest] = time.Now()
		}
	}
	return present, true
}

// uploadBlob uploads (or mounts) one blob in a random way, and reports
// whether a mount answered 201.
func (c *gcsClient) uploadBlob(repo string, b *gcsBlob) (mounted, ok bool) {
	a := c.w.api
	data := b.bytes()
	expect := func(r *gcsResp, err error, want int) bool {
		if err != nil {
			c.w.fail("client %d: uploading %s to %s: %v", c.id, b.digest, repo, err)
			return false
		}
		if r.status != want {
			c.w.fail("client %d: uploading %s to %s: %s, want %d", c.id, b.digest, repo, r, want)
			return false
		}
		if want == http.StatusCreated && r.header.Get("Docker-Content-Digest") != b.digest {
			c.w.fail("client %d: %s: Docker-Content-Digest %q, want %s", c.id, r, r.header.Get("Docker-Content-Digest"), b.digest)
			return false
		}
		return true
	}
	c.w.st.uploads.Add(1)
	uploads := "/v2/" + repo + "/blobs/uploads/"
	if b.shared && c.rng.IntN(2) == 0 {
		from := gcsPick(c.rng, c.w.repos)
		r, err := a.do(http.MethodPost, uploads+"?"+url.Values{"mount": {b.digest}, "from": {from}}.Encode(), nil)
		if err == nil && r.status == http.StatusCreated {
			c.w.st.mounts.Add(1)
			ok := expect(r, err, http.StatusCreated)
			return ok, ok
		}
		if !expect(r, err, http.StatusAccepted) {
			return false, false
		}
		c.w.st.mountFallbacks.Add(1)
		r, err = a.do(http.MethodPut, a.withDigest(r.header.Get("Location"), b.digest), data, "Content-Type", "application/octet-stream")
		return false, expect(r, err, http.StatusCreated)
	}
	return false, c.sendBlob(uploads, b, data, expect)
}

// sendBlob uploads one blob's data in one of the ways clients do.
func (c *gcsClient) sendBlob(uploads string, b *gcsBlob, data []byte, expect func(*gcsResp, error, int) bool) bool {
	a := c.w.api
	switch c.rng.IntN(4) {
	case 0: // one POST with the body
		c.w.st.monolithic.Add(1)
		r, err := a.do(http.MethodPost, uploads+"?digest="+b.digest, data, "Content-Type", "application/octet-stream")
		return expect(r, err, http.StatusCreated)
	case 1: // POST, PATCH chunks with Content-Range, PUT
		c.w.st.chunked.Add(1)
		r, err := a.do(http.MethodPost, uploads, nil)
		if !expect(r, err, http.StatusAccepted) {
			return false
		}
		loc := r.header.Get("Location")
		for off := 0; off < len(data); {
			end := min(len(data), off+16<<10+c.rng.IntN(112<<10))
			r, err = a.do(http.MethodPatch, c.abs(loc), data[off:end],
				"Content-Type", "application/octet-stream", "Content-Range", fmt.Sprintf("%d-%d", off, end-1))
			if !expect(r, err, http.StatusAccepted) {
				return false
			}
			loc, off = r.header.Get("Location"), end
		}
		r, err = a.do(http.MethodPut, a.withDigest(loc, b.digest), nil)
		return expect(r, err, http.StatusCreated)
	case 2: // POST, one PATCH with the whole body (docker), PUT
		c.w.st.streamed.Add(1)
		r, err := a.do(http.MethodPost, uploads, nil)
		if !expect(r, err, http.StatusAccepted) {
			return false
		}
		r, err = a.do(http.MethodPatch, c.abs(r.header.Get("Location")), data, "Content-Type", "application/octet-stream")
		if !expect(r, err, http.StatusAccepted) {
			return false
		}
		r, err = a.do(http.MethodPut, a.withDigest(r.header.Get("Location"), b.digest), nil)
		return expect(r, err, http.StatusCreated)
	default: // POST, PUT with the body (containerd)
		c.w.st.monolithic.Add(1)
		r, err := a.do(http.MethodPost, uploads, nil)
		if !expect(r, err, http.StatusAccepted) {
			return false
		}
		r, err = a.do(http.MethodPut, a.withDigest(r.header.Get("Location"), b.digest), data, "Content-Type", "application/octet-stream")
		return expect(r, err, http.StatusCreated)
	}
}

// abs resolves a Location.
func (c *gcsClient) abs(loc string) string {
	if strings.HasPrefix(loc, "/") {
		return c.w.api.base + loc
	}
	return loc
}

// putManifest PUTs m under ref.
func (c *gcsClient) putManifest(m *gcsManifest, ref string) (*gcsResp, error) {
	return c.w.api.do(http.MethodPut, "/v2/"+m.repo+"/manifests/"+ref, m.body, "Content-Type", m.mediaType)
}

// push pushes m's blobs and then m under ref, as docker does, and reports
// whether the push was acknowledged. A MANIFEST_BLOB_UNKNOWN refusal well
// within the grace period after the blob was uploaded, or after a HEAD or
// mount reported it present, is a failure: Docker Engine does not retry
// it. Only a push slower than half the grace period is retried.
func (c *gcsClient) push(m *gcsManifest, ref string) bool {
	for attempt := 0; attempt < 5; attempt++ {
		start := time.Now()
		present, ok := c.pushBlobs(m.repo, m.blobs)
		if !ok {
			return false
		}
		r, err := c.putManifest(m, ref)
		if err != nil {
			c.w.fail("client %d: %v", c.id, err)
			return false
		}
		if r.status == http.StatusCreated {
			if r.header.Get("Docker-Content-Digest") != m.digest {
				c.w.fail("client %d: %s: Docker-Content-Digest %q, want %s", c.id, r, r.header.Get("Docker-Content-Digest"), m.digest)
				return false
			}
			return true
		}
		if r.status == http.StatusBadRequest && r.errCode() == "MANIFEST_BLOB_UNKNOWN" {
			d := r.errDigest()
			reported, wasPresent := present[d]
			if wasPresent {
				start = reported
			}
			switch took := time.Since(start); {
			case wasPresent && took < gcsGrace/2:
				c.w.st.presentRefusals.Add(1)
				c.w.fail("client %d: %s refused %v after a HEAD or mount reported its blob %s present (the client skipped the upload; docker does not retry): %s",
					c.id, m.kind, took.Round(time.Millisecond), d, r)
				return false
			case took < gcsGrace/2:
				c.w.fail("client %d: %s refused %v after its blobs were uploaded, well within the %v grace period: %s", c.id, m.kind, took.Round(time.Millisecond), gcsGrace, r)
				return false
			default:
				c.w.st.slowRetries.Add(1)
				continue
			}
		}
		c.w.fail("client %d: pushing %s %s@%s as %s: %s", c.id, m.kind, m.repo, m.digest, ref, r)
		return false
	}
	c.w.fail("client %d: gave up pushing %s@%s after 5 refusals", c.id, m.repo, m.digest)
	return false
}

// ---- operations ----

func (c *gcsClient) opPushImage(repo string) {
	m := c.newImage(repo)
	tag := c.pickTag(repo)
	c.beginChange(repo)
	ok := c.push(m, tag)
	c.endChange(repo, func() {
		if ok {
			c.acked(m)
			c.setTag(repo, tag, m)
		}
	})
	if ok {
		c.w.st.pushes.Add(1)
	}
}

// opPushIndex pushes two images by digest and an index of them by tag.
func (c *gcsClient) opPushIndex(repo string) {
	children := []*gcsManifest{c.newImage(repo), c.newImage(repo)}
	var first time.Time
	for i, ch := range children {
		ch.child = true
		if i == 0 {
			first = time.Now()
		}
		if !c.push(ch, ch.digest) {
			return
		}
		c.mu.Lock()
		c.acked(ch)
		ch.gone = true // unreachable until the index is pushed
		c.mu.Unlock()
	}
	idx := c.newIndex(repo, children...)
	tag := c.pickTag(repo)
	c.beginChange(repo)
	r, err := c.putManifest(idx, tag)
	ok := err == nil && r.status == http.StatusCreated && r.header.Get("Docker-Content-Digest") == idx.digest
	c.endChange(repo, func() {
		if ok {
			c.acked(idx)
			c.setTag(repo, tag, idx)
		}
	})
	switch {
	case ok:
		c.w.st.indexes.Add(1)
	case err != nil:
		c.w.fail("client %d: %v", c.id, err)
	case r.status == http.StatusBadRequest && r.errCode() == "MANIFEST_BLOB_UNKNOWN" && time.Since(first) >= gcsGrace/2:
		c.w.st.slowRetries.Add(1)
	default:
		c.w.fail("client %d: pushing index %s:%s %v after its children: %s", c.id, repo, tag, time.Since(first).Round(time.Millisecond), r)
	}
}

// opPushReferrer pushes a referrer of one of the client's reachable images.
func (c *gcsClient) opPushReferrer(repo string) {
	c.mu.Lock()
	var subjects []*gcsManifest
	for m := range c.reachable(repo) {
		if m.kind == "image" {
			subjects = append(subjects, m)
		}
	}
	c.mu.Unlock()
	if len(subjects) == 0 {
		c.opPushImage(repo)
		return
	}
	slices.SortFunc(subjects, func(a, b *gcsManifest) int { return strings.Compare(a.digest, b.digest) })
	ref := c.newReferrer(gcsPick(c.rng, subjects))
	c.beginChange(repo)
	ok := c.push(ref, ref.digest)
	c.endChange(repo, func() {
		if ok {
			c.acked(ref)
		}
	})
	if ok {
		c.w.st.referrers.Add(1)
	}
}

// opRetag PUTs an image or index the client pushed before under a tag. A
// reachable one must be accepted; an unreachable one may have been
// collected.
func (c *gcsClient) opRetag(repo string) {
	c.mu.Lock()
	live := c.reachable(repo)
	var cands []*gcsManifest
	for _, m := range c.manifests[repo] {
		if m.kind != "referrer" && (live[m] || c.rng.IntN(10) < 3) {
			cands = append(cands, m)
		}
	}
	c.mu.Unlock()
	if len(cands) == 0 {
		c.opPushImage(repo)
		return
	}
	m := gcsPick(c.rng, cands)
	wasLive := live[m]
	tag := c.pickTag(repo)
	c.beginChange(repo)
	r, err := c.putManifest(m, tag)
	ok := err == nil && r.status == http.StatusCreated && r.header.Get("Docker-Content-Digest") == m.digest
	c.endChange(repo, func() {
		if ok {
			c.acked(m)
			c.setTag(repo, tag, m)
		}
	})
	switch {
	case ok:
		c.w.st.retags.Add(1)
	case err != nil:
		c.w.fail("client %d: %v", c.id, err)
	case !wasLive && r.status == http.StatusBadRequest && (r.errCode() == "MANIFEST_BLOB_UNKNOWN" || r.errCode() == "MANIFEST_UNKNOWN"):
		c.w.st.retagsRefused.Add(1)
	default:
		c.w.fail("client %d: re-tagging %s %s@%s (reachable: %v) as %s: %s", c.id, m.kind, repo, m.digest, wasLive, tag, r)
	}
}

// opDeleteTag deletes one of the client's tags.
func (c *gcsClient) opDeleteTag() {
	c.mu.Lock()
	var refs []string
	for repo, ts := range c.tags {
		for tag := range ts {
			refs = append(refs, repo+":"+tag)
		}
	}
	c.mu.Unlock()
	if len(refs) == 0 {
		return
	}
	sort.Strings(refs)
	repo, tag, _ := strings.Cut(gcsPick(c.rng, refs), ":")
	c.beginChange(repo)
	r, err := c.w.api.do(http.MethodDelete, "/v2/"+repo+"/manifests/"+tag, nil)
	ok := err == nil && r.status == http.StatusAccepted
	c.endChange(repo, func() {
		if ok {
			c.dropTag(repo, tag)
		}
	})
	if ok {
		c.w.st.tagDeletes.Add(1)
	} else {
		c.w.fail("client %d: deleting its tag %s:%s: %v %v", c.id, repo, tag, r, err)
	}
}

// opDeleteDigest deletes one of the client's manifests (not an index
// child) by digest, with its tags.
func (c *gcsClient) opDeleteDigest(repo string) {
	c.mu.Lock()
	live := c.reachable(repo)
	var cands []*gcsManifest
	for _, m := range c.manifests[repo] {
		if !m.child && (live[m] || c.rng.IntN(10) < 2) {
			cands = append(cands, m)
		}
	}
	c.mu.Unlock()
	if len(cands) == 0 {
		return
	}
	m := gcsPick(c.rng, cands)
	wasLive := live[m]
	c.beginChange(repo)
	r, err := c.w.api.do(http.MethodDelete, "/v2/"+repo+"/manifests/"+m.digest, nil)
	ok := err == nil && (r.status == http.StatusAccepted || !wasLive && r.status == http.StatusNotFound)
	c.endChange(repo, func() {
		if ok {
			for tag, tm := range c.tags[repo] {
				if tm == m {
					c.dropTag(repo, tag)
				}
			}
			m.gone = true
		}
	})
	switch {
	case !ok:
		c.w.fail("client %d: deleting %s %s@%s (reachable: %v): %v %v", c.id, m.kind, repo, m.digest, wasLive, r, err)
	case r.status == http.StatusNotFound:
		c.w.st.digestDeletesGone.Add(1)
	default:
		c.w.st.digestDeletes.Add(1)
	}
}

// opPullOwn pulls one of the client's tags, which must work in full, and
// checks the referrers it keeps.
func (c *gcsClient) opPullOwn() {
	c.mu.Lock()
	type pick struct {
		repo, tag string
		m         *gcsManifest
	}
	var picks []pick
	for repo, ts := range c.tags {
		for tag, m := range ts {
			picks = append(picks, pick{repo, tag, m})
		}
	}
	if len(picks) == 0 {
		c.mu.Unlock()
		return
	}
	slices.SortFunc(picks, func(a, b pick) int { return strings.Compare(a.repo+":"+a.tag, b.repo+":"+b.tag) })
	p := gcsPick(c.rng, picks)
	var refs []string
	live := c.reachable(p.repo)
	for m := range live {
		if m.kind == "referrer" && m.subject == p.m {
			refs = append(refs, m.digest)
		}
	}
	c.mu.Unlock()
	c.w.st.ownPulls.Add(1)
	if err := c.w.pullManifest(p.repo, p.tag, p.m, false); err != nil {
		c.w.fail("client %d: pulling its own %s %s:%s (%s): %v", c.id, p.m.kind, p.repo, p.tag, p.m.digest, err)
		return
	}
	if len(refs) > 0 {
		got, err := c.w.referrers(p.repo, p.m.digest)
		if err != nil {
			c.w.fail("client %d: %v", c.id, err)
			return
		}
		for _, d := range refs {
			if !slices.Contains(got, d) {
				c.w.fail("client %d: referrers of its %s:%s (%s) lack its referrer %s: %v", c.id, p.repo, p.tag, p.m.digest, d, got)
			}
		}
	}
}

// opPullForeign pulls another client's tag, which may have moved or gone;
// what is served must still be what some client pushed.
func (c *gcsClient) opPullForeign() {
	c.w.mu.Lock()
	var refs []string
	for ref, m := range c.w.tags {
		if m.owner != c {
			refs = append(refs, ref)
		}
	}
	c.w.mu.Unlock()
	if len(refs) == 0 {
		return
	}
	sort.Strings(refs)
	repo, tag, _ := strings.Cut(gcsPick(c.rng, refs), ":")
	c.w.st.foreignPulls.Add(1)
	r, err := c.w.api.do(http.MethodGet, "/v2/"+repo+"/manifests/"+tag, nil, "Accept", allManifestTypes)
	if err != nil {
		c.w.fail("client %d: %v", c.id, err)
		return
	}
	if r.status == http.StatusNotFound {
		c.w.st.foreignMisses.Add(1)
		return
	}
	if r.status != http.StatusOK {
		c.w.fail("client %d: %s, want 200 or 404", c.id, r)
		return
	}
	d := sha256Digest(r.body)
	c.w.mu.Lock()
	m := c.w.known[repo+"@"+d]
	c.w.mu.Unlock()
	if m == nil || r.header.Get("Docker-Content-Digest") != d {
		c.w.fail("client %d: %s:%s served a manifest no client built (%s, Docker-Content-Digest %q)", c.id, repo, tag, d, r.header.Get("Docker-Content-Digest"))
		return
	}
	if err := c.w.pullManifest(repo, d, m, true); err != nil {
		c.w.fail("client %d: pulling %s@%s (was %s): %v", c.id, repo, d, tag, err)
	}
}

// ---- pulling ----

// pullManifest GETs repo:ref, checks it is m byte for byte, and pulls
// its children and blobs, verifying every digest. With lenient, content
// that is not found is skipped (it may have been deleted meanwhile), but
// content served must still be right.
func (w *gcsWorld) pullManifest(repo, ref string, m *gcsManifest, lenient bool) error {
	r, err := w.api.do(http.MethodGet, "/v2/"+repo+"/manifests/"+ref, nil, "Accept", allManifestTypes)
	if err != nil {
		return err
	}
	if lenient && r.status == http.StatusNotFound {
		w.st.foreignBlobMisses.Add(1)
		return nil
	}
	if r.status != http.StatusOK {
		return fmt.Errorf("%s", r)
	}
	if !bytes.Equal(r.body, m.body) || r.header.Get("Docker-Content-Digest") != m.digest || r.header.Get("Content-Type") != m.mediaType {
		return fmt.Errorf("%s: got %d bytes hashing to %s (Docker-Content-Digest %q, Content-Type %q), want the %d-byte %s %s",
			r, len(r.body), sha256Digest(r.body), r.header.Get("Docker-Content-Digest"), r.header.Get("Content-Type"), len(m.body), m.mediaType, m.digest)
	}
	for _, ch := range m.children {
		if err := w.pullManifest(repo, ch.digest, ch, lenient); err != nil {
			return fmt.Errorf("child %s: %w", ch.digest, err)
		}
	}
	for _, b := range m.blobs {
		r, err := w.api.do(http.MethodGet, "/v2/"+repo+"/blobs/"+b.digest, nil)
		if err != nil {
			return err
		}
		if lenient && r.status == http.StatusNotFound {
			w.st.foreignBlobMisses.Add(1)
			continue
		}
		if r.status != http.StatusOK {
			return fmt.Errorf("blob: %s", r)
		}
		if got := sha256Digest(r.body); got != b.digest || len(r.body) != b.size {
			return fmt.Errorf("blob %s: got %d bytes hashing to %s, want %d bytes", b.digest, len(r.body), got, b.size)
		}
		w.st.blobsPulled.Add(1)
	}
	return nil
}

// referrers lists the digests of the referrers of repo@d.
func (w *gcsWorld) referrers(repo, d string) ([]string, error) {
	r, err := w.api.do(http.MethodGet, "/v2/"+repo+"/referrers/"+d, nil)
	if err != nil {
		return nil, err
	}
	var idx struct {
		Manifests []gcsDesc `json:"manifests"`
	}
	if r.status != http.StatusOK || json.Unmarshal(r.body, &idx) != nil {
		return nil, fmt.Errorf("referrers: %s", r)
	}
	var out []string
	for _, m := range idx.Manifests {
		out = append(out, m.Digest)
	}
	return out, nil
}

// list follows a paginated tags or catalog listing.
func (w *gcsWorld) list(first, field string) ([]string, error) {
	var all []string
	for next, pages := first, 0; next != ""; pages++ {
		if pages > 1000 {
			return nil, fmt.Errorf("listing %s does not end", first)
		}
		r, err := w.api.do(http.MethodGet, next, nil)
		if err != nil {
			return nil, err
		}
		if r.status == http.StatusNotFound && field == "tags" {
			return nil, nil // no such repository (any more)
		}
		var page map[string]json.RawMessage
		var items []string
		if r.status != http.StatusOK || json.Unmarshal(r.body, &page) != nil || json.Unmarshal(page[field], &items) != nil {
			return nil, fmt.Errorf("listing: %s", r)
		}
		all = append(all, items...)
		next = ""
		if link := r.header.Get("Link"); link != "" {
			if l, rest, ok := strings.Cut(link, ">"); ok && strings.Contains(rest, `rel="next"`) {
				next = strings.TrimPrefix(strings.TrimSpace(l), "<")
			}
		}
	}
	return all, nil
}

// ---- final checks ----

// gcsLive is what the registry's tags keep alive.
type gcsLive struct {
	tags      int
	manifests map[string]bool // repo@digest
	blobs     map[string]bool // digest
}

// checkRegistry compares the registry's tags with the clients' (they must
// be the same), pulls every tagged manifest in full, and walks children
// and referrers to find every reachable manifest and referenced blob.
func (w *gcsWorld) checkRegistry(when string) *gcsLive {
	t := w.t
	live := &gcsLive{manifests: map[string]bool{}, blobs: map[string]bool{}}
	want := map[string]*gcsManifest{}
	for _, c := range w.clients {
		c.mu.Lock()
		for repo, ts := range c.tags {
			for tag, m := range ts {
				want[repo+":"+tag] = m
			}
		}
		c.mu.Unlock()
	}
	catalog, err := w.list("/v2/_catalog?n=2", "repositories")
	if err != nil {
		t.Errorf("%s: catalog: %v", when, err)
	}
	got := map[string]bool{}
	for _, repo := range catalog {
		if !slices.Contains(w.repos, repo) {
			t.Errorf("%s: the catalog lists %q, which no client pushed to", when, repo)
			continue
		}
		tags, err := w.list("/v2/"+repo+"/tags/list?n=50", "tags")
		if err != nil {
			t.Errorf("%s: tags of %s: %v", when, repo, err)
		}
		for _, tag := range tags {
			got[repo+":"+tag] = true
		}
	}
	for ref, m := range want {
		if !got[ref] {
			t.Errorf("%s: acknowledged tag %s (%s %s) is not listed (catalog %v)", when, ref, m.kind, m.digest, catalog)
		}
	}
	seen := map[string]bool{}
	for _, ref := range slices.Sorted(maps.Keys(got)) {
		m := want[ref]
		if m == nil {
			t.Errorf("%s: the registry lists tag %s, which no client holds", when, ref)
			continue
		}
		live.tags++
		repo, tag, _ := strings.Cut(ref, ":")
		if err := w.pullManifest(repo, tag, m, false); err != nil {
			t.Errorf("%s: pulling %s %s (%s): %v", when, m.kind, ref, m.digest, err)
			continue
		}
		w.walk(repo, m.digest, live, seen, when)
	}
	// What the clients keep reachable is there.
	for _, c := range w.clients {
		c.mu.Lock()
		for _, repo := range w.repos {
			for m := range c.reachable(repo) {
				if !live.manifests[repo+"@"+m.digest] {
					t.Errorf("%s: client %d's reachable %s %s@%s is not reachable in the registry", when, c.id, m.kind, repo, m.digest)
				}
			}
		}
		c.mu.Unlock()
	}
	return live
}

// walk records repo@d as reachable, its blobs as referenced, and walks its
// children and referrers.
func (w *gcsWorld) walk(repo, d string, live *gcsLive, seen map[string]bool, when string) {
	key := repo + "@" + d
	if seen[key] {
		return
	}
	seen[key] = true
	live.manifests[key] = true
	r, err := w.api.do(http.MethodGet, "/v2/"+repo+"/manifests/"+d, nil, "Accept", allManifestTypes)
	if err != nil || r.status != http.StatusOK || sha256Digest(r.body) != d {
		w.t.Errorf("%s: reachable manifest %s: %v %v", when, key, r, err)
		return
	}
	var m struct {
		Config    *gcsDesc  `json:"config"`
		Layers    []gcsDesc `json:"layers"`
		Manifests []gcsDesc `json:"manifests"`
	}
	if err := json.Unmarshal(r.body, &m); err != nil {
		w.t.Errorf("%s: %s: %v", when, key, err)
		return
	}
	blobs := m.Layers
	if m.Config != nil {
		blobs = append(blobs, *m.Config)
	}
	for _, b := range blobs {
		if live.blobs[b.Digest] {
			continue
		}
		live.blobs[b.Digest] = true
		br, err := w.api.do(http.MethodGet, "/v2/"+repo+"/blobs/"+b.Digest, nil)
		if err != nil || br.status != http.StatusOK || sha256Digest(br.body) != b.Digest || len(br.body) != b.Size {
			w.t.Errorf("%s: blob %s of reachable manifest %s: %v %v", when, b.Digest, key, br, err)
		}
	}
	for _, ch := range m.Manifests {
		w.walk(repo, ch.Digest, live, seen, when)
	}
	refs, err := w.referrers(repo, d)
	if err != nil {
		w.t.Errorf("%s: %v", when, err)
	}
	for _, rd := range refs {
		w.walk(repo, rd, live, seen, when)
	}
}

// checkUnreachableGone checks that every manifest pushed but no longer
// reachable was collected, and returns how many it checked.
func (w *gcsWorld) checkUnreachableGone(reachable map[string]bool) int {
	w.mu.Lock()
	var gone []*gcsManifest
	for key, m := range w.known {
		if m.acked && !reachable[key] {
			gone = append(gone, m)
		}
	}
	w.mu.Unlock()
	for _, m := range gone {
		r, err := w.api.do(http.MethodGet, "/v2/"+m.repo+"/manifests/"+m.digest, nil, "Accept", allManifestTypes)
		if err != nil || r.status != http.StatusNotFound {
			w.t.Errorf("unreachable %s %s@%s is still served after the final collection: %v %v", m.kind, m.repo, m.digest, r, err)
		}
	}
	return len(gone)
}

// describeBlob says what the clients used a blob for, for reports.
func (w *gcsWorld) describeBlob(d string) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var uses []string
	for _, m := range w.known {
		for _, b := range m.blobs {
			if b.digest == d {
				uses = append(uses, fmt.Sprintf("%s %s@%s acked=%v gone=%v", m.kind, m.repo, m.digest[:19], m.acked, m.gone))
			}
		}
	}
	if len(uses) == 0 {
		return "used by no manifest built"
	}
	sort.Strings(uses)
	return "in " + strings.Join(gcsFirst(uses, 3), ", ")
}

// gcsDiskBlobs returns the blob files under dir by digest, with their
// sizes, and checks that each hashes to its name.
func gcsDiskBlobs(t *testing.T, dir string) map[string]int64 {
	out := map[string]int64{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		name := "sha256:" + d.Name()
		if got := sha256Digest(data); got != name {
			t.Errorf("blob file %s holds content hashing to %s", path, got)
		}
		out[name] = int64(len(data))
		return nil
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	return out
}

// logStats logs what the load did.
func (w *gcsWorld) logStats(d time.Duration) {
	s := &w.st
	w.t.Logf("load of %v with %d clients on %d repositories:", d, gcsClients, gcsRepoCount)
	w.t.Logf("  pushes acknowledged: %d images, %d indexes, %d referrers; %d blob uploads (%d mounted, %d mounts fell back to uploads, %d chunked, %d one PATCH, %d monolithic); %d HEADs found the blob",
		s.pushes.Load(), s.indexes.Load(), s.referrers.Load(), s.uploads.Load(), s.mounts.Load(), s.mountFallbacks.Load(), s.chunked.Load(), s.streamed.Load(), s.monolithic.Load(), s.headHits.Load())
	w.t.Logf("  manifest pushes refused: %d for a blob a HEAD or mount had reported present (must be 0); %d slow ones retried (past half the grace period)",
		s.presentRefusals.Load(), s.slowRetries.Load())
	w.t.Logf("  re-tags: %d acknowledged, %d refused (unreachable, collected); deletes: %d tags, %d manifests by digest (+%d already collected)",
		s.retags.Load(), s.retagsRefused.Load(), s.tagDeletes.Load(), s.digestDeletes.Load(), s.digestDeletesGone.Load())
	w.t.Logf("  pulls: %d of own tags, %d of other clients' tags (%d missed: moved or deleted; %d parts missing), %d blobs verified",
		s.ownPulls.Load(), s.foreignPulls.Load(), s.foreignMisses.Load(), s.foreignBlobMisses.Load(), s.blobsPulled.Load())
	w.gcMu.Lock()
	var durs []time.Duration
	for _, r := range w.gcRuns {
		durs = append(durs, r.end.Sub(r.start))
	}
	w.gcMu.Unlock()
	slices.Sort(durs)
	med, maxD := time.Duration(0), time.Duration(0)
	if len(durs) > 0 {
		med, maxD = durs[len(durs)/2], durs[len(durs)-1]
	}
	w.t.Logf("  collections: %d real, %d dry (request time median %v, max %v); removed %d manifests, %d blob links, %d blobs, %d bytes",
		s.gcRuns.Load(), s.gcDryRuns.Load(), med.Round(time.Microsecond), maxD.Round(time.Microsecond),
		s.gcManifests.Load(), s.gcUnlinked.Load(), s.gcBlobs.Load(), s.gcBytes.Load())
}

// ---- small helpers ----

func gcsPick[T any](r *rand.Rand, xs []T) T { return xs[r.IntN(len(xs))] }

func gcsFirst[T any](xs []T, n int) []T {
	if len(xs) > n {
		return xs[:n]
	}
	return xs
}
