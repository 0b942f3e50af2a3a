package server

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/config"
)

// Regression tests of issue 10: immutable tags protect what they point to,
// manifests and unfinished uploads count towards quotas, upload sessions
// are bounded and multi-range blob GETs are not amplified.

const ociManifest = "application/vnd.oci.image.manifest.v1+json"

// imageManifest is an OCI image manifest of cfg and layers, made distinct
// by note.
func imageManifest(cfg []byte, note string, layers ...[]byte) []byte {
	ls := make([]string, len(layers))
	for i, l := range layers {
		ls[i] = fmt.Sprintf(`{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%d}`, digestOf(l), len(l))
	}
	return []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"%s","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},"layers":[%s],"annotations":{"n":"%s"}}`,
		ociManifest, digestOf(cfg), len(cfg), strings.Join(ls, ","), note))
}

// usageOf reads a namespace's usage through the admin API.
func usageOf(t *testing.T, u, ns string) int64 {
	t.Helper()
	r := do(t, "GET", u+"/api/v1/namespaces/"+ns+"/usage", map[string]string{"Authorization": basic("admin", adminPass)}, nil)
	var usage struct {
		Used int64 `json:"used_bytes"`
	}
	if r.status != 200 || json.Unmarshal(r.body, &usage) != nil {
		t.Fatalf("usage of %s: %d %s", ns, r.status, r.body)
	}
	return usage.Used
}

// TestImmutableTagsProtectContent: a maintainer cannot delete the layers or
// config of a protected tag's image, nor an untagged child manifest of a
// protected index; garbage collection then keeps them all. Referrers of a
// protected manifest, content only mutable tags use and unreferenced blobs
// may be deleted; an admin may delete anything.
func TestImmutableTagsProtectContent(t *testing.T) {
	ts, _ := authServer(t, func(c *config.Config) { c.GCGrace = time.Millisecond })
	u := ts.URL
	admin := map[string]string{"Authorization": basic("admin", adminPass)}
	if r := do(t, "PUT", u+"/api/v1/namespaces/team/members/bob", admin, []byte(`{"role":"maintainer"}`)); r.status != 200 {
		t.Fatalf("make bob a maintainer: %d %s", r.status, r.body)
	}
	tok := tokenFor(t, u, "bob", "bob-pass-1", "repository:team/app:pull,push,delete")
	hdr := bearer(tok)
	cfg, l1, l2, l3, loose := []byte(`{"architecture":"amd64"}`), []byte("layer one"), []byte("layer two"), []byte("layer three"), []byte("loose blob")
	for _, b := range [][]byte{cfg, l1, l2, l3, loose} {
		expect(t, "blob", do(t, "POST", u+"/v2/team/app/blobs/uploads/?digest="+digestOf(b), hdr, b), 201, "")
	}
	oci := map[string]string{"Content-Type": ociManifest, "Authorization": "Bearer " + tok}
	m1, m2, m3 := imageManifest(cfg, "amd64", l1), imageManifest(cfg, "arm64", l2), imageManifest(cfg, "mutable", l3)
	for _, m := range [][]byte{m1, m2} {
		expect(t, "child by digest", do(t, "PUT", u+"/v2/team/app/manifests/"+digestOf(m), oci, m), 201, "")
	}
	idx := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[`+
		`{"mediaType":"%s","digest":"%s","size":%d},{"mediaType":"%s","digest":"%s","size":%d}]}`,
		ociManifest, digestOf(m1), len(m1), ociManifest, digestOf(m2), len(m2)))
	idxHdr := map[string]string{"Content-Type": "application/vnd.oci.image.index.v1+json", "Authorization": "Bearer " + tok}
	expect(t, "index v1", do(t, "PUT", u+"/v2/team/app/manifests/v1", idxHdr, idx), 201, "")
	expect(t, "mutable latest", do(t, "PUT", u+"/v2/team/app/manifests/latest", oci, m3), 201, "")
	sig := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"%s","artifactType":"application/example.sig","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},"layers":[],"subject":{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"%s","size":%d}}`,
		ociManifest, digestOf(cfg), len(cfg), digestOf(idx), len(idx)))
	expect(t, "referrer of v1", do(t, "PUT", u+"/v2/team/app/manifests/"+digestOf(sig), oci, sig), 201, "")
	if r := do(t, "POST", u+"/api/v1/immutable-rules", admin, []byte(`{"repositories":"team/*","tags":"v*"}`)); r.status != 201 {
		t.Fatalf("add rule: %d %s", r.status, r.body)
	}

	blob := func(b []byte) string { return u + "/v2/team/app/blobs/" + digestOf(b) }
	manifest := func(m []byte) string { return u + "/v2/team/app/manifests/" + digestOf(m) }
	for what, url := range map[string]string{
		"layer of a child of v1":   blob(l1),
		"layer of the other child": blob(l2),
		"config of v1's images":    blob(cfg),
		"untagged child of v1":     manifest(m1),
	} {
		r := do(t, "DELETE", url, hdr, nil)
		expect(t, "maintainer deletes "+what, r, 403, "DENIED")
		if !strings.Contains(string(r.body), "immutable tag v1") {
			t.Errorf("refusal to delete %s does not name the tag: %s", what, r.body)
		}
	}
	expect(t, "layer only a mutable tag uses", do(t, "DELETE", blob(l3), hdr, nil), 202, "")
	expect(t, "unreferenced blob", do(t, "DELETE", blob(loose), hdr, nil), 202, "")
	expect(t, "referrer of v1 (not protected)", do(t, "DELETE", manifest(sig), hdr, nil), 202, "")

	if r := do(t, "POST", u+"/api/v1/gc", admin, nil); r.status != 200 {
		t.Fatalf("gc: %d %s", r.status, r.body)
	}
	for what, url := range map[string]string{"layer": blob(l1), "layer 2": blob(l2), "config": blob(cfg), "child": manifest(m1), "other child": manifest(m2),
		"v1": u + "/v2/team/app/manifests/v1"} {
		expect(t, what+" after gc", do(t, "GET", url, hdr, nil), 200, "")
	}
	expect(t, "deleted blob after gc", do(t, "GET", blob(loose), hdr, nil), 404, "BLOB_UNKNOWN")

	adminTok := tokenFor(t, u, "admin", adminPass, "repository:team/app:pull,push,delete")
	expect(t, "admin deletes a protected layer", do(t, "DELETE", blob(l2), bearer(adminTok), nil), 202, "")
	expect(t, "admin deletes a protected child", do(t, "DELETE", manifest(m2), bearer(adminTok), nil), 202, "")
}

// TestQuotaCountsManifests: manifest bytes count towards the quota, a push
// that would exceed it is refused, a manifest the repository already has
// costs nothing, and the usage shows the manifests.
func TestQuotaCountsManifests(t *testing.T) {
	ts, _ := authServer(t)
	u := ts.URL
	admin := map[string]string{"Authorization": basic("admin", adminPass)}
	if r := do(t, "PUT", u+"/api/v1/namespaces/team/quota", admin, []byte(`{"bytes":262144}`)); r.status != 200 {
		t.Fatalf("set quota: %d %s", r.status, r.body)
	}
	tok := tokenFor(t, u, "bob", "bob-pass-1", "repository:team/app:pull,push", "repository:team/b:pull,push")
	cfg := []byte("{}")
	expect(t, "config", do(t, "POST", u+"/v2/team/app/blobs/uploads/?digest="+digestOf(cfg), bearer(tok), cfg), 201, "")
	big := func(n int) []byte { return imageManifest(cfg, fmt.Sprintf("%d-%s", n, strings.Repeat("x", 100<<10))) }
	oci := map[string]string{"Content-Type": ociManifest, "Authorization": "Bearer " + tok}
	expect(t, "first 100 KiB manifest", do(t, "PUT", u+"/v2/team/app/manifests/one", oci, big(1)), 201, "")
	expect(t, "second", do(t, "PUT", u+"/v2/team/app/manifests/two", oci, big(2)), 201, "")
	want := int64(len(cfg) + len(big(1)) + len(big(2)))
	if got := usageOf(t, u, "team"); got != want {
		t.Errorf("usage = %d, want %d (the config and two manifests)", got, want)
	}
	r := do(t, "PUT", u+"/v2/team/app/manifests/three", oci, big(3))
	expect(t, "third (over quota)", r, 403, "DENIED")
	if !strings.Contains(string(r.body), "quota of namespace team exceeded") {
		t.Errorf("refusal does not name the quota: %s", r.body)
	}
	if r := do(t, "GET", u+"/v2/team/app/manifests/"+digestOf(big(3)), bearer(tok), nil); r.status != 404 {
		t.Errorf("refused manifest: GET gives %d, want 404 (not stored)", r.status)
	}
	expect(t, "a manifest the repository has costs nothing", do(t, "PUT", u+"/v2/team/app/manifests/again", oci, big(1)), 201, "")
	expect(t, "mount config", do(t, "POST", u+"/v2/team/b/blobs/uploads/?mount="+digestOf(cfg)+"&from=team/app", bearer(tok), nil), 201, "")
	expect(t, "the same manifest in another repository is stored again", do(t, "PUT", u+"/v2/team/b/manifests/one", oci, big(1)), 403, "DENIED")
	if got := usageOf(t, u, "team"); got != want {
		t.Errorf("usage after refusals = %d, want %d", got, want)
	}
	tooBig := imageManifest(cfg, strings.Repeat("y", 1<<20))
	expect(t, "size limit still applies", do(t, "PUT", u+"/v2/team/app/manifests/huge", oci, tooBig), 413, "SIZE_INVALID")
}

// TestUploadsCountAgainstQuota: a chunk that would take the namespace's
// usage plus the upload past the quota is refused with DENIED, streamed or
// with a length, in a PATCH or in the final PUT, and the upload stays as it
// was before that chunk.
func TestUploadsCountAgainstQuota(t *testing.T) {
	ts, _ := authServer(t)
	u := ts.URL
	admin := map[string]string{"Authorization": basic("admin", adminPass)}
	if r := do(t, "PUT", u+"/api/v1/namespaces/team/quota", admin, []byte(`{"bytes":100}`)); r.status != 200 {
		t.Fatalf("set quota: %d %s", r.status, r.body)
	}
	tok := tokenFor(t, u, "bob", "bob-pass-1", "repository:team/app:pull,push", "repository:team/b:pull,push")
	data := []byte(strings.Repeat("d", 100))
	start := do(t, "POST", u+"/v2/team/app/blobs/uploads/", bearer(tok), nil)
	loc := u + start.header.Get("Location")
	expect(t, "first 60 bytes (streamed)", doChunked(t, "PATCH", loc, bearer(tok), data[:60]), 202, "")
	over := []byte(strings.Repeat("o", 60))
	r := doChunked(t, "PATCH", loc, bearer(tok), over)
	expect(t, "60 more, streamed", r, 403, "DENIED")
	if !strings.Contains(string(r.body), "quota of namespace team exceeded") {
		t.Errorf("refusal does not name the quota: %s", r.body)
	}
	withRange := map[string]string{"Authorization": "Bearer " + tok, "Content-Range": "60-119"}
	expect(t, "60 more, with a length", do(t, "PATCH", loc, withRange, over), 403, "DENIED")
	expect(t, "60 more in the final PUT", do(t, "PUT", loc+"?digest="+digestOf(append(data[:60:60], over...)), bearer(tok), over), 403, "DENIED")
	if st := do(t, "GET", loc, bearer(tok), nil); st.status != 204 || st.header.Get("Range") != "0-59" {
		t.Fatalf("after refused chunks: %d Range %q, want 204 0-59", st.status, st.header.Get("Range"))
	}
	expect(t, "the rest fits", do(t, "PUT", loc+"?digest="+digestOf(data), bearer(tok), data[60:]), 201, "")
	if got := do(t, "GET", u+"/v2/team/app/blobs/"+digestOf(data), bearer(tok), nil); string(got.body) != string(data) {
		t.Fatalf("blob = %q, want %q (refused chunks left a trace)", got.body, data)
	}
	if got := usageOf(t, u, "team"); got != 100 {
		t.Errorf("usage = %d, want 100", got)
	}
	// The namespace is full, but a blob it holds costs nothing, even
	// uploaded again under its digest.
	expect(t, "held blob, monolithic", do(t, "POST", u+"/v2/team/b/blobs/uploads/?digest="+digestOf(data), bearer(tok), data), 201, "")
	expect(t, "new blob, monolithic", do(t, "POST", u+"/v2/team/b/blobs/uploads/?digest="+digestOf(over), bearer(tok), over), 403, "DENIED")
	// A body larger than the held blob it names is no upload of it: it is
	// cut off at the blob's size, not written whole and then refused.
	big := []byte(strings.Repeat("b", 8<<20))
	expect(t, "8 MiB under a held 100-byte blob's digest", do(t, "POST", u+"/v2/team/b/blobs/uploads/?digest="+digestOf(data), bearer(tok), big), 403, "DENIED")
}

// TestUploadSessionsAreBounded: a namespace holds at most 100 open upload
// sessions; the next is refused until one ends, and other namespaces are
// not affected.
func TestUploadSessionsAreBounded(t *testing.T) {
	ts, _ := authServer(t)
	u := ts.URL
	tok := tokenFor(t, u, "admin", adminPass, "repository:team/app:pull,push", "repository:team/other:pull,push", "repository:other/app:pull,push")
	var first string
	for i := 0; i < 100; i++ {
		r := do(t, "POST", u+"/v2/team/app/blobs/uploads/", bearer(tok), nil)
		if r.status != 202 {
			t.Fatalf("upload %d: %d %s", i, r.status, r.body)
		}
		if first == "" {
			first = u + r.header.Get("Location")
		}
	}
	r := do(t, "POST", u+"/v2/team/other/blobs/uploads/", bearer(tok), nil)
	expect(t, "101st session of the namespace", r, 429, "TOOMANYREQUESTS")
	if !strings.Contains(string(r.body), "upload sessions") {
		t.Errorf("refusal does not say why: %s", r.body)
	}
	blob := []byte("monolithic")
	expect(t, "monolithic upload too", do(t, "POST", u+"/v2/team/app/blobs/uploads/?digest="+digestOf(blob), bearer(tok), blob), 429, "TOOMANYREQUESTS")
	expect(t, "another namespace", do(t, "POST", u+"/v2/other/app/blobs/uploads/", bearer(tok), nil), 202, "")
	expect(t, "cancel one", do(t, "DELETE", first, bearer(tok), nil), 204, "")
	expect(t, "a slot is free again", do(t, "POST", u+"/v2/team/app/blobs/uploads/?digest="+digestOf(blob), bearer(tok), blob), 201, "")
}

// TestMultiRangeBlobGet: a blob GET with many ranges is not answered with
// a multipart body of as many parts; a single range still gets 206.
func TestMultiRangeBlobGet(t *testing.T) {
	ts, _ := authServer(t)
	u := ts.URL
	tok := tokenFor(t, u, "bob", "bob-pass-1", "repository:team/app:pull,push")
	data := make([]byte, 1000)
	for i := range data {
		data[i] = byte('a' + i%26)
	}
	expect(t, "push", do(t, "POST", u+"/v2/team/app/blobs/uploads/?digest="+digestOf(data), bearer(tok), data), 201, "")
	blob := u + "/v2/team/app/blobs/" + digestOf(data)
	ranges := make([]string, 200)
	for i := range ranges {
		ranges[i] = fmt.Sprintf("%d-%d", 2*i, 2*i)
	}
	for _, rg := range []string{"bytes=" + strings.Join(ranges, ","), "bytes=0-0,2-2", "bytes=0-9, 20-29"} {
		r := do(t, "GET", blob, map[string]string{"Authorization": "Bearer " + tok, "Range": rg}, nil)
		if r.status != 416 || strings.Contains(r.header.Get("Content-Type"), "multipart") || len(r.body) >= len(data) {
			t.Errorf("Range %.40s: %d %s, %d bytes; want 416 and no multipart answer", rg, r.status, r.header.Get("Content-Type"), len(r.body))
		}
		if got := r.header.Get("Content-Range"); got != "bytes */1000" {
			t.Errorf("Range %.40s: Content-Range %q, want bytes */1000", rg, got)
		}
	}
	r := do(t, "GET", blob, map[string]string{"Authorization": "Bearer " + tok, "Range": "bytes=10-19"}, nil)
	if r.status != 206 || string(r.body) != string(data[10:20]) || r.header.Get("Content-Range") != "bytes 10-19/1000" {
		t.Errorf("single range: %d %q %q", r.status, r.body, r.header.Get("Content-Range"))
	}
	r = do(t, "GET", blob, map[string]string{"Authorization": "Bearer " + tok, "Range": "bytes=990-"}, nil)
	if r.status != 206 || string(r.body) != string(data[990:]) {
		t.Errorf("open-ended range: %d %q", r.status, r.body)
	}
	r = do(t, "GET", blob, bearer(tok), nil)
	if r.status != 200 || string(r.body) != string(data) {
		t.Errorf("whole blob: %d, %d bytes", r.status, len(r.body))
	}
}
