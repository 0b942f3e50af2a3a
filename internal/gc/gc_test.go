package gc

import (
	"bytes"
	"context"
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
}

func newEnv(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	blobs, err := blobstore.NewFS(dir)
	if err != nil {
		t.Fatal(err)
	}
	var meta *metadata.SQL
	if onPostgres {
		meta, err = metadata.OpenPostgres(context.Background(), testserver.PostgresDSN(t), 10)
	} else {
		meta, err = metadata.OpenSQLite(context.Background(), filepath.Join(dir, "berth.db"))
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { meta.Close() })
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	svc := registry.New(meta, blobs, registry.Options{}, log)
	e := &env{t: t, ctx: context.Background(), dir: dir, meta: meta, blobs: blobs, svc: svc, clock: time.Now()}
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
		size, _ := e.svc.StatBlob(e.ctx, repo, b)
		layers = append(layers, fmt.Sprintf(`{"mediaType":"application/octet-stream","digest":"%s","size":%d}`, b, size))
	}
	csize, _ := e.svc.StatBlob(e.ctx, repo, blobs[0])
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
		if _, err := e.svc.StatBlob(e.ctx, "r", layer); err == nil {
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
