package upstream_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/reference"
	"github.com/berth-registry/berth/internal/upstream"
)

// registries starts the real registries the tests run against: berth open
// and with token auth, and CNCF Distribution 2.8 (skipped when missing,
// outside CI).
func registries(t *testing.T) []func(*testing.T) *registry {
	return []func(*testing.T) *registry{
		func(t *testing.T) *registry { return startBerth(t, false) },
		func(t *testing.T) *registry { return startBerth(t, true) },
		startDistribution,
	}
}

// TestRegistries runs the client's operations against each real registry.
func TestRegistries(t *testing.T) {
	for i, start := range registries(t) {
		t.Run([]string{"berth", "berth-auth", "distribution"}[i], func(t *testing.T) {
			r := start(t)
			t.Run("RoundTrip", func(t *testing.T) { testRoundTrip(t, r) })
			t.Run("Tags", func(t *testing.T) { testTags(t, r) })
			t.Run("Catalog", func(t *testing.T) { testCatalog(t, r) })
			t.Run("Mount", func(t *testing.T) { testMount(t, r) })
			t.Run("NotFound", func(t *testing.T) { testNotFound(t, r) })
			t.Run("Referrers", func(t *testing.T) { testReferrers(t, r) })
		})
	}
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func randomBytes(t *testing.T, n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// image is what pushImage pushed.
type image struct {
	config, layer []byte
	manifest      []byte
	digest        reference.Digest
}

// descriptorOf describes b as mediaType.
func descriptorOf(mediaType string, b []byte) map[string]any {
	return map[string]any{"mediaType": mediaType, "digest": reference.SHA256.FromBytes(b), "size": len(b)}
}

func mustJSON(t *testing.T, v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// pushImage pushes a config, a layer and an OCI image manifest tagged tag.
func pushImage(t *testing.T, c *upstream.Client, repo, tag string) image {
	t.Helper()
	ctx := ctxFor(t)
	img := image{config: mustJSON(t, map[string]any{"architecture": "amd64", "os": "linux", "nonce": fmt.Sprintf("%x", randomBytes(t, 8))}),
		layer: randomBytes(t, 300<<10)}
	for _, b := range [][]byte{img.config, img.layer} {
		if err := c.PutBlob(ctx, repo, reference.SHA256.FromBytes(b), int64(len(b)), bytes.NewReader(b)); err != nil {
			t.Fatalf("PutBlob: %v", err)
		}
	}
	img.manifest = mustJSON(t, map[string]any{"schemaVersion": 2, "mediaType": upstream.MediaTypeOCIManifest,
		"config": descriptorOf("application/vnd.oci.image.config.v1+json", img.config),
		"layers": []any{descriptorOf("application/vnd.oci.image.layer.v1.tar+gzip", img.layer)}})
	d, err := c.PutManifest(ctx, repo, tag, upstream.MediaTypeOCIManifest, img.manifest)
	if err != nil {
		t.Fatalf("PutManifest: %v", err)
	}
	if want := reference.SHA256.FromBytes(img.manifest); d != want {
		t.Fatalf("PutManifest = %s, want %s", d, want)
	}
	img.digest = d
	return img
}

func testRoundTrip(t *testing.T, r *registry) {
	ctx := ctxFor(t)
	c := r.client(t, nil, 0)
	repo := r.prefix + "round/trip"
	img := pushImage(t, c, repo, "v1")

	for _, b := range [][]byte{img.config, img.layer} {
		d := reference.SHA256.FromBytes(b)
		if n, err := c.HeadBlob(ctx, repo, d); err != nil || n != int64(len(b)) {
			t.Errorf("HeadBlob(%s) = %d, %v; want %d", d, n, err, len(b))
		}
		rc, n, err := c.GetBlob(ctx, repo, d)
		if err != nil {
			t.Fatalf("GetBlob: %v", err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(got, b) || (n != -1 && n != int64(len(b))) {
			t.Errorf("GetBlob(%s): %d bytes (size %d), %v; want the %d pushed", d, len(got), n, err, len(b))
		}
	}
	for _, ref := range []string{"v1", string(img.digest)} {
		desc, body, err := c.GetManifest(ctx, repo, ref)
		if err != nil {
			t.Fatalf("GetManifest(%s): %v", ref, err)
		}
		if !bytes.Equal(body, img.manifest) || desc.Digest != img.digest || desc.MediaType != upstream.MediaTypeOCIManifest || desc.Size != int64(len(body)) {
			t.Errorf("GetManifest(%s) = %+v, %q", ref, desc, body)
		}
		head, err := c.HeadManifest(ctx, repo, ref)
		if err != nil || head.Digest != img.digest || head.MediaType != upstream.MediaTypeOCIManifest || head.Size != int64(len(img.manifest)) {
			t.Errorf("HeadManifest(%s) = %+v, %v", ref, head, err)
		}
	}

	// An empty blob and a pushed-by-digest manifest.
	if err := c.PutBlob(ctx, repo, reference.SHA256.FromBytes(nil), 0, bytes.NewReader(nil)); err != nil {
		t.Errorf("PutBlob(empty): %v", err)
	}
	if d, err := c.PutManifest(ctx, repo, string(img.digest), upstream.MediaTypeOCIManifest, img.manifest); err != nil || d != img.digest {
		t.Errorf("PutManifest by digest = %s, %v", d, err)
	}
	// A digest the payload does not hash to is refused before sending.
	other := reference.SHA256.FromBytes([]byte("other"))
	if _, err := c.PutManifest(ctx, repo, string(other), upstream.MediaTypeOCIManifest, img.manifest); !errors.Is(err, upstream.ErrDigestMismatch) {
		t.Errorf("PutManifest under a wrong digest: %v, want ErrDigestMismatch", err)
	}
	// A blob whose bytes do not match the digest is refused by the registry.
	if err := c.PutBlob(ctx, repo, other, 3, bytes.NewReader([]byte("abc"))); err == nil {
		t.Error("PutBlob of bytes that do not match the digest succeeded")
	}
}

func testTags(t *testing.T, r *registry) {
	ctx := ctxFor(t)
	tr := newCounter()
	c := r.client(t, tr, 2)
	repo := r.prefix + "tagged"
	img := pushImage(t, c, repo, "t1")
	want := []string{"t1", "t2", "t3", "t4", "t5"}
	for _, tag := range want[1:] {
		if _, err := c.PutManifest(ctx, repo, tag, upstream.MediaTypeOCIManifest, img.manifest); err != nil {
			t.Fatal(err)
		}
	}
	tags, err := c.Tags(ctx, repo)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(tags)
	if !slices.Equal(tags, want) {
		t.Errorf("Tags = %q, want %q", tags, want)
	}
	pages := tr.count("/tags/list")
	if r.user != "" {
		pages -= 1 // the challenged first attempt
	}
	t.Logf("%s: %d pages of tags", r.name, pages)
	if r.tagPages && pages != 3 {
		t.Errorf("%d pages of tags, want 3 of 2 (5 tags)", pages)
	}
}

func testCatalog(t *testing.T, r *registry) {
	ctx := ctxFor(t)
	tr := newCounter()
	c := r.client(t, tr, 2)
	want := []string{r.prefix + "cat/a", r.prefix + "cat/b", r.prefix + "cat/c"}
	for _, repo := range want {
		pushImage(t, c, repo, "latest")
	}
	repos, err := c.Catalog(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, repo := range want {
		if !slices.Contains(repos, repo) {
			t.Errorf("Catalog = %q, lacks %s", repos, repo)
		}
	}
	if len(repos) != len(slices.Compact(slices.Sorted(slices.Values(repos)))) {
		t.Errorf("Catalog = %q repeats names", repos)
	}
	if n := tr.count("/_catalog"); n < (len(repos)+1)/2 {
		t.Errorf("%d catalog requests for %d repositories in pages of 2", n, len(repos))
	}
}

func testMount(t *testing.T, r *registry) {
	ctx := ctxFor(t)
	c := r.client(t, nil, 0)
	from, to := r.prefix+"mount/src", r.prefix+"mount/dst"
	img := pushImage(t, c, from, "v1")
	d := reference.SHA256.FromBytes(img.layer)
	ok, err := c.Mount(ctx, to, d, from)
	if err != nil || !ok {
		t.Fatalf("Mount = %v, %v; want true", ok, err)
	}
	if n, err := c.HeadBlob(ctx, to, d); err != nil || n != int64(len(img.layer)) {
		t.Errorf("HeadBlob after mount = %d, %v", n, err)
	}
	missing := reference.SHA256.FromBytes(randomBytes(t, 16))
	if ok, err := c.Mount(ctx, to, missing, from); err != nil || ok {
		t.Errorf("Mount of a missing blob = %v, %v; want false, nil", ok, err)
	}
}

func testNotFound(t *testing.T, r *registry) {
	ctx := ctxFor(t)
	c := r.client(t, nil, 0)
	repo := r.prefix + "present"
	pushImage(t, c, repo, "v1")
	missing := reference.SHA256.FromBytes(randomBytes(t, 16))
	checks := map[string]error{}
	_, _, checks["GetManifest tag"] = c.GetManifest(ctx, repo, "nope")
	_, _, checks["GetManifest digest"] = c.GetManifest(ctx, repo, string(missing))
	_, checks["HeadManifest"] = c.HeadManifest(ctx, repo, "nope")
	_, checks["HeadBlob"] = c.HeadBlob(ctx, repo, missing)
	_, _, checks["GetBlob"] = c.GetBlob(ctx, repo, missing)
	_, checks["Tags of a missing repository"] = c.Tags(ctx, r.prefix+"absent")
	_, _, checks["GetManifest in a missing repository"] = c.GetManifest(ctx, r.prefix+"absent", "v1")
	for what, err := range checks {
		var se *upstream.StatusError
		if !errors.Is(err, upstream.ErrNotFound) || !errors.As(err, &se) || se.Status != 404 {
			t.Errorf("%s: %v, want ErrNotFound", what, err)
		}
	}
}

func testReferrers(t *testing.T, r *registry) {
	ctx := ctxFor(t)
	c := r.client(t, nil, 0)
	repo := r.prefix + "signed"
	img := pushImage(t, c, repo, "v1")
	if refs, err := c.Referrers(ctx, repo, img.digest); err != nil || len(refs) != 0 {
		t.Fatalf("Referrers before any = %+v, %v; want none", refs, err)
	}
	empty := []byte("{}")
	sig := []byte("signature " + string(img.digest))
	for _, b := range [][]byte{empty, sig} {
		if err := c.PutBlob(ctx, repo, reference.SHA256.FromBytes(b), int64(len(b)), bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
	}
	const artifactType = "application/vnd.example.signature"
	artifact := mustJSON(t, map[string]any{"schemaVersion": 2, "mediaType": upstream.MediaTypeOCIManifest, "artifactType": artifactType,
		"config":      descriptorOf("application/vnd.oci.empty.v1+json", empty),
		"layers":      []any{descriptorOf("application/octet-stream", sig)},
		"subject":     descriptorOf(upstream.MediaTypeOCIManifest, img.manifest),
		"annotations": map[string]string{"org.example.kind": "test"}})
	ad, err := c.PutManifest(ctx, repo, "sig", upstream.MediaTypeOCIManifest, artifact)
	if err != nil {
		t.Fatal(err)
	}
	if !r.referrersAPI {
		// The tag schema: what a client pushing to an older registry
		// maintains.
		idx := mustJSON(t, map[string]any{"schemaVersion": 2, "mediaType": upstream.MediaTypeOCIIndex, "manifests": []any{
			map[string]any{"mediaType": upstream.MediaTypeOCIManifest, "digest": ad, "size": len(artifact), "artifactType": artifactType,
				"annotations": map[string]string{"org.example.kind": "test"}}}})
		if _, err := c.PutManifest(ctx, repo, "sha256-"+img.digest.Encoded(), upstream.MediaTypeOCIIndex, idx); err != nil {
			t.Fatal(err)
		}
	}
	refs, err := c.Referrers(ctx, repo, img.digest)
	if err != nil {
		t.Fatal(err)
	}
	if len(refs) != 1 || refs[0].Digest != ad || refs[0].ArtifactType != artifactType || refs[0].Size != int64(len(artifact)) ||
		refs[0].Annotations["org.example.kind"] != "test" {
		t.Errorf("Referrers = %+v, want the artifact %s", refs, ad)
	}
}
