package server

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
)

func TestQuotaRefusesBeforeKeeping(t *testing.T) {
	ts, dir := authServer(t)
	u := ts.URL
	admin := map[string]string{"Authorization": basic("admin", adminPass)}
	if r := do(t, "PUT", u+"/api/v1/namespaces/team/quota", admin, []byte(`{"bytes":100}`)); r.status != 200 {
		t.Fatalf("set quota: %d %s", r.status, r.body)
	}
	tok := tokenFor(t, u, "admin", adminPass, "repository:team/a:pull,push", "repository:team/b:pull,push")
	small := []byte(strings.Repeat("s", 60))
	big := []byte(strings.Repeat("b", 50))
	expect(t, "within quota", do(t, "POST", u+"/v2/team/a/blobs/uploads/?digest="+digestOf(small), bearer(tok), small), 201, "")
	r := do(t, "POST", u+"/v2/team/a/blobs/uploads/?digest="+digestOf(big), bearer(tok), big)
	expect(t, "over quota (monolithic)", r, 403, "DENIED")
	if !strings.Contains(string(r.body), "quota of namespace team exceeded") {
		t.Errorf("refusal does not name the quota: %s", r.body)
	}
	// Chunked: a chunk that would exceed the quota is refused and leaves
	// the upload as it was.
	start := do(t, "POST", u+"/v2/team/a/blobs/uploads/", bearer(tok), nil)
	loc := u + start.header.Get("Location")
	expect(t, "patch over quota", do(t, "PATCH", loc, bearer(tok), big), 403, "DENIED")
	if st := do(t, "GET", loc, bearer(tok), nil); st.status != 204 || st.header.Get("Range") != "0-0" {
		t.Errorf("after the refused chunk: %d Range %q, want 204 0-0", st.status, st.header.Get("Range"))
	}
	// A chunk that fits, then the namespace fills up: refused at the final
	// PUT, and the upload is gone.
	part, other := big[:30], []byte(strings.Repeat("o", 20))
	expect(t, "patch within quota", do(t, "PATCH", loc, bearer(tok), part), 202, "")
	expect(t, "meanwhile", do(t, "POST", u+"/v2/team/a/blobs/uploads/?digest="+digestOf(other), bearer(tok), other), 201, "")
	expect(t, "over quota (chunked)", do(t, "PUT", loc+"?digest="+digestOf(part), bearer(tok), nil), 403, "DENIED")
	expect(t, "upload gone", do(t, "GET", loc, bearer(tok), nil), 404, "BLOB_UPLOAD_UNKNOWN")
	expect(t, "blob not stored", do(t, "HEAD", u+"/v2/team/a/blobs/"+digestOf(part), bearer(tok), nil), 404, "")
	if n := countFiles(t, filepath.Join(dir, "blobs")); n != 2 {
		t.Errorf("%d blob files on disk, want only the two accepted ones", n)
	}
	// A blob the namespace already holds costs nothing: mounting it into
	// another repository of the namespace is fine.
	expect(t, "mount held blob", do(t, "POST", u+"/v2/team/b/blobs/uploads/?mount="+digestOf(small)+"&from=team/a", bearer(tok), nil), 201, "")
	r = do(t, "GET", u+"/api/v1/namespaces/team/usage", admin, nil)
	var usage struct {
		Used  int64 `json:"used_bytes"`
		Quota int64 `json:"quota_bytes"`
	}
	if json.Unmarshal(r.body, &usage) != nil || usage.Used != 80 || usage.Quota != 100 {
		t.Fatalf("usage = %d %s, want 80 of 100", r.status, r.body)
	}
}

func TestImmutableTags(t *testing.T) {
	ts, _ := authServer(t)
	u := ts.URL
	admin := map[string]string{"Authorization": basic("admin", adminPass)}
	bobTok := tokenFor(t, u, "bob", "bob-pass-1", "repository:team/app:pull,push,delete")
	cfg := []byte("{}")
	expect(t, "config", do(t, "POST", u+"/v2/team/app/blobs/uploads/?digest="+digestOf(cfg), bearer(bobTok), cfg), 201, "")
	man := func(note string) []byte {
		return []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"%s","size":2},"layers":[],"annotations":{"n":"%s"}}`, digestOf(cfg), note))
	}
	oci := map[string]string{"Content-Type": "application/vnd.oci.image.manifest.v1+json", "Authorization": "Bearer " + bobTok}
	expect(t, "push v1", do(t, "PUT", u+"/v2/team/app/manifests/v1", oci, man("one")), 201, "")
	if r := do(t, "POST", u+"/api/v1/immutable-rules", admin, []byte(`{"repositories":"team/*","tags":"v*"}`)); r.status != 201 {
		t.Fatalf("add rule: %d %s", r.status, r.body)
	}
	r := do(t, "PUT", u+"/v2/team/app/manifests/v1", oci, man("two"))
	expect(t, "move immutable tag", r, 403, "DENIED")
	if !strings.Contains(string(r.body), "immutable") {
		t.Errorf("refusal does not say why: %s", r.body)
	}
	expect(t, "same manifest again", do(t, "PUT", u+"/v2/team/app/manifests/v1", oci, man("one")), 201, "")
	expect(t, "new immutable tag", do(t, "PUT", u+"/v2/team/app/manifests/v2", oci, man("two")), 201, "")
	expect(t, "mutable tag moves", do(t, "PUT", u+"/v2/team/app/manifests/latest", oci, man("one")), 201, "")
	expect(t, "mutable tag moves again", do(t, "PUT", u+"/v2/team/app/manifests/latest", oci, man("two")), 201, "")
	delHdr := bearer(bobTok)
	expect(t, "delete immutable tag", do(t, "DELETE", u+"/v2/team/app/manifests/v1", delHdr, nil), 403, "DENIED")
	expect(t, "delete manifest holding an immutable tag", do(t, "DELETE", u+"/v2/team/app/manifests/"+digestOf(man("one")), delHdr, nil), 403, "DENIED")
	expect(t, "v1 still there", do(t, "GET", u+"/v2/team/app/manifests/v1", delHdr, nil), 200, "")
	// An admin may.
	adminTok := tokenFor(t, u, "admin", adminPass, "repository:team/app:pull,push,delete")
	adminOCI := map[string]string{"Content-Type": "application/vnd.oci.image.manifest.v1+json", "Authorization": "Bearer " + adminTok}
	expect(t, "admin moves v1", do(t, "PUT", u+"/v2/team/app/manifests/v1", adminOCI, man("two")), 201, "")
	expect(t, "admin deletes v1", do(t, "DELETE", u+"/v2/team/app/manifests/v1", bearer(adminTok), nil), 202, "")
}

func countFiles(t *testing.T, dir string) int {
	n := 0
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			n++
		}
		return nil
	})
	return n
}
