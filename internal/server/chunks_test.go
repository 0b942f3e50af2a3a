package server

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// chunked sends body with chunked transfer encoding (no Content-Length).
type chunked struct{ io.Reader }

func doChunked(t *testing.T, method, url string, hdr map[string]string, body []byte) resp {
	t.Helper()
	return send(t, method, url, hdr, chunked{strings.NewReader(string(body))})
}

// TestRejectedChunksLeaveUploadUnchanged: a chunk shorter or longer than its
// Content-Range is refused and nothing of it is kept.
func TestRejectedChunksLeaveUploadUnchanged(t *testing.T) {
	ts, _ := testServer(t)
	u := ts.URL
	data := []byte("0123456789abcdef")
	start := do(t, "POST", u+"/v2/r/blobs/uploads/", nil, nil)
	loc := u + start.header.Get("Location")
	expect(t, "first chunk", do(t, "PATCH", loc, map[string]string{"Content-Range": "0-3"}, data[:4]), 202, "")
	r := doChunked(t, "PATCH", loc, map[string]string{"Content-Range": "4-9"}, data[4:7])
	expect(t, "short chunk", r, 400, "BLOB_UPLOAD_INVALID")
	r = doChunked(t, "PATCH", loc, map[string]string{"Content-Range": "4-5"}, data[4:10])
	expect(t, "long chunk", r, 400, "BLOB_UPLOAD_INVALID")
	if st := do(t, "GET", loc, nil, nil); st.header.Get("Range") != "0-3" {
		t.Fatalf("after rejected chunks Range = %q, want 0-3", st.header.Get("Range"))
	}
	// The upload continues and hashes correctly: the rejected bytes left
	// no trace in the data or in the running hash.
	expect(t, "next chunk", doChunked(t, "PATCH", loc, map[string]string{"Content-Range": "4-15"}, data[4:]), 202, "")
	expect(t, "finish", do(t, "PUT", loc+"?digest="+digestOf(data), nil, nil), 201, "")
	if got := do(t, "GET", u+"/v2/r/blobs/"+digestOf(data), nil, nil); string(got.body) != string(data) {
		t.Fatalf("blob = %q, want %q", got.body, data)
	}
}

// TestStalledBodyIsCutOff: a PATCH whose body stops arriving is answered
// once the body timeout passes, and the upload keeps only what it had.
func TestStalledBodyIsCutOff(t *testing.T) {
	ts, _ := testServer(t)
	start := do(t, "POST", ts.URL+"/v2/r/blobs/uploads/", nil, nil)
	loc := start.header.Get("Location")
	conn, err := net.Dial("tcp", strings.TrimPrefix(ts.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "PATCH %s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n", loc)
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer to a stalled body: %v", err)
	}
	if res.StatusCode != 400 {
		t.Fatalf("stalled body: status %d, want 400", res.StatusCode)
	}
	if st := do(t, "GET", ts.URL+loc, nil, nil); st.status != 204 || st.header.Get("Range") != "0-0" {
		t.Fatalf("after the stalled chunk: %d Range %q, want 204 0-0 (nothing kept)", st.status, st.header.Get("Range"))
	}
}

// TestMountRules: a blob deleted from every repository cannot be mounted
// back without from, and a malformed mount digest is refused.
func TestMountRules(t *testing.T) {
	ts, _ := testServer(t)
	u := ts.URL
	data := []byte("secret layer")
	d := digestOf(data)
	expect(t, "push", do(t, "POST", u+"/v2/a/blobs/uploads/?digest="+d, nil, data), 201, "")
	expect(t, "mount with from", do(t, "POST", u+"/v2/b/blobs/uploads/?mount="+d+"&from=a", nil, nil), 201, "")
	expect(t, "delete from a", do(t, "DELETE", u+"/v2/a/blobs/"+d, nil, nil), 202, "")
	expect(t, "delete from b", do(t, "DELETE", u+"/v2/b/blobs/"+d, nil, nil), 202, "")
	r := do(t, "POST", u+"/v2/c/blobs/uploads/?mount="+d, nil, nil)
	expect(t, "mount of a deleted blob falls back to an upload", r, 202, "")
	expect(t, "not readable", do(t, "GET", u+"/v2/c/blobs/"+d, nil, nil), 404, "BLOB_UNKNOWN")
	expect(t, "bad mount digest", do(t, "POST", u+"/v2/c/blobs/uploads/?mount=sha256:zz", nil, nil), 400, "DIGEST_INVALID")
}

func TestManifestContentTypeParameters(t *testing.T) {
	ts, _ := testServer(t)
	u := ts.URL
	cfg := []byte("{}")
	expect(t, "config", do(t, "POST", u+"/v2/r/blobs/uploads/?digest="+digestOf(cfg), nil, cfg), 201, "")
	man := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"` + digestOf(cfg) + `","size":2},"layers":[]}`)
	r := do(t, "PUT", u+"/v2/r/manifests/v1", map[string]string{"Content-Type": "application/vnd.oci.image.manifest.v1+json; charset=utf-8"}, man)
	expect(t, "manifest with charset", r, 201, "")
	if got := do(t, "GET", u+"/v2/r/manifests/v1", nil, nil); got.header.Get("Content-Type") != "application/vnd.oci.image.manifest.v1+json" {
		t.Fatalf("served Content-Type %q", got.header.Get("Content-Type"))
	}
	if r.header.Get("OCI-Tag") != "v1" {
		t.Errorf("OCI-Tag = %q, want v1", r.header.Get("OCI-Tag"))
	}
}
