package server

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/config"
	"github.com/berth-registry/berth/internal/testserver"
)

// s3Counter is a reverse proxy in front of an S3 server that names and
// counts the requests going through it.
type s3Counter struct {
	mu  sync.Mutex
	ops []string
}

// wrap counts the requests on their way to next.
func (c *s3Counter) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		c.ops = append(c.ops, s3Operation(r))
		c.mu.Unlock()
		next.ServeHTTP(w, r)
	})
}

// take returns the operations counted since the last take, sorted.
func (c *s3Counter) take() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	ops := c.ops
	c.ops = nil
	slices.Sort(ops)
	return ops
}

// s3Operation names an S3 request of a path-style client.
func s3Operation(r *http.Request) string {
	q := r.URL.Query()
	_, uploads := q["uploads"]
	switch {
	case r.Method == http.MethodPut && q.Has("partNumber"):
		return "UploadPart"
	case r.Method == http.MethodPut && r.Header.Get("X-Amz-Copy-Source") != "":
		return "CopyObject"
	case r.Method == http.MethodPut:
		return "PutObject"
	case r.Method == http.MethodPost && uploads:
		return "CreateMultipartUpload"
	case r.Method == http.MethodPost && q.Has("uploadId"):
		return "CompleteMultipartUpload"
	case r.Method == http.MethodDelete && q.Has("uploadId"):
		return "AbortMultipartUpload"
	case r.Method == http.MethodDelete:
		return "DeleteObject"
	case r.Method == http.MethodGet && uploads:
		return "ListMultipartUploads"
	case r.Method == http.MethodGet && q.Has("list-type"):
		return "ListObjectsV2"
	case r.Method == http.MethodGet:
		return "GetObject"
	case r.Method == http.MethodHead && strings.Count(strings.Trim(r.URL.Path, "/"), "/") == 0:
		return "HeadBucket"
	case r.Method == http.MethodHead:
		return "HeadObject"
	}
	return r.Method + " " + r.URL.Path
}

// serveCountingS3 serves berth (no auth, SQLite metadata) on srv through
// a counting proxy, and returns its URL, the counter (the start's
// HeadBucket taken already) and the data directory.
func serveCountingS3(t *testing.T, srv *testserver.S3Server) (string, *s3Counter, string) {
	t.Helper()
	target, err := url.Parse(srv.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	counter := &s3Counter{}
	proxy := httptest.NewServer(counter.wrap(httputil.NewSingleHostReverseProxy(target)))
	t.Cleanup(proxy.Close)
	t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey)
	dataDir := t.TempDir()
	cfg := &config.Config{Addr: "127.0.0.1:0", DataDir: dataDir, Auth: "none", MaxManifestSize: 1 << 20, UploadTTL: time.Hour,
		ShutdownTimeout: time.Second, Storage: "s3", S3Bucket: srv.Bucket, S3Region: srv.Region, S3Endpoint: proxy.URL, S3PathStyle: true}
	u := serve(t, cfg).URL
	counter.take() // the start's HeadBucket
	return u, counter, dataDir
}

// ops is the sorted list of operations, for comparison with take.
func ops(groups ...[]string) []string {
	out := slices.Concat(groups...)
	slices.Sort(out)
	return out
}

// TestS3RequestsPerOperation counts the S3 requests each registry
// operation sends, through a counting proxy in front of MinIO and of
// versitygw: a blob smaller than a part is one PUT to its final object
// (no multipart upload, no state object, no copy); a blob of N parts is
// N part uploads plus the multipart upload's begin and completion,
// whether pushed in one request or in chunks; a blob HEAD, a manifest GET
// and a mount cost none; a blob GET is one GET. The server's own count
// (berth_s3_requests_total) agrees.
func TestS3RequestsPerOperation(t *testing.T) {
	testserver.EachS3(t, func(t *testing.T, srv *testserver.S3Server) {
		u, counter, _ := serveCountingS3(t, srv)

		const mib = 1 << 20
		check := func(what string, want []string) {
			t.Helper()
			if got := counter.take(); !slices.Equal(got, want) {
				t.Errorf("%s: S3 requests %q, want %q", what, got, want)
			}
		}
		blob := func(n int, seed byte) []byte {
			b := make([]byte, n)
			for i := range b {
				b[i] = seed + byte(i*7/4096)
			}
			return b
		}

		// Monolithic, a single POST with the digest, smaller than a part.
		small := blob(300*1024, 1)
		expect(t, "small blob", do(t, "POST", u+"/v2/team/app/blobs/uploads/?digest="+digestOf(small), nil, small), 201, "")
		check("monolithic POST of 300 KiB", []string{"PutObject"})

		// POST, then PUT with the whole body.
		cfgBlob := blob(2*mib+5, 2)
		r := do(t, "POST", u+"/v2/team/app/blobs/uploads/", nil, nil)
		expect(t, "start", r, 202, "")
		expect(t, "PUT", do(t, "PUT", finish(u, r, digestOf(cfgBlob)), nil, cfgBlob), 201, "")
		check("POST + PUT of 2 MiB", []string{"PutObject"})

		// POST + PUT of 20 MiB: three parts (8, 8, 4 MiB).
		big := blob(20*mib, 3)
		r = do(t, "POST", u+"/v2/team/app/blobs/uploads/", nil, nil)
		expect(t, "PUT", do(t, "PUT", finish(u, r, digestOf(big)), nil, big), 201, "")
		check("POST + PUT of 20 MiB", ops([]string{"CreateMultipartUpload", "CompleteMultipartUpload"}, slices.Repeat([]string{"UploadPart"}, 3)))

		// Chunked: three PATCHes of 16, 16 and 3 MiB, then an empty PUT:
		// five parts.
		chunked := blob(35*mib, 4)
		r = do(t, "POST", u+"/v2/team/app/blobs/uploads/", nil, nil)
		loc := r.header.Get("Location")
		for _, c := range [][2]int{{0, 16 * mib}, {16 * mib, 32 * mib}, {32 * mib, 35 * mib}} {
			r = do(t, "PATCH", abs(u, loc), map[string]string{"Content-Range": fmt.Sprintf("%d-%d", c[0], c[1]-1), "Content-Type": "application/octet-stream"}, chunked[c[0]:c[1]])
			expect(t, "PATCH", r, 202, "")
			loc = r.header.Get("Location")
		}
		expect(t, "PUT", do(t, "PUT", finish(u, r, digestOf(chunked)), nil, nil), 201, "")
		check("chunked push of 5 parts", ops([]string{"CreateMultipartUpload", "CompleteMultipartUpload"}, slices.Repeat([]string{"UploadPart"}, 5)))

		// Reads: HEADs, a manifest push and its GETs, a mount: none.
		mf := imageManifest(cfgBlob, "counted", small, big, chunked)
		expect(t, "manifest", do(t, "PUT", u+"/v2/team/app/manifests/v1", map[string]string{"Content-Type": ociManifest}, mf), 201, "")
		for _, b := range [][]byte{small, big, chunked} {
			expect(t, "HEAD", do(t, "HEAD", u+"/v2/team/app/blobs/"+digestOf(b), nil, nil), 200, "")
		}
		expect(t, "manifest GET", do(t, "GET", u+"/v2/team/app/manifests/v1", map[string]string{"Accept": ociManifest}, nil), 200, "")
		expect(t, "manifest GET", do(t, "GET", u+"/v2/team/app/manifests/"+digestOf(mf), map[string]string{"Accept": ociManifest}, nil), 200, "")
		expect(t, "manifest HEAD", do(t, "HEAD", u+"/v2/team/app/manifests/v1", map[string]string{"Accept": ociManifest}, nil), 200, "")
		expect(t, "mount", do(t, "POST", u+"/v2/team/other/blobs/uploads/?mount="+digestOf(big)+"&from=team/app", nil, nil), 201, "")
		check("blob HEADs, manifest push, GETs and HEAD, a mount", nil)

		// Pulls: one GET each, whole or a range.
		for _, b := range [][]byte{small, big, chunked} {
			r := do(t, "GET", u+"/v2/team/app/blobs/"+digestOf(b), nil, nil)
			if r.status != 200 || !bytes.Equal(r.body, b) {
				t.Fatalf("GET blob: %d, %d bytes, want %d", r.status, len(r.body), len(b))
			}
		}
		r = do(t, "GET", u+"/v2/team/app/blobs/"+digestOf(chunked), map[string]string{"Range": "bytes=20971520-20971529"}, nil)
		if r.status != 206 || !bytes.Equal(r.body, chunked[20*mib:20*mib+10]) {
			t.Fatalf("ranged GET: %d %q", r.status, r.body)
		}
		r = do(t, "GET", u+"/v2/team/app/blobs/"+digestOf(chunked), map[string]string{"Range": "bytes=3145728-6291455"}, nil)
		if r.status != 206 || !bytes.Equal(r.body, chunked[3*mib:6*mib]) {
			t.Fatalf("ranged GET of 3 MiB: %d, %d bytes", r.status, len(r.body))
		}
		check("three blob GETs and two ranged GETs", slices.Repeat([]string{"GetObject"}, 5))

		// The server's metrics count the same requests.
		m := scrape(t, u, nil)
		for op, want := range map[string]float64{"PutObject": 2, "UploadPart": 8, "CreateMultipartUpload": 2, "CompleteMultipartUpload": 2, "GetObject": 5, "CopyObject": 0, "HeadObject": 0} {
			if got := m[`berth_s3_requests_total{operation="`+op+`",outcome="ok"}`]; got != want {
				t.Errorf("berth_s3_requests_total of %s: %v, want %v", op, got, want)
			}
		}
	})
}

// abs resolves a Location header against the server's URL.
func abs(base, loc string) string {
	if strings.HasPrefix(loc, "http") {
		return loc
	}
	return base + loc
}

// finish is the URL that ends the upload r started or continued, with
// digest d.
func finish(base string, r resp, d string) string {
	loc := abs(base, r.header.Get("Location"))
	sep := "?"
	if strings.Contains(loc, "?") {
		sep = "&"
	}
	return loc + sep + "digest=" + url.QueryEscape(d)
}
