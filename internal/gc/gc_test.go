package gc

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/blobstore"
	"github.com/berth-registry/berth/internal/errcode"
	"github.com/berth-registry/berth/internal/metadata"
	"github.com/berth-registry/berth/internal/reference"
	"github.com/berth-registry/berth/internal/registry"
	"github.com/berth-registry/berth/internal/retention"
	"github.com/berth-registry/berth/internal/testserver"
)

func TestMain(m *testing.M) { os.Exit(testserver.Main(m)) }

// onPostgres makes newEnv use a fresh PostgreSQL database instead of
// SQLite; TestOnPostgres runs every test of this file with it.
var onPostgres bool

// TestOnPostgres runs the collector's tests, races included, with the
// metadata in a real PostgreSQL server.
func TestOnPostgres(t *testing.T) {
	onPostgres = true
	defer func() { onPostgres = false }()
	for name, fn := range map[string]func(*testing.T){
		"CollectAndDryRunAgree":                 TestCollectAndDryRunAgree,
		"IndexAndReferrersKeepWhatTheyNeed":     TestIndexAndReferrersKeepWhatTheyNeed,
		"ManifestPushRacingTheSweep":            TestManifestPushRacingTheSweep,
		"MountRacingTheSweep":                   TestMountRacingTheSweep,
		"UploadForAManifestNotPushedYet":        TestUploadForAManifestNotPushedYet,
		"RetentionSparesTagPushedAfterDecision": TestRetentionSparesTagPushedAfterItsDecision,
		"HeadKeepsOldUnusedLinkAlive":           TestHeadKeepsAnOldUnusedLinkAlive,
		"PullerHeadKeepsNothing":                TestPullerHeadKeepsNothing,
		"HeadRacingTheSweep":                    TestHeadRacingTheSweep,
		"MountKeepsOldUnusedLinkAlive":          TestMountKeepsAnOldUnusedLinkAlive,
	} {
		t.Run(name, fn)
	}
}

type env struct {
	t     *testing.T
	ctx   context.Context
	dir   string
	meta  *metadata.SQL
	blobs *blobstore.FS
	svc   *registry.Service
	gc    *Collector
	clock time.Time
	// raw is a second connection to the metadata database, for tests
	// that make content old in real time; postgres says which SQL it speaks.
	raw      *sql.DB
	postgres bool
}

func newEnv(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	blobs, err := blobstore.NewFS(dir)
	if err != nil {
		t.Fatal(err)
	}
	var meta *metadata.SQL
	var raw *sql.DB
	if onPostgres {
		dsn := testserver.PostgresDSN(t)
		meta, err = metadata.OpenPostgres(context.Background(), dsn, 10)
		if err == nil {
			raw, err = sql.Open("pgx", dsn)
		}
	} else {
		path := filepath.Join(dir, "berth.db")
		meta, err = metadata.OpenSQLite(context.Background(), path)
		if err == nil {
			raw, err = sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close(); meta.Close() })
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	// The service's default grace period (1h) is the collector's.
	svc := registry.New(meta, blobs, registry.Options{}, log)
	e := &env{t: t, ctx: context.Background(), dir: dir, meta: meta, blobs: blobs, svc: svc, clock: time.Now(), raw: raw, postgres: onPostgres}
	e.gc = New(meta, blobs, svc.Locks(), time.Hour, log)
	e.gc.now = func() time.Time { return e.clock }
	return e
}

// later moves the collector's clock past the grace period.
func (e *env) later() { e.clock = time.Now().Add(2 * time.Hour) }

func (e *env) blob(repo, content string) (reference.Digest, int64) {
	e.t.Helper()
	d := reference.SHA256.FromBytes([]byte(content))
	if err := e.svc.PutBlob(e.ctx, repo, d, registry.Chunk{Body: strings.NewReader(content), Start: -1, Length: int64(len(content))}, ""); err != nil {
		e.t.Fatal(err)
	}
	return d, int64(len(content))
}

func (e *env) manifest(repo, ref string, extra string, blobs ...reference.Digest) reference.Digest {
	e.t.Helper()
	var layers []string
	for _, b := range blobs[1:] {
		size, _ := e.svc.StatBlob(e.ctx, repo, b, true)
		layers = append(layers, fmt.Sprintf(`{"mediaType":"application/octet-stream","digest":"%s","size":%d}`, b, size))
	}
	csize, _ := e.svc.StatBlob(e.ctx, repo, blobs[0], true)
	body := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},"layers":[%s]%s}`,
		blobs[0], csize, strings.Join(layers, ","), extra)
	if ref == "" { // untagged: push by digest
		ref = string(reference.SHA256.FromBytes([]byte(body)))
	}
	res, err := e.svc.PutManifest(e.ctx, repo, ref, "application/vnd.oci.image.manifest.v1+json", strings.NewReader(body), nil)
	if err != nil {
		e.t.Fatalf("put manifest %s:%s: %v", repo, ref, err)
	}
	return res.Digest
}

// diskBytes sums the sizes of the blob files on disk.
func (e *env) diskBytes() int64 {
	var n int64
	_ = filepath.WalkDir(filepath.Join(e.dir, "blobs"), func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

func (e *env) pulls(repo, ref string) bool {
	m, err := e.svc.GetManifest(e.ctx, repo, ref)
	if err != nil {
		return false
	}
	var refs []string
	for _, part := range strings.Split(string(m.Payload), `"digest":"`)[1:] {
		refs = append(refs, part[:strings.Index(part, `"`)])
	}
	for _, d := range refs {
		c, _, err := e.svc.OpenBlob(e.ctx, repo, reference.Digest(d))
		if err != nil {
			if _, merr := e.svc.GetManifest(e.ctx, repo, d); merr == nil {
				continue // a child or subject manifest, not a blob
			}
			return false
		}
		b, _ := io.ReadAll(c)
		c.Close()
		if reference.SHA256.FromBytes(b) != reference.Digest(d) {
			return false
		}
	}
	return true
}

func TestCollectAndDryRunAgree(t *testing.T) {
	e := newEnv(t)
	cfg, _ := e.blob("r", `{"os":"linux"}`)
	keep, _ := e.blob("r", "kept layer")
	drop, dropSize := e.blob("r", "dropped layer, only in the untagged manifest")
	stray, straySize := e.blob("r", "uploaded, never used")
	e.manifest("r", "v1", "", cfg, keep)
	old := e.manifest("r", "v2", "", cfg, drop)
	if err := e.svc.DeleteManifest(e.ctx, "r", "v2"); err != nil { // untag: the manifest is now garbage
		t.Fatal(err)
	}

	// Within the grace period nothing goes.
	if r, err := e.gc.Run(e.ctx, false); err != nil || len(r.Manifests) != 0 || r.Blobs != 0 {
		t.Fatalf("fresh content collected: %+v %v", r, err)
	}
	e.later()
	dry, err := e.gc.Run(e.ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(dry.Manifests) != 1 || dry.Manifests[0].Digest != old || dry.Blobs != 2 || dry.Bytes != dropSize+straySize {
		t.Fatalf("dry run = %+v, want manifest %s and blobs of %d bytes", dry, old, dropSize+straySize)
	}
	before := e.diskBytes()
	tot := e.gc.Totals()
	runs0, bytes0 := tot.Runs.Load(), tot.Bytes.Load()
	real, err := e.gc.Run(e.ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(real.Manifests) != len(dry.Manifests) || real.Manifests[0] != dry.Manifests[0] || real.Blobs != dry.Blobs || real.Bytes != dry.Bytes || real.Unlinked != dry.Unlinked {
		t.Fatalf("real run %+v differs from dry run %+v", real, dry)
	}
	if freed := before - e.diskBytes(); freed != real.Bytes {
		t.Fatalf("disk shrank by %d bytes, report says %d", freed, real.Bytes)
	}
	if tot.Runs.Load() != runs0+1 || tot.Bytes.Load() != bytes0+real.Bytes {
		t.Fatalf("totals: runs %d -> %d, bytes %d -> %d; the run freed %d", runs0, tot.Runs.Load(), bytes0, tot.Bytes.Load(), real.Bytes)
	}
	if !e.pulls("r", "v1") {
		t.Fatal("tagged image no longer pulls")
	}
	for _, d := range []reference.Digest{drop, stray} {
		if _, err := e.blobs.Stat(e.ctx, d); err == nil {
			t.Errorf("blob %s still on disk", d)
		}
	}
	if again, _ := e.gc.Run(e.ctx, true); len(again.Manifests)+again.Blobs+again.Unlinked != 0 {
		t.Fatalf("second run still finds garbage: %+v", again)
	}
}

func TestIndexAndReferrersKeepWhatTheyNeed(t *testing.T) {
	e := newEnv(t)
	cfg, _ := e.blob("r", `{"os":"linux"}`)
	layer, _ := e.blob("r", "layer")
	child := e.manifest("r", "", "", cfg, layer)
	csize := int64(len(mustManifest(t, e, "r", string(child))))
	idx := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":%d}]}`, child, csize)
	if _, err := e.svc.PutManifest(e.ctx, "r", "multi", "application/vnd.oci.image.index.v1+json", strings.NewReader(idx), nil); err != nil {
		t.Fatal(err)
	}
	sig, _ := e.blob("r", "signature")
	subject := fmt.Sprintf(`,"subject":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":%d}`, child, csize)
	referrer := e.manifest("r", "", subject, cfg, sig)
	// A referrer of a manifest that goes away goes too.
	other, _ := e.blob("r", "another layer")
	orphanTarget := e.manifest("r", "gone", "", cfg, other)
	otSize := int64(len(mustManifest(t, e, "r", string(orphanTarget))))
	orphan := e.manifest("r", "", fmt.Sprintf(`,"subject":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":%d}`, orphanTarget, otSize), cfg, sig)
	if err := e.svc.DeleteManifest(e.ctx, "r", "gone"); err != nil {
		t.Fatal(err)
	}
	e.later()
	r, err := e.gc.Run(e.ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	got := map[reference.Digest]bool{}
	for _, m := range r.Manifests {
		got[m.Digest] = true
	}
	if got[child] || got[referrer] || !got[orphanTarget] || !got[orphan] || len(got) != 2 {
		t.Fatalf("collected %v; want exactly the untagged target and its referrer", r.Manifests)
	}
	if !e.pulls("r", string(child)) || !e.pulls("r", string(referrer)) {
		t.Fatal("index child or live referrer lost content")
	}
}

// TestManifestPushRacingTheSweep: a blob the sweep found unused is linked
// again and used by a new manifest before the collector deletes it; the
// collector must leave it.
func TestManifestPushRacingTheSweep(t *testing.T) {
	e := newEnv(t)
	cfg, _ := e.blob("r", `{"os":"linux"}`)
	layer, _ := e.blob("r", "layer pushed long ago, unused")
	e.manifest("r", "base", "", cfg)
	e.later()
	e.gc.beforeBlobs = func() {
		// The sweep has unlinked the layer; a client pushes it again and
		// then a manifest that uses it.
		if _, err := e.svc.StatBlob(e.ctx, "r", layer, true); err == nil {
			t.Error("the sweep did not unlink the unused layer")
		}
		e.blob("r", "layer pushed long ago, unused")
		e.manifest("r", "v1", "", cfg, layer)
	}
	r, err := e.gc.Run(e.ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if r.Blobs != 0 {
		t.Fatalf("collector deleted %d blobs linked again meanwhile", r.Blobs)
	}
	if !e.pulls("r", "v1") {
		t.Fatal("the manifest pushed during the sweep does not pull")
	}
}

// TestMountRacingTheSweep: a mount lands between the sweep and the blob's
// deletion; the blob must survive and pull from the new repository.
func TestMountRacingTheSweep(t *testing.T) {
	e := newEnv(t)
	d, size := e.blob("a", "shared layer")
	e.later()
	e.gc.beforeBlobs = func() {
		// The mount checked the source before the sweep; its link lands now.
		if err := e.meta.LinkBlob(e.ctx, "b", d, size, ""); err != nil {
			t.Error(err)
		}
	}
	r, err := e.gc.Run(e.ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if r.Blobs != 0 {
		t.Fatalf("collector deleted a blob mounted meanwhile: %+v", r)
	}
	c, _, err := e.svc.OpenBlob(e.ctx, "b", d)
	if err != nil {
		t.Fatalf("mounted blob unreadable: %v", err)
	}
	b, _ := io.ReadAll(c)
	c.Close()
	if !bytes.Equal(b, []byte("shared layer")) {
		t.Fatal("mounted blob content changed")
	}
}

// TestUploadForAManifestNotPushedYet: within the grace period a blob with
// no manifest is kept, and the manifest pushed later succeeds.
func TestUploadForAManifestNotPushedYet(t *testing.T) {
	e := newEnv(t)
	cfg, _ := e.blob("r", `{"os":"linux"}`)
	layer, _ := e.blob("r", "layer of an image being pushed")
	r, err := e.gc.Run(e.ctx, false)
	if err != nil || r.Blobs != 0 || r.Unlinked != 0 {
		t.Fatalf("gc during the push removed %+v (%v)", r, err)
	}
	e.manifest("r", "v1", "", cfg, layer)
	if !e.pulls("r", "v1") {
		t.Fatal("image pushed across a gc does not pull")
	}
	// A manifest referring to a blob the sweep removed is refused, never
	// acknowledged with a missing blob.
	orphan, _ := e.blob("r", "abandoned")
	e.later()
	if _, err := e.gc.Run(e.ctx, false); err != nil {
		t.Fatal(err)
	}
	body := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":14},"layers":[{"mediaType":"application/octet-stream","digest":"%s","size":9}]}`, cfg, orphan)
	_, err = e.svc.PutManifest(e.ctx, "r", "late", "application/vnd.oci.image.manifest.v1+json", strings.NewReader(body), nil)
	if errcode.As(err).Code != errcode.ManifestBlobUnknown {
		t.Fatalf("manifest referring to a collected blob: %v, want MANIFEST_BLOB_UNKNOWN", err)
	}
}

func mustManifest(t *testing.T, e *env, repo, ref string) []byte {
	m, err := e.svc.GetManifest(e.ctx, repo, ref)
	if err != nil {
		t.Fatal(err)
	}
	return m.Payload
}

// TestRetentionSparesTagPushedAfterItsDecision: retention decides to delete
// a tag, then a client pushes that tag again before the sweep applies the
// decision; the fresh push must survive, while the other decision holds.
func TestRetentionSparesTagPushedAfterItsDecision(t *testing.T) {
	e := newEnv(t)
	e.gc.UseRetention(retention.NewPlanner(e.meta, e.svc.ImmutableTags), e.svc.FlushPulls)
	cfg, _ := e.blob("r", `{"os":"linux"}`)
	e.manifest("r", "old-1", `,"annotations":{"n":"1"}`, cfg)
	e.manifest("r", "old-2", `,"annotations":{"n":"2"}`, cfg)
	e.manifest("r", "new", `,"annotations":{"n":"3"}`, cfg)
	if _, err := e.meta.AddRetentionPolicy(e.ctx, metadata.RetentionPolicy{Repositories: "r", KeepLast: 1}); err != nil {
		t.Fatal(err)
	}
	var repushed reference.Digest
	e.gc.afterPlan = func() {
		repushed = e.manifest("r", "old-1", `,"annotations":{"n":"4"}`, cfg)
	}
	e.later()
	r, err := e.gc.Run(e.ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Tags) != 1 || r.Tags[0].Tag != "old-2" {
		t.Fatalf("retention deleted %+v; want only old-2 (old-1 was pushed again after the decision)", r.Tags)
	}
	m, err := e.svc.GetManifest(e.ctx, "r", "old-1")
	if err != nil || m.Digest != repushed {
		t.Fatalf("old-1 after the run: %v %v, want the re-pushed %s", m, err, repushed)
	}
	if !e.pulls("r", "old-1") || !e.pulls("r", "new") {
		t.Fatal("kept tags do not pull")
	}
}

// rawQ writes q's '?' placeholders as the database under test wants them.
func (e *env) rawQ(q string) string {
	if !e.postgres {
		return q
	}
	for n := 1; strings.Contains(q, "?"); n++ {
		q = strings.Replace(q, "?", fmt.Sprintf("$%d", n), 1)
	}
	return q
}

// age makes a blob and its links in every repository two hours old in
// real time, past the grace period, as if pushed long ago.
func (e *env) age(d reference.Digest) {
	e.t.Helper()
	old := time.Now().Add(-2 * time.Hour).UnixNano()
	for _, q := range []string{
		`UPDATE blobs SET created_at = ? WHERE digest = ?`,
		`UPDATE repository_blobs SET created_at = ? WHERE digest = ?`,
	} {
		if _, err := e.raw.ExecContext(e.ctx, e.rawQ(q), old, string(d)); err != nil {
			e.t.Fatalf("age %s: %v", d, err)
		}
	}
}

// linkedAt returns the time of the link of a blob into repo, 0 without one.
func (e *env) linkedAt(repo string, d reference.Digest) int64 {
	e.t.Helper()
	var at int64
	err := e.raw.QueryRowContext(e.ctx, e.rawQ(`SELECT rb.created_at FROM repository_blobs rb
		JOIN repositories r ON r.id = rb.repository_id WHERE r.name = ? AND rb.digest = ?`), repo, string(d)).Scan(&at)
	if errors.Is(err, sql.ErrNoRows) {
		return 0
	}
	if err != nil {
		e.t.Fatalf("link time of %s in %s: %v", d, repo, err)
	}
	return at
}

// putImage PUTs an image of a config and one layer, given their sizes (the
// client knows them; nothing is asked of the registry first).
func (e *env) putImage(repo, tag string, cfg reference.Digest, cfgSize int64, layer reference.Digest, layerSize int64) error {
	body := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},"layers":[{"mediaType":"application/octet-stream","digest":"%s","size":%d}]}`,
		cfg, cfgSize, layer, layerSize)
	_, err := e.svc.PutManifest(e.ctx, repo, tag, "application/vnd.oci.image.manifest.v1+json", strings.NewReader(body), nil)
	return err
}

// TestHeadKeepsAnOldUnusedLinkAlive: a client HEADs a layer whose link is
// older than the grace period and used by no manifest (its image was
// deleted), is told it exists and skips the upload; a collection runs
// before its manifest PUT. The PUT must succeed (Docker Engine does not
// retry a MANIFEST_BLOB_UNKNOWN): the HEAD made the link young again, in
// one write, and a second HEAD writes nothing.
func TestHeadKeepsAnOldUnusedLinkAlive(t *testing.T) {
	e := newEnv(t)
	cfg, cfgSize := e.blob("r", `{"os":"linux"}`)
	layer, layerSize := e.blob("r", "layer of an image deleted long ago")
	old := e.manifest("r", "old", "", cfg, layer)
	if err := e.svc.DeleteManifest(e.ctx, "r", string(old)); err != nil {
		t.Fatal(err)
	}
	e.age(layer)
	aged := e.linkedAt("r", layer)
	e.clock = time.Now() // the collector runs in real time
	if dry, err := e.gc.Run(e.ctx, true); err != nil || dry.Unlinked != 1 || dry.Blobs != 1 {
		t.Fatalf("dry run = %+v, %v; want the old unused link and its blob", dry, err)
	}

	if size, err := e.svc.StatBlob(e.ctx, "r", layer, true); err != nil || size != layerSize {
		t.Fatalf("HEAD = %d, %v; want %d", size, err, layerSize)
	}
	refreshed := e.linkedAt("r", layer)
	if _, err := e.svc.StatBlob(e.ctx, "r", layer, true); err != nil {
		t.Fatalf("second HEAD: %v", err)
	}
	again := e.linkedAt("r", layer)

	r, err := e.gc.Run(e.ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.putImage("r", "v1", cfg, cfgSize, layer, layerSize); err != nil {
		t.Fatalf("manifest PUT after a HEAD found its layer and a collection ran: %v (collection: %+v)", err, r)
	}
	if r.Unlinked != 0 || r.Blobs != 0 {
		t.Fatalf("the collection removed %d links and %d blobs; the HEAD-found layer must stay", r.Unlinked, r.Blobs)
	}
	if refreshed <= aged {
		t.Fatalf("the HEAD left the link's time at %d", aged)
	}
	if again != refreshed {
		t.Fatalf("a HEAD of a link refreshed just before wrote it again (%d -> %d)", refreshed, again)
	}
	if !e.pulls("r", "v1") {
		t.Fatal("the image does not pull")
	}
}

// TestPullerHeadKeepsNothing: a HEAD by a client that may only pull does
// not refresh a link, so pullers cannot keep unreferenced blobs (and
// their quota) alive by HEADing them.
func TestPullerHeadKeepsNothing(t *testing.T) {
	e := newEnv(t)
	layer, layerSize := e.blob("r", "layer of an image deleted long ago")
	e.age(layer)
	aged := e.linkedAt("r", layer)
	e.clock = time.Now()
	if size, err := e.svc.StatBlob(e.ctx, "r", layer, false); err != nil || size != layerSize {
		t.Fatalf("HEAD = %d, %v; want %d", size, err, layerSize)
	}
	if now := e.linkedAt("r", layer); now != aged {
		t.Fatalf("a puller's HEAD moved the link's time %d -> %d", aged, now)
	}
	r, err := e.gc.Run(e.ctx, false)
	if err != nil || r.Unlinked != 1 || r.Blobs != 1 {
		t.Fatalf("collection = %+v, %v; want the old unused link and its blob gone", r, err)
	}
}

// TestHeadRacingTheSweep: a HEAD whose refresh commits before the sweep's
// transaction keeps the link; a HEAD after the sweep removed the link
// answers BLOB_UNKNOWN and does not make it again, so the blob is
// collected and a manifest using it is refused, never acknowledged.
func TestHeadRacingTheSweep(t *testing.T) {
	e := newEnv(t)
	cfgEarly, cfgEarlySize := e.blob("early", `{"os":"linux"}`)
	early, earlySize := e.blob("early", "old unused layer, HEAD before the sweep")
	cfgLate, cfgLateSize := e.blob("late", `{"os":"linux"}`)
	late, lateSize := e.blob("late", "old unused layer, HEAD after the sweep")
	e.age(early)
	e.age(late)
	e.clock = time.Now()
	e.gc.afterPlan = func() {
		if _, err := e.svc.StatBlob(e.ctx, "early", early, true); err != nil {
			t.Errorf("HEAD before the sweep: %v", err)
		}
	}
	e.gc.beforeBlobs = func() {
		if _, err := e.svc.StatBlob(e.ctx, "late", late, true); errcode.As(err).Code != errcode.BlobUnknown {
			t.Errorf("HEAD after the sweep removed the link: %v, want BLOB_UNKNOWN", err)
		}
		if at := e.linkedAt("late", late); at != 0 {
			t.Errorf("a HEAD after the sweep made the link again (time %d)", at)
		}
	}
	r, err := e.gc.Run(e.ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.putImage("early", "v1", cfgEarly, cfgEarlySize, early, earlySize); err != nil {
		t.Fatalf("manifest PUT after a HEAD that came before the sweep: %v (collection: %+v)", err, r)
	}
	if r.Unlinked != 1 || r.Blobs != 1 {
		t.Fatalf("the collection removed %d links and %d blobs; want only the late layer's", r.Unlinked, r.Blobs)
	}
	if _, err := e.blobs.Stat(e.ctx, late); err == nil {
		t.Fatal("the late layer is still on disk")
	}
	if err := e.putImage("late", "v1", cfgLate, cfgLateSize, late, lateSize); errcode.As(err).Code != errcode.ManifestBlobUnknown {
		t.Fatalf("manifest PUT using the collected layer: %v, want MANIFEST_BLOB_UNKNOWN", err)
	}
	if !e.pulls("early", "v1") {
		t.Fatal("the image does not pull")
	}
}

// TestMountKeepsAnOldUnusedLinkAlive: a mount into a repository that holds
// the blob through an old unused link answers 201 and keeps that link
// alive like a HEAD (one write; a second mount writes nothing), so the
// manifest PUT after a collection succeeds.
func TestMountKeepsAnOldUnusedLinkAlive(t *testing.T) {
	e := newEnv(t)
	d, size := e.blob("a", "layer in two repositories, unused in both")
	e.blob("b", "layer in two repositories, unused in both")
	cfg, cfgSize := e.blob("b", `{"os":"linux"}`)
	e.age(d)
	old := e.linkedAt("b", d)
	e.clock = time.Now()

	if ok, err := e.svc.Mount(e.ctx, "b", d, "a"); err != nil || !ok {
		t.Fatalf("mount = %v, %v", ok, err)
	}
	refreshed := e.linkedAt("b", d)
	if ok, err := e.svc.Mount(e.ctx, "b", d, ""); err != nil || !ok {
		t.Fatalf("second mount = %v, %v", ok, err)
	}
	again := e.linkedAt("b", d)

	r, err := e.gc.Run(e.ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.putImage("b", "v1", cfg, cfgSize, d, size); err != nil {
		t.Fatalf("manifest PUT after a mount found its layer and a collection ran: %v (collection: %+v)", err, r)
	}
	if r.Unlinked != 1 || r.Blobs != 0 || e.linkedAt("a", d) != 0 {
		t.Fatalf("the collection removed %d links and %d blobs; want only the source's old link", r.Unlinked, r.Blobs)
	}
	if refreshed <= old {
		t.Fatalf("the mount left the link's time at %d", old)
	}
	if again != refreshed {
		t.Fatalf("a mount of a link refreshed just before wrote it again (%d -> %d)", refreshed, again)
	}
	if !e.pulls("b", "v1") {
		t.Fatal("the image does not pull")
	}
}
