package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/config"
)

// testServer starts berth's handler on a loopback port with a fresh data
// directory.
func testServer(t *testing.T) (*httptest.Server, string) {
	t.Helper()
	dir := t.TempDir()
	cfg := &config.Config{Addr: "127.0.0.1:0", DataDir: dir, Auth: "none", MaxManifestSize: 1 << 20, UploadTTL: 3600e9, ShutdownTimeout: 1e9, BodyTimeout: 300 * time.Millisecond}
	return serve(t, cfg), dir
}

// serve builds berth from cfg and serves its handler on a loopback port
// until the test ends.
func serve(t *testing.T, cfg *config.Config) *httptest.Server {
	t.Helper()
	srv, err := New(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(func() { ts.Close(); srv.Close() })
	return ts
}

type resp struct {
	status int
	header http.Header
	body   []byte
}

func (r resp) code() string {
	var e struct {
		Errors []struct{ Code string } `json:"errors"`
	}
	if json.Unmarshal(r.body, &e) != nil || len(e.Errors) == 0 {
		return ""
	}
	return e.Errors[0].Code
}

func do(t *testing.T, method, url string, hdr map[string]string, body []byte) resp {
	t.Helper()
	return send(t, method, url, hdr, bytes.NewReader(body))
}

// send makes one request and reads the whole answer.
func send(t *testing.T, method, url string, hdr map[string]string, body io.Reader) resp {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return resp{res.StatusCode, res.Header, b}
}

func digestOf(b []byte) string { return fmt.Sprintf("sha256:%x", sha256.Sum256(b)) }

// expect checks status and error code.
func expect(t *testing.T, what string, r resp, status int, code string) {
	t.Helper()
	if r.status != status || r.code() != code {
		t.Errorf("%s: got %d %s (%s), want %d %s", what, r.status, r.code(), r.body, status, code)
	}
}

// storedFiles lists the committed blobs and open uploads on disk.
func storedFiles(t *testing.T, dir string) []string {
	var out []string
	for _, sub := range []string{"blobs", "uploads"} {
		_ = filepath.WalkDir(filepath.Join(dir, sub), func(p string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				out = append(out, p)
			}
			return nil
		})
	}
	return out
}

func TestBadInputStoresNothing(t *testing.T) {
	ts, dir := testServer(t)
	u := ts.URL
	content := []byte("layer content")
	good := digestOf(content)
	wrong := digestOf([]byte("something else"))
	man := func(layer string) []byte {
		return []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",` +
			`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"` + layer + `","size":13},"layers":[]}`)
	}
	oci := map[string]string{"Content-Type": "application/vnd.oci.image.manifest.v1+json"}

	// Blob digest mismatch, monolithic and chunked.
	expect(t, "monolithic digest mismatch", do(t, "POST", u+"/v2/r/blobs/uploads/?digest="+wrong, nil, content), 400, "DIGEST_INVALID")
	start := do(t, "POST", u+"/v2/r/blobs/uploads/", nil, nil)
	loc := u + start.header.Get("Location")
	expect(t, "patch", do(t, "PATCH", loc, map[string]string{"Content-Range": "0-12"}, content), 202, "")
	expect(t, "chunked digest mismatch", do(t, "PUT", loc+"?digest="+wrong, nil, nil), 400, "DIGEST_INVALID")
	expect(t, "upload gone after mismatch", do(t, "GET", loc, nil, nil), 404, "BLOB_UPLOAD_UNKNOWN")
	expect(t, "blob not stored", do(t, "HEAD", u+"/v2/r/blobs/"+wrong, nil, nil), 404, "")
	expect(t, "invalid digest", do(t, "POST", u+"/v2/r/blobs/uploads/?digest=sha256:xyz", nil, content), 400, "DIGEST_INVALID")

	// Out-of-order and overlapping chunks.
	start = do(t, "POST", u+"/v2/r/blobs/uploads/", nil, nil)
	loc = u + start.header.Get("Location")
	expect(t, "first chunk", do(t, "PATCH", loc, map[string]string{"Content-Range": "0-4"}, content[:5]), 202, "")
	r := do(t, "PATCH", loc, map[string]string{"Content-Range": "7-12"}, content[7:])
	expect(t, "gap chunk", r, 416, "BLOB_UPLOAD_INVALID")
	if r.header.Get("Range") != "0-4" {
		t.Errorf("416 Range = %q, want 0-4", r.header.Get("Range"))
	}
	expect(t, "overlapping chunk", do(t, "PATCH", loc, map[string]string{"Content-Range": "3-12"}, content[3:]), 416, "BLOB_UPLOAD_INVALID")
	expect(t, "range/length disagree", do(t, "PATCH", loc, map[string]string{"Content-Range": "5-6"}, content[5:]), 416, "BLOB_UPLOAD_INVALID")
	expect(t, "malformed range", do(t, "PATCH", loc, map[string]string{"Content-Range": "five-six"}, content[5:]), 416, "BLOB_UPLOAD_INVALID")
	if st := do(t, "GET", loc, nil, nil); st.status != 204 || st.header.Get("Range") != "0-4" {
		t.Errorf("status after rejected chunks: %d Range %q, want 204 0-4", st.status, st.header.Get("Range"))
	}
	expect(t, "cancel", do(t, "DELETE", loc, nil, nil), 204, "")

	// Invalid names, including traversal attempts the client does not clean.
	for _, p := range []string{"/v2/../../etc/manifests/x", "/v2/a/%2e%2e/b/manifests/x", "/v2/%2e%2e/tags/list", "/v2/UPPER/manifests/x", "/v2/a%2F..%2Fb/blobs/uploads/"} {
		req, _ := http.NewRequest("GET", u+"/", nil)
		req.URL.Opaque = p
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		expect(t, "name "+p, resp{res.StatusCode, res.Header, b}, 400, "NAME_INVALID")
	}

	// Manifests: malformed, oversized, digest mismatch, unknown media type,
	// missing blobs, invalid tag.
	expect(t, "malformed manifest", do(t, "PUT", u+"/v2/r/manifests/v1", oci, []byte(`{"schemaVersion":2,`)), 400, "MANIFEST_INVALID")
	big := append([]byte(`{"schemaVersion":2,"annotations":{"a":"`), bytes.Repeat([]byte("x"), 1<<20)...)
	expect(t, "oversized manifest", do(t, "PUT", u+"/v2/r/manifests/v1", oci, big), 413, "SIZE_INVALID")
	expect(t, "manifest digest mismatch", do(t, "PUT", u+"/v2/r/manifests/"+wrong, oci, man(good)), 400, "DIGEST_INVALID")
	expect(t, "unknown media type", do(t, "PUT", u+"/v2/r/manifests/v1", map[string]string{"Content-Type": "application/x-nope"}, man(good)), 400, "MANIFEST_INVALID")
	expect(t, "missing blob", do(t, "PUT", u+"/v2/r/manifests/v1", oci, man(good)), 400, "MANIFEST_BLOB_UNKNOWN")
	expect(t, "invalid tag", do(t, "PUT", u+"/v2/r/manifests/-bad", oci, man(good)), 400, "MANIFEST_INVALID")

	// Nothing was stored.
	if files := storedFiles(t, dir); len(files) != 0 {
		t.Errorf("files left on disk: %v", files)
	}
	cat := do(t, "GET", u+"/v2/_catalog", nil, nil)
	if strings.TrimSpace(string(cat.body)) != `{"repositories":[]}` {
		t.Errorf("catalog = %s, want empty", cat.body)
	}
	expect(t, "tags of never-created repo", do(t, "GET", u+"/v2/r/tags/list", nil, nil), 404, "NAME_UNKNOWN")

	// The same content uploaded properly is accepted, and then the manifest.
	expect(t, "good blob", do(t, "POST", u+"/v2/r/blobs/uploads/?digest="+good, nil, content), 201, "")
	expect(t, "good manifest", do(t, "PUT", u+"/v2/r/manifests/v1", oci, man(good)), 201, "")
	if _, err := os.Stat(filepath.Join(dir, "blobs", "sha256", good[7:9], good[7:])); err != nil {
		t.Errorf("good blob not on disk: %v", err)
	}
}
