package blobstore

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/berth-registry/berth/internal/reference"
	"github.com/berth-registry/berth/internal/testserver"
)

// newTestS3 returns an S3 store on srv's bucket under prefix.
func newTestS3(t testing.TB, srv *testserver.S3Server, prefix string) *S3 {
	t.Helper()
	s, err := NewS3(context.Background(), S3Options{
		Bucket:    srv.Bucket,
		Prefix:    prefix,
		Region:    srv.Region,
		Endpoint:  srv.Endpoint,
		PathStyle: true,
		AccessKey: srv.AccessKey,
		SecretKey: srv.SecretKey,
		Index:     indexFor(srv.Bucket, prefix),
	})
	if err != nil {
		t.Fatalf("NewS3: %v", err)
	}
	return s
}

// located returns the key of blob d's object, as the index records it.
func located(t testing.TB, s *S3, d reference.Digest) string {
	t.Helper()
	key, _, err := s.location(context.Background(), d)
	if err != nil {
		t.Fatalf("location of %s: %v", d, err)
	}
	return key
}

// freshPrefix returns a key prefix no other test uses.
func freshPrefix(t testing.TB) string { return "t-" + newUploadID(t)[:12] + "/" }

func TestS3Store(t *testing.T) {
	srv := testserver.S3(t)
	testStore(t, func(t *testing.T) Store {
		s := newTestS3(t, srv, freshPrefix(t))
		t.Cleanup(func() {
			if !t.Failed() {
				checkNoUploadObjects(t, srv, s)
			}
		})
		return s
	})
}

// checkNoUploadObjects fails unless the objects under objects/ are blobs'
// locations and the multipart uploads are those the open sessions record:
// nothing left by failed chunks, aborts or commits.
func checkNoUploadObjects(t testing.TB, srv *testserver.S3Server, s *S3) {
	t.Helper()
	ctx := context.Background()
	keys, mpus := listAll(t, srv, s.prefix+"objects/")
	allowed := map[string]bool{}
	s.index.BlobLocations(ctx, func(_ reference.Digest, key string, _ int64, _ time.Time) error {
		allowed[s.prefix+key] = true
		return nil
	})
	ids, err := s.index.StaleUploadStates(ctx, time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		u, err := s.readState(ctx, id)
		if err != nil {
			t.Fatalf("read state of %s: %v", id, err)
		}
		if u.MultipartID != "" {
			allowed["multipart upload of "+s.dataKey(id)] = true
		}
	}
	var leftovers []string
	for _, k := range keys {
		if !allowed[k] {
			leftovers = append(leftovers, k)
		}
	}
	for _, k := range mpus {
		if !allowed["multipart upload of "+k] {
			leftovers = append(leftovers, "multipart upload of "+k)
		}
	}
	if len(leftovers) > 0 {
		t.Errorf("left under %sobjects/: %q", s.prefix, leftovers)
	}
}

// listAll lists every key under prefix and every multipart upload.
func listAll(t testing.TB, srv *testserver.S3Server, prefix string) (keys, mpus []string) {
	t.Helper()
	ctx := context.Background()
	c := srv.Client()
	p := s3.NewListObjectsV2Paginator(c, &s3.ListObjectsV2Input{Bucket: &srv.Bucket, Prefix: aws.String(prefix), MaxKeys: aws.Int32(2)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			t.Fatalf("list: %v", err)
		}
		for _, o := range page.Contents {
			keys = append(keys, aws.ToString(o.Key))
		}
	}
	out, err := c.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: &srv.Bucket, Prefix: aws.String(prefix)})
	if err != nil {
		t.Fatalf("list multipart uploads: %v", err)
	}
	for _, m := range out.Uploads {
		mpus = append(mpus, aws.ToString(m.Key))
	}
	return keys, mpus
}

// TestS3SharedUpload continues and commits an upload through a second
// store on the same bucket and prefix, as another replica would.
func TestS3SharedUpload(t *testing.T) {
	srv := testserver.S3(t)
	prefix := freshPrefix(t)
	a, b := newTestS3(t, srv, prefix), newTestS3(t, srv, prefix)
	ctx := context.Background()
	data := testData(21*mib+5, 11)
	id := newUploadID(t)
	mustCreate(t, a, id)
	appendChunks(t, a, id, data[:5*mib], []int{5 * mib}, false)          // pending on a
	appendChunks(t, b, id, data[:14*mib], []int{5 * mib, 9 * mib}, true) // a part, via b
	if _, err := a.AppendUpload(ctx, id, 5*mib, strings.NewReader("x"), 1); !errors.Is(err, ErrOffset) {
		t.Fatalf("a appends at an offset b has moved past: %v, want ErrOffset", err)
	}
	appendChunks(t, a, id, data, []int{14 * mib, len(data) - 14*mib}, false)
	d := reference.SHA256.FromBytes(data)
	commit(t, b, id, d, int64(len(data)))
	checkBlob(t, a, d, data)
	checkBlob(t, b, d, data)
	if _, _, err := a.UploadStatus(ctx, id); !errors.Is(err, ErrUploadNotFound) {
		t.Fatalf("upload still there after commit: %v", err)
	}
	keys, mpus := listAll(t, srv, prefix)
	if len(keys) != 1 || keys[0] != a.dataKey(id) || located(t, b, d) != a.dataKey(id) || len(mpus) != 0 {
		t.Fatalf("after commit the bucket holds %q and multipart uploads %q; want only %s, where the multipart upload completed, not copied", keys, mpus, a.dataKey(id))
	}
}

// TestS3NoLeftovers checks that commits, aborts and mismatches leave only
// blobs in the bucket, even after failed chunks.
func TestS3NoLeftovers(t *testing.T) {
	srv := testserver.S3(t)
	prefix := freshPrefix(t)
	s := newTestS3(t, srv, prefix)
	ctx := context.Background()
	data := testData(18*mib, 12)
	var blobs []string

	// Commit after failed chunks of both kinds.
	id := newUploadID(t)
	mustCreate(t, s, id)
	appendChunks(t, s, id, data[:3*mib], []int{3 * mib}, false)
	if _, err := s.AppendUpload(ctx, id, 3*mib, &brokenReader{r: bytes.NewReader(data[3*mib : 15*mib])}, -1); err == nil {
		t.Fatal("failing body accepted")
	}
	if _, err := s.AppendUpload(ctx, id, 3*mib, bytes.NewReader(data[3*mib:14*mib]), 12*mib); !errors.Is(err, ErrChunkLength) {
		t.Fatalf("short chunk: %v", err)
	}
	checkNoUploadObjects(t, srv, s)
	appendChunks(t, s, id, data, []int{3 * mib, 15 * mib}, true)
	d := reference.SHA256.FromBytes(data)
	commit(t, s, id, d, int64(len(data)))
	blobs = append(blobs, located(t, s, d))

	// A failed chunk that uploaded parts 2 to 4 to a multipart upload
	// begun before, then a shorter retry: the commit must leave out the
	// parts the state does not list.
	id = newUploadID(t)
	mustCreate(t, s, id)
	big := testData(40*mib, 16)
	appendChunks(t, s, id, big[:8*mib], []int{8 * mib}, false)
	if _, err := s.AppendUpload(ctx, id, 8*mib, &brokenReader{r: bytes.NewReader(big[8*mib:])}, -1); err == nil {
		t.Fatal("failing body accepted")
	}
	checkUploadSize(t, s, id, 8*mib)
	appendChunks(t, s, id, big[:9*mib], []int{8 * mib, 1 * mib}, false)
	checkNoUploadObjects(t, srv, s)
	d = reference.SHA256.FromBytes(big[:9*mib])
	commit(t, s, id, d, 9*mib)
	checkBlob(t, s, d, big[:9*mib])
	blobs = append(blobs, located(t, s, d))

	// A small commit, straight to the blob's address.
	d = storeBlob(t, s, data[:100])
	if located(t, s, d) != s.blobKey(d) {
		t.Fatalf("a blob smaller than a part is at %s, not at its address", located(t, s, d))
	}
	blobs = append(blobs, s.blobKey(d))

	// The same content again, through a multipart upload: one object is
	// kept, the other goes.
	id = newUploadID(t)
	mustCreate(t, s, id)
	appendChunks(t, s, id, data, []int{len(data)}, false)
	commit(t, s, id, reference.SHA256.FromBytes(data), int64(len(data)))

	// A sha512 digest, checked from the completed object.
	id = newUploadID(t)
	mustCreate(t, s, id)
	appendChunks(t, s, id, big[:17*mib], []int{17 * mib}, false)
	d = reference.SHA512.FromBytes(big[:17*mib])
	commit(t, s, id, d, 17*mib)
	checkBlob(t, s, d, big[:17*mib])
	blobs = append(blobs, located(t, s, d))

	// Other bytes of the same size under that digest: refused, although
	// the digest is stored (its content is checked before it is found).
	for _, size := range []int{100, 17 * mib} {
		stored := d
		if size == 100 {
			stored = reference.SHA512.FromBytes(big[:size])
			id := newUploadID(t)
			mustCreate(t, s, id)
			appendChunks(t, s, id, big[:size], []int{size}, false)
			commit(t, s, id, stored, int64(size))
			blobs = append(blobs, located(t, s, stored))
		}
		id = newUploadID(t)
		mustCreate(t, s, id)
		other := bytes.Repeat([]byte{'x'}, size)
		appendChunks(t, s, id, other, []int{size}, false)
		if _, err := s.CommitUpload(ctx, id, stored); !errors.Is(err, ErrDigestMismatch) {
			t.Fatalf("%d other bytes committed as the stored %s: %v, want ErrDigestMismatch", size, stored, err)
		}
	}

	// Abort of a multipart upload.
	id = newUploadID(t)
	mustCreate(t, s, id)
	appendChunks(t, s, id, data, []int{len(data)}, false)
	if err := s.AbortUpload(ctx, id); err != nil {
		t.Fatal(err)
	}

	// A mismatch.
	id = newUploadID(t)
	mustCreate(t, s, id)
	appendChunks(t, s, id, data, []int{9 * mib, 9 * mib}, false)
	if _, err := s.CommitUpload(ctx, id, reference.SHA512.FromBytes(nil)); !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("commit with a wrong digest: %v", err)
	}

	// A multipart upload begun by a chunk whose process died before it
	// recorded it in the state.
	id = newUploadID(t)
	mustCreate(t, s, id)
	if _, err := s.createMultipart(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := s.AbortUpload(ctx, id); err != nil {
		t.Fatal(err)
	}

	keys, mpus := listAll(t, srv, prefix)
	if strings.Join(keys, ",") != strings.Join(slices.Sorted(slices.Values(blobs)), ",") || len(mpus) != 0 {
		t.Fatalf("bucket holds %q and multipart uploads %q; want only the blobs %q", keys, mpus, blobs)
	}
}

func TestS3RedirectURL(t *testing.T) {
	srv := testserver.S3(t)
	s := newTestS3(t, srv, "berth/")
	data := testData(9*mib+1, 13)
	d := storeBlob(t, s, data)
	var r Redirector = s
	u, err := r.RedirectURL(context.Background(), d)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(u, srv.Endpoint+"/"+srv.Bucket+"/"+located(t, s, d)+"?") || !strings.Contains(u, "X-Amz-Expires=1200") {
		t.Errorf("presigned URL %s: not the blob's object with a 20-minute expiry", u)
	}
	if strings.Contains(u, srv.SecretKey) {
		t.Fatal("presigned URL contains the secret key")
	}
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK || !bytes.Equal(got, data) {
		t.Fatalf("GET presigned URL: %s, %d bytes (want %d), %v", resp.Status, len(got), len(data), err)
	}
	// The signature covers the key: another blob's URL cannot be forged.
	key := located(t, s, d)
	other := strings.Replace(u, key+"?", key[:len(key)-1]+"0?", 1)
	if other == u {
		t.Fatal("no key to tamper with in the URL")
	}
	resp2, err := http.Get(other)
	if err != nil {
		t.Fatal(err)
	}
	resp2.Body.Close()
	if resp2.StatusCode != http.StatusForbidden {
		t.Errorf("GET of a tampered presigned URL: %s, want 403", resp2.Status)
	}
}

// TestS3ContentFetchesLazily counts the GETs of a blob that http.ServeContent
// serves: seeking fetches nothing, and a range is one ranged GET.
func TestS3ContentFetchesLazily(t *testing.T) {
	srv := testserver.S3(t)
	target, err := url.Parse(srv.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var ranges []string // of the GETs of blobs
	proxy := httputil.NewSingleHostReverseProxy(target)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") {
			mu.Lock()
			ranges = append(ranges, r.Header.Get("Range"))
			mu.Unlock()
		}
		proxy.ServeHTTP(w, r)
	}))
	defer front.Close()
	s, err := NewS3(context.Background(), S3Options{
		Bucket: srv.Bucket, Region: srv.Region, Endpoint: front.URL, PathStyle: true,
		AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, Index: indexFor(srv.Bucket, ""),
	})
	if err != nil {
		t.Fatal(err)
	}
	data := testData(3*mib, 15)
	d := storeBlob(t, s, data)

	ctx := context.Background()
	c, size, err := s.Open(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	c.Seek(0, io.SeekEnd)
	c.Seek(0, io.SeekStart)
	c.Seek(1000, io.SeekCurrent)
	mu.Lock()
	if len(ranges) != 0 {
		t.Fatalf("open and seeks made GETs with ranges %q, want none", ranges)
	}
	mu.Unlock()
	rec := httptest.NewRecorder()
	rec.Header().Set("Content-Type", "application/octet-stream")
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.Header.Set("Range", "bytes=2000000-2000099")
	http.ServeContent(rec, req, "", time.Time{}, c)
	c.Close()
	if rec.Code != http.StatusPartialContent || !bytes.Equal(rec.Body.Bytes(), data[2000000:2000100]) {
		t.Fatalf("range: %d, %d bytes", rec.Code, rec.Body.Len())
	}
	mu.Lock()
	defer mu.Unlock()
	if len(ranges) != 1 || ranges[0] != "bytes=2000000-" {
		t.Fatalf("serving a range made GETs with ranges %q; want one from 2000000", ranges)
	}
	if size != int64(len(data)) {
		t.Fatalf("size %d", size)
	}
}

func TestNewS3Errors(t *testing.T) {
	srv := testserver.S3(t)
	ctx := context.Background()
	good := S3Options{
		Bucket: srv.Bucket, Region: srv.Region, Endpoint: srv.Endpoint, PathStyle: true,
		AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, Index: indexFor(srv.Bucket, ""),
	}
	for name, mod := range map[string]func(o *S3Options){
		"missing bucket": func(o *S3Options) { o.Bucket = "no-such-bucket" },
		"wrong secret":   func(o *S3Options) { o.SecretKey = "wrong" },
		"no bucket":      func(o *S3Options) { o.Bucket = "" },
		"no index":       func(o *S3Options) { o.Index = nil },
		"half keys":      func(o *S3Options) { o.SecretKey = "" },
		"long TTL":       func(o *S3Options) { o.PresignTTL = 8 * 24 * time.Hour },
		"unreachable":    func(o *S3Options) { o.Endpoint = "http://127.0.0.1:1" },
	} {
		o := good
		mod(&o)
		cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		_, err := NewS3(cctx, o)
		cancel()
		if err == nil {
			t.Errorf("%s: NewS3 succeeded", name)
			continue
		}
		t.Logf("%s: %v", name, err)
		if !strings.HasPrefix(err.Error(), "s3: ") || strings.Contains(err.Error(), srv.SecretKey) {
			t.Errorf("%s: error %q", name, err)
		}
	}
	// The default credential chain: environment variables.
	t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey)
	t.Setenv("AWS_CONFIG_FILE", "/nonexistent")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
	o := good
	o.AccessKey, o.SecretKey, o.Region = "", "", ""
	t.Setenv("AWS_REGION", srv.Region)
	s, err := NewS3(ctx, o)
	if err != nil {
		t.Fatalf("NewS3 with credentials from the environment: %v", err)
	}
	storeBlob(t, s, []byte("env"))
}

// TestS3StateIsConditional checks that the state object is written only
// over the version it was read from, so that concurrent chunks cannot both
// win, and that a lost race is reported as ErrOffset.
func TestS3StateIsConditional(t *testing.T) {
	srv := testserver.S3(t)
	prefix := freshPrefix(t)
	a, b := newTestS3(t, srv, prefix), newTestS3(t, srv, prefix)
	ctx := context.Background()
	id := newUploadID(t)
	mustCreate(t, a, id)
	if err := b.CreateUpload(ctx, id); err == nil {
		t.Fatal("creating an upload twice succeeded")
	}
	old, err := a.readState(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	appendChunks(t, b, id, []byte("abc"), []int{3}, false)
	stale := *old
	stale.Size = 42
	if err := a.writeState(ctx, id, &stale, nil, old.Rev); !errors.Is(err, ErrStateChanged) {
		t.Fatalf("write over a changed state: %v, want ErrStateChanged", err)
	}
	checkUploadSize(t, a, id, 3)

	// Concurrent chunks at the same offset, through two stores: exactly
	// one is taken, whatever the interleaving.
	data := testData(2*9*mib, 17)
	for round := 0; round < 3; round++ {
		size, _, err := a.UploadStatus(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		chunks := [2][]byte{data[:9*mib], data[9*mib:]}
		errs := make(chan error, 2)
		for i, s := range []*S3{a, b} {
			go func() {
				_, err := s.AppendUpload(ctx, id, size, bytes.NewReader(chunks[i]), int64(len(chunks[i])))
				errs <- err
			}()
		}
		e1, e2 := <-errs, <-errs
		if (e1 == nil) == (e2 == nil) || !errors.Is(errors.Join(e1, e2), ErrOffset) {
			t.Fatalf("round %d: concurrent appends: %v and %v; want one success and one ErrOffset", round, e1, e2)
		}
		checkUploadSize(t, a, id, size+9*mib)
	}
	if err := a.AbortUpload(ctx, id); err != nil {
		t.Fatal(err)
	}
	checkNoUploadObjects(t, srv, a)

	// Concurrent commits of one upload (a client retrying through another
	// replica): the blob is stored, neither fails but for the upload
	// being already gone, and nothing is left over.
	for _, size := range []int{100, 13 * mib} {
		id := newUploadID(t)
		mustCreate(t, a, id)
		appendChunks(t, a, id, data[:size], []int{size}, false)
		d := reference.SHA256.FromBytes(data[:size])
		errs := make(chan error, 2)
		for _, s := range []*S3{a, b} {
			go func() {
				_, err := s.CommitUpload(ctx, id, d)
				errs <- err
			}()
		}
		e1, e2 := <-errs, <-errs
		for _, err := range []error{e1, e2} {
			if err != nil && !errors.Is(err, ErrUploadNotFound) {
				t.Errorf("size %d: concurrent commit: %v", size, err)
			}
		}
		if e1 != nil && e2 != nil {
			t.Errorf("size %d: both concurrent commits failed: %v, %v", size, e1, e2)
		}
		checkBlob(t, b, d, data[:size])
		checkNoUploadObjects(t, srv, a)
		if _, _, err := a.UploadStatus(ctx, id); !errors.Is(err, ErrUploadNotFound) {
			t.Errorf("size %d: upload left after commits: %v", size, err)
		}
	}
}
