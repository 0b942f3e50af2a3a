package replicate_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/blobstore"
	"github.com/berth-registry/berth/internal/config"
	"github.com/berth-registry/berth/internal/events"
	"github.com/berth-registry/berth/internal/metadata"
	"github.com/berth-registry/berth/internal/reference"
	"github.com/berth-registry/berth/internal/registry"
	"github.com/berth-registry/berth/internal/replicate"
	"github.com/berth-registry/berth/internal/server"
	"github.com/berth-registry/berth/internal/testserver"
	"github.com/berth-registry/berth/internal/upstream"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// local is berth's own registry service with its metadata store.
type local struct {
	svc  *registry.Service
	meta *metadata.SQL
}

func newLocal(t *testing.T) *local {
	t.Helper()
	dir := t.TempDir()
	blobs, err := blobstore.NewFS(dir)
	if err != nil {
		t.Fatal(err)
	}
	meta, err := metadata.OpenSQLite(context.Background(), filepath.Join(dir, "berth.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { meta.Close() })
	svc := registry.New(meta, blobs, registry.Options{MaxManifestSize: 4 << 20, UploadTTL: time.Hour, GCGrace: time.Hour}, quiet)
	return &local{svc: svc, meta: meta}
}

// remote is a registry the tests copy to or from.
type remote struct {
	name, url, user, pass string
	// referrersAPI: the registry lists referrers.
	referrersAPI bool
}

const adminPass = "admin-Secret-pw-1"

// startBerth runs berth in-process with token auth, an admin and the
// namespaces team and lib.
func startBerth(t *testing.T) *remote {
	t.Helper()
	cfg := &config.Config{Addr: "127.0.0.1:0", DataDir: t.TempDir(), Auth: "token", AdminPassword: adminPass, MaxManifestSize: 1 << 20,
		UploadTTL: time.Hour, ShutdownTimeout: time.Second, BodyTimeout: time.Minute, TokenTTL: 5 * time.Minute, ConsoleOff: true, MetricsOff: true}
	srv, err := server.New(context.Background(), cfg, quiet)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(func() { ts.Close(); srv.Close() })
	for _, ns := range []string{"team", "lib"} {
		req, _ := http.NewRequest(http.MethodPost, ts.URL+"/api/v1/namespaces", strings.NewReader(`{"name":"`+ns+`"}`))
		req.SetBasicAuth("admin", adminPass)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			t.Fatalf("create namespace %s: %d", ns, resp.StatusCode)
		}
	}
	return &remote{name: "berth", url: ts.URL, user: "admin", pass: adminPass, referrersAPI: true}
}

// startDistribution runs CNCF Distribution 2.8 (Debian's docker-registry);
// without it the test is skipped, or fails when CI=true.
func startDistribution(t *testing.T) *remote {
	t.Helper()
	return &remote{name: "distribution", url: testserver.Distribution(t).URL}
}

func (r *remote) client(t *testing.T) *upstream.Client {
	t.Helper()
	c, err := upstream.New(upstream.Options{URL: r.url, Username: r.user, Password: r.pass})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// counter counts the requests a transport makes, by method and a path
// fragment.
type counter struct {
	mu   sync.Mutex
	reqs []string
}

func (c *counter) RoundTrip(req *http.Request) (*http.Response, error) {
	c.mu.Lock()
	c.reqs = append(c.reqs, req.Method+" "+req.URL.Path+"?"+req.URL.RawQuery)
	c.mu.Unlock()
	return http.DefaultTransport.RoundTrip(req)
}

func (c *counter) count(method, fragment string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, r := range c.reqs {
		if strings.HasPrefix(r, method+" ") && strings.Contains(r, fragment) {
			n++
		}
	}
	return n
}

func (c *counter) reset() {
	c.mu.Lock()
	c.reqs = nil
	c.mu.Unlock()
}

// image is a manifest with what it references.
type image struct {
	repo, tag, mediaType string
	body                 []byte
	digest               reference.Digest
	blobs                map[reference.Digest][]byte
	children             []*image
}

func digestOf(b []byte) reference.Digest { return reference.SHA256.FromBytes(b) }

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

type desc struct {
	MediaType    string            `json:"mediaType"`
	Digest       reference.Digest  `json:"digest"`
	Size         int64             `json:"size"`
	ArtifactType string            `json:"artifactType,omitempty"`
	Platform     map[string]string `json:"platform,omitempty"`
}

const (
	ociManifest = "application/vnd.oci.image.manifest.v1+json"
	ociIndex    = "application/vnd.oci.image.index.v1+json"
)

// newImage makes an image manifest with a random config and the given
// layer (a random one when nil).
func newImage(repo, tag string, layer []byte) *image {
	cfg := []byte(fmt.Sprintf(`{"architecture":"amd64","os":"linux","nonce":%q}`, randomBytes(4)))
	if layer == nil {
		layer = randomBytes(3000)
	}
	body, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": ociManifest,
		"config": desc{MediaType: "application/vnd.oci.image.config.v1+json", Digest: digestOf(cfg), Size: int64(len(cfg))},
		"layers": []desc{{MediaType: "application/vnd.oci.image.layer.v1.tar+gzip", Digest: digestOf(layer), Size: int64(len(layer))}}})
	return &image{repo: repo, tag: tag, mediaType: ociManifest, body: body, digest: digestOf(body),
		blobs: map[reference.Digest][]byte{digestOf(cfg): cfg, digestOf(layer): layer}}
}

// newIndex makes a two-platform index.
func newIndex(repo, tag string) *image {
	a, b := newImage(repo, "", nil), newImage(repo, "", nil)
	body, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": ociIndex, "manifests": []desc{
		{MediaType: ociManifest, Digest: a.digest, Size: int64(len(a.body)), Platform: map[string]string{"architecture": "amd64", "os": "linux"}},
		{MediaType: ociManifest, Digest: b.digest, Size: int64(len(b.body)), Platform: map[string]string{"architecture": "arm64", "os": "linux"}}}})
	return &image{repo: repo, tag: tag, mediaType: ociIndex, body: body, digest: digestOf(body), children: []*image{a, b}}
}

// newReferrer makes a signature of subject.
func newReferrer(subject *image) *image {
	empty, sig := []byte("{}"), randomBytes(100)
	body, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": ociManifest, "artifactType": "application/vnd.example.sig",
		"config":  desc{MediaType: "application/vnd.oci.empty.v1+json", Digest: digestOf(empty), Size: 2},
		"layers":  []desc{{MediaType: "application/vnd.example.sig.v1", Digest: digestOf(sig), Size: int64(len(sig))}},
		"subject": desc{MediaType: subject.mediaType, Digest: subject.digest, Size: int64(len(subject.body))}})
	return &image{repo: subject.repo, mediaType: ociManifest, body: body, digest: digestOf(body),
		blobs: map[reference.Digest][]byte{digestOf(empty): empty, digestOf(sig): sig}}
}

func (img *image) ref() string {
	if img.tag != "" {
		return img.tag
	}
	return string(img.digest)
}

// pushLocal pushes img into berth's service (children first) and returns
// the push events, in order, as the outbox would hold them.
func pushLocal(t *testing.T, l *local, img *image) []metadata.Event {
	t.Helper()
	ctx := context.Background()
	var evs []metadata.Event
	for _, c := range img.children {
		evs = append(evs, pushLocal(t, l, c)...)
	}
	for d, b := range img.blobs {
		if err := l.svc.PutBlob(ctx, img.repo, d, registry.Chunk{Body: bytes.NewReader(b), Start: -1, Length: int64(len(b))}, ""); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := l.svc.PutManifest(ctx, img.repo, img.ref(), img.mediaType, bytes.NewReader(img.body), nil); err != nil {
		t.Fatal(err)
	}
	return append(evs, events.New(ctx, events.ActionPush, events.Target{Repository: img.repo, Digest: string(img.digest), Tag: img.tag, MediaType: img.mediaType}))
}

// pushRemote pushes img to a remote registry.
func pushRemote(t *testing.T, c *upstream.Client, img *image) {
	t.Helper()
	ctx := context.Background()
	for _, ch := range img.children {
		pushRemote(t, c, ch)
	}
	for d, b := range img.blobs {
		if err := c.PutBlob(ctx, img.repo, d, int64(len(b)), bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.PutManifest(ctx, img.repo, img.ref(), img.mediaType, img.body); err != nil {
		t.Fatal(err)
	}
}

// checkRemote checks the remote has img, byte for byte, with its children
// and blobs.
func checkRemote(t *testing.T, c *upstream.Client, img *image) {
	t.Helper()
	ctx := context.Background()
	d, body, err := c.GetManifest(ctx, img.repo, img.ref())
	if err != nil {
		t.Fatalf("%s:%s on the target: %v", img.repo, img.ref(), err)
	}
	if d.Digest != img.digest || !bytes.Equal(body, img.body) {
		t.Fatalf("%s:%s on the target is %s, want %s", img.repo, img.ref(), d.Digest, img.digest)
	}
	for _, ch := range img.children {
		checkRemote(t, c, ch)
	}
	for dg, want := range img.blobs {
		rc, _, err := c.GetBlob(ctx, img.repo, dg)
		if err != nil {
			t.Fatalf("blob %s of %s on the target: %v", dg, img.repo, err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("blob %s of %s on the target: %v, %d bytes, want %d", dg, img.repo, err, len(got), len(want))
		}
	}
}

// checkLocal checks berth has img, byte for byte, with its children.
func checkLocal(t *testing.T, l *local, img *image) {
	t.Helper()
	ctx := context.Background()
	m, err := l.svc.GetManifest(ctx, img.repo, img.ref())
	if err != nil {
		t.Fatalf("%s:%s in berth: %v", img.repo, img.ref(), err)
	}
	if m.Digest != img.digest || !bytes.Equal(m.Payload, img.body) {
		t.Fatalf("%s:%s in berth is %s, want %s", img.repo, img.ref(), m.Digest, img.digest)
	}
	for _, ch := range img.children {
		checkLocal(t, l, ch)
	}
	for d, want := range img.blobs {
		rc, _, err := l.svc.OpenBlob(ctx, img.repo, d)
		if err != nil {
			t.Fatalf("blob %s of %s in berth: %v", d, img.repo, err)
		}
		got, _ := io.ReadAll(rc)
		rc.Close()
		if !bytes.Equal(got, want) {
			t.Fatalf("blob %s of %s in berth differs", d, img.repo)
		}
	}
}

func TestPushReplication(t *testing.T) {
	for _, start := range []func(*testing.T) *remote{startBerth, startDistribution} {
		target := start(t)
		t.Run(target.name, func(t *testing.T) {
			ctx := context.Background()
			l := newLocal(t)
			tr := &counter{}
			rep := replicate.New(l.meta, l.svc, nil, replicate.Options{Transport: tr}, quiet)
			rule, err := rep.Add(ctx, nil, replicate.Spec{Name: "dr", Direction: metadata.ReplicatePush, URL: target.url,
				Repositories: "team/*", Tags: "v*", Username: target.user, Password: target.pass})
			if err != nil {
				t.Fatal(err)
			}
			if rule.Endpoint.Namespace != "team" || rule.Endpoint.Format != metadata.FormatReplicate {
				t.Fatalf("endpoint %+v: want namespace team, format replicate", rule.Endpoint)
			}
			replicateAll := func(evs []metadata.Event) {
				t.Helper()
				for i := range evs {
					if err := rep.Replicate(ctx, &rule.Endpoint, &evs[i]); err != nil {
						t.Fatalf("replicate %s: %v", evs[i].Payload, err)
					}
				}
			}
			// A signature pushed before its subject, an index, an image
			// sharing a layer with another repository's.
			idx := newIndex("team/app", "v1")
			sig := newReferrer(idx)
			evs := pushLocal(t, l, sig)
			evs = append(evs, pushLocal(t, l, idx)...)
			a := newImage("team/a", "v2", nil)
			evs = append(evs, pushLocal(t, l, a)...)
			replicateAll(evs)
			c := target.client(t)
			checkRemote(t, c, idx)
			checkRemote(t, c, sig)
			checkRemote(t, c, a)
			if target.referrersAPI {
				refs, err := c.Referrers(ctx, "team/app", idx.digest)
				if err != nil || len(refs) != 1 || refs[0].Digest != sig.digest {
					t.Fatalf("referrers of the index on the target: %v %v, want %s", refs, err, sig.digest)
				}
			}

			// Again: the target has it all, nothing is uploaded.
			tr.reset()
			replicateAll(evs)
			if n := tr.count(http.MethodPut, "/blobs/uploads/") + tr.count(http.MethodPut, "/manifests/"); n != 0 {
				t.Errorf("replicating again uploaded %d things: %v", n, tr.reqs)
			}

			// A blob another replicated repository holds is mounted, not
			// uploaded.
			tr.reset()
			b := newImage("team/b", "v3", mustLayer(t, a))
			replicateAll(pushLocal(t, l, b))
			checkRemote(t, c, b)
			if n := tr.count(http.MethodPut, "/blobs/uploads/"); n != 1 {
				t.Errorf("pushing an image with a layer of team/a uploaded %d blobs, want 1 (the config; the layer mounted): %v", n, tr.reqs)
			}

			// Outside the globs: done, nothing copied.
			tr.reset()
			other := newImage("other/app", "v1", nil)
			dev := newImage("team/app", "dev", nil)
			replicateAll(append(pushLocal(t, l, other), pushLocal(t, l, dev)...))
			if n := tr.count(http.MethodPut, ""); n != 0 {
				t.Errorf("events outside the globs uploaded %d things: %v", n, tr.reqs)
			}
			if _, err := c.HeadManifest(ctx, "team/app", "dev"); !errors.Is(err, upstream.ErrNotFound) {
				t.Errorf("team/app:dev (tags v*) on the target: %v, want not found", err)
			}

			// Content deleted since its push: nothing left to copy, done.
			gone := events.New(ctx, events.ActionPush, events.Target{Repository: "team/app", Digest: string(digestOf([]byte("nothing"))), Tag: "v9"})
			if err := rep.Replicate(ctx, &rule.Endpoint, &gone); err != nil {
				t.Errorf("replicating a deleted manifest: %v, want nil", err)
			}

			// A target that refuses fails the attempt (to be retried),
			// without the password in the error.
			bad, err := rep.Add(ctx, nil, replicate.Spec{Name: "bad", Direction: metadata.ReplicatePush, URL: target.url,
				Username: "nobody", Password: "wrong-Password-42"})
			if err != nil {
				t.Fatal(err)
			}
			err = rep.Replicate(ctx, &bad.Endpoint, &evs[len(evs)-1])
			if target.user != "" && (err == nil || strings.Contains(err.Error(), "wrong-Password-42")) {
				t.Errorf("replicating with wrong credentials: %v", err)
			}
		})
	}
}

func mustLayer(t *testing.T, img *image) []byte {
	t.Helper()
	var m struct {
		Layers []desc `json:"layers"`
	}
	if err := json.Unmarshal(img.body, &m); err != nil {
		t.Fatal(err)
	}
	return img.blobs[m.Layers[0].Digest]
}

func TestPullReplication(t *testing.T) {
	for _, start := range []func(*testing.T) *remote{startDistribution, startBerth} {
		src := start(t)
		t.Run(src.name, func(t *testing.T) {
			ctx := context.Background()
			c := src.client(t)
			a1, adev, b2, other := newImage("lib/a", "v1", nil), newImage("lib/a", "dev", nil), newIndex("lib/b", "v2"), newImage("team/c", "v1", nil)
			for _, img := range []*image{a1, adev, b2, other} {
				pushRemote(t, c, img)
			}
			sig := newReferrer(a1)
			pushRemote(t, c, sig)

			l := newLocal(t)
			rep := replicate.New(l.meta, l.svc, nil, replicate.Options{}, quiet)
			if _, err := rep.Add(ctx, nil, replicate.Spec{Name: "up", Direction: metadata.ReplicatePull, URL: src.url,
				Repositories: "lib/*", Tags: "v*", Username: src.user, Password: src.pass, Interval: time.Hour}); err != nil {
				t.Fatal(err)
			}
			run, err := rep.RunNow(ctx, nil, "up")
			if err != nil {
				t.Fatal(err)
			}
			if run.Copied != 2 || run.Skipped != 0 || run.Failed != 0 {
				t.Fatalf("first run: %+v, want 2 copied", run)
			}
			checkLocal(t, l, a1)
			checkLocal(t, l, b2)
			if src.referrersAPI {
				checkLocal(t, l, sig)
			}
			for _, img := range []*image{adev, other} {
				if _, err := l.svc.GetManifest(ctx, img.repo, img.tag); err == nil {
					t.Errorf("%s:%s is in berth, outside the rule's globs", img.repo, img.tag)
				}
			}
			run, err = rep.RunNow(ctx, nil, "up")
			if err != nil || run.Copied != 0 || run.Skipped != 2 || run.Failed != 0 {
				t.Fatalf("second run: %+v %v, want 2 skipped", run, err)
			}
			rules, err := rep.List(ctx, nil)
			if err != nil || len(rules) != 1 || rules[0].LastRun.Skipped != 2 || rules[0].LastRun.Finished.IsZero() {
				t.Fatalf("list: %+v %v", rules, err)
			}
		})
	}
}

func TestRules(t *testing.T) {
	ctx := context.Background()
	l := newLocal(t)
	rep := replicate.New(l.meta, l.svc, nil, replicate.Options{}, quiet)
	bad := []replicate.Spec{
		{Name: "Bad Name", Direction: "push", URL: "http://r.example"},
		{Name: "x", Direction: "sideways", URL: "http://r.example"},
		{Name: "x", Direction: "push", URL: "ftp://r.example"},
		{Name: "x", Direction: "push", URL: "http://r.example/path"},
		{Name: "x", Direction: "push", URL: "http://user:pw@r.example"},
		{Name: "x", Direction: "push", URL: "http://r.example", Repositories: "team/["},
		{Name: "x", Direction: "push", URL: "http://r.example", Username: "u"},
		{Name: "x", Direction: "push", URL: "http://r.example", Interval: time.Minute},
		{Name: "x", Direction: "pull", URL: "http://r.example", Interval: time.Millisecond},
	}
	for _, sp := range bad {
		if _, err := rep.Add(ctx, nil, sp); !errors.Is(err, auth.ErrInvalid) {
			t.Errorf("Add(%+v) = %v, want invalid", sp, err)
		}
	}
	if _, err := rep.Add(ctx, &auth.Principal{Name: "joe"}, replicate.Spec{Name: "x", Direction: "push", URL: "http://r.example"}); !errors.Is(err, auth.ErrForbidden) {
		t.Errorf("Add by a non-admin = %v, want forbidden", err)
	}
	for glob, ns := range map[string]string{"": "", "team/*": "team", "*/app": "", "team": "team", "te?m/x": ""} {
		name := fmt.Sprintf("ns%d", len(glob))
		r, err := rep.Add(ctx, nil, replicate.Spec{Name: name + strings.NewReplacer("/", "", "*", "", "?", "").Replace(glob), Direction: "push", URL: "http://r.example", Repositories: glob})
		if err != nil {
			t.Fatal(err)
		}
		if r.Endpoint.Namespace != ns {
			t.Errorf("filter %q: namespace %q, want %q", glob, r.Endpoint.Namespace, ns)
		}
	}
	if _, err := rep.Add(ctx, nil, replicate.Spec{Name: "ns6teamx", Direction: "push", URL: "http://r.example"}); err != nil {
		t.Fatal(err)
	}
	if _, err := rep.Add(ctx, nil, replicate.Spec{Name: "ns6teamx", Direction: "push", URL: "http://r.example"}); !errors.Is(err, auth.ErrExists) {
		t.Errorf("a second rule of the same name: %v, want exists", err)
	}
	// A pull rule's run is claimed once per interval, by one caller.
	r, err := rep.Add(ctx, nil, replicate.Spec{Name: "pull", Direction: "pull", URL: "http://127.0.0.1:9", Interval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if r.Interval != time.Hour || r.Endpoint.Namespace != "" {
		t.Errorf("pull rule: %+v", r)
	}
	id := r.Endpoint.ID
	if ok, err := l.meta.ClaimReplicationRun(ctx, id, false); !ok || err != nil {
		t.Fatalf("first claim: %v %v", ok, err)
	}
	if ok, _ := l.meta.ClaimReplicationRun(ctx, id, false); ok {
		t.Error("a second claim while the run goes on succeeded")
	}
	if ok, _ := l.meta.ClaimReplicationRun(ctx, id, true); ok {
		t.Error("a forced claim while the run goes on succeeded")
	}
	if err := l.meta.FinishReplicationRun(ctx, id, metadata.ReplicationRun{Copied: 1}); err != nil {
		t.Fatal(err)
	}
	if ok, _ := l.meta.ClaimReplicationRun(ctx, id, false); ok {
		t.Error("a claim before the interval passed succeeded")
	}
	if ok, _ := l.meta.ClaimReplicationRun(ctx, id, true); !ok {
		t.Error("a forced claim after the run failed")
	}
	// Removing a rule removes its endpoint; a webhook of that name is not
	// a rule.
	if err := rep.Remove(ctx, nil, "pull"); err != nil {
		t.Fatal(err)
	}
	if _, err := l.meta.Webhook(ctx, "pull"); !errors.Is(err, metadata.ErrNotFound) {
		t.Errorf("the endpoint of a removed rule: %v", err)
	}
	if _, err := l.meta.AddWebhook(ctx, metadata.WebhookEndpoint{Name: "hook", URL: "http://h.example", Actions: []string{"push"}, Format: "distribution", Secret: "s"}); err != nil {
		t.Fatal(err)
	}
	if err := rep.Remove(ctx, nil, "hook"); !errors.Is(err, auth.ErrNotFound) {
		t.Errorf("removing a webhook as a rule: %v, want not found", err)
	}
}
