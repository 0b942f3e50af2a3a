package upstream_test

// Cases a real registry does not produce, on httptest servers: a Basic
// challenge, a redirect to another host, content that does not match its
// digest, a PUT refused with 401.

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/berth-registry/berth/internal/reference"
	"github.com/berth-registry/berth/internal/upstream"
)

const manifestBody = `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[]}`

// TestBasicChallenge: a registry that asks for Basic credentials gets them,
// after one challenge; a wrong password (echoed by the registry) stays out
// of the error.
func TestBasicChallenge(t *testing.T) {
	var challenges atomic.Int32
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !basicOK(r, "bob", "bob-Secret-1") {
			challenges.Add(1)
			user, pass, _ := r.BasicAuth()
			w.Header().Set("WWW-Authenticate", `Basic realm="test registry"`)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"errors":[{"code":"UNAUTHORIZED","message":"bad login `+user+`:`+pass+` `+r.Header.Get("Authorization")+`"}]}`)
			return
		}
		w.Header().Set("Content-Type", upstream.MediaTypeOCIManifest)
		w.Header().Set("Docker-Content-Digest", string(reference.SHA256.FromBytes([]byte(manifestBody))))
		io.WriteString(w, manifestBody)
	}))
	defer ts.Close()
	ctx := ctxFor(t)
	c, err := upstream.New(upstream.Options{URL: ts.URL, Username: "bob", Password: "bob-Secret-1"})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		d, body, err := c.GetManifest(ctx, "a/b", "v1")
		if err != nil || string(body) != manifestBody || d.MediaType != upstream.MediaTypeOCIManifest {
			t.Fatalf("GetManifest = %+v, %q, %v", d, body, err)
		}
	}
	if n := challenges.Load(); n != 1 {
		t.Errorf("%d challenges, want 1: later requests send Basic at once", n)
	}

	wrong, err := upstream.New(upstream.Options{URL: ts.URL, Username: "bob", Password: "not-Bobs-pw"})
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = wrong.GetManifest(ctx, "a/b", "v1")
	var se *upstream.StatusError
	if !errors.As(err, &se) || se.Status != 401 || se.Code != "UNAUTHORIZED" {
		t.Fatalf("wrong password: %v, want a 401", err)
	}
	if strings.Contains(err.Error(), "not-Bobs-pw") || strings.Contains(err.Error(), "Ym9i") {
		t.Errorf("the error holds the credentials: %v", err)
	}
	anon, _ := upstream.New(upstream.Options{URL: ts.URL})
	if _, _, err := anon.GetManifest(ctx, "a/b", "v1"); !errors.As(err, &se) || se.Status != 401 {
		t.Errorf("Basic challenge without credentials: %v, want a 401", err)
	}
}

// TestRedirectDropsAuthorization: a blob GET redirected to another host
// (object storage) follows the redirect without the registry's
// Authorization header; Go's client alone would keep it for another port
// of the same host name.
func TestRedirectDropsAuthorization(t *testing.T) {
	blob := []byte("layer bytes")
	d := reference.SHA256.FromBytes(blob)
	var storageAuthz atomic.Value
	storage := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		storageAuthz.Store(r.Header.Get("Authorization") + "|" + r.URL.RawQuery)
		w.Write(blob)
	}))
	defer storage.Close()
	reg := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !basicOK(r, "bob", "pw-1234") {
			w.Header().Set("WWW-Authenticate", `Basic realm="r"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		http.Redirect(w, r, storage.URL+"/bucket/blob?X-Amz-Signature=abc", http.StatusTemporaryRedirect)
	}))
	defer reg.Close()
	c, err := upstream.New(upstream.Options{URL: reg.URL, Username: "bob", Password: "pw-1234"})
	if err != nil {
		t.Fatal(err)
	}
	rc, _, err := c.GetBlob(ctxFor(t), "a/b", d)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, blob) {
		t.Fatalf("GetBlob = %q, %v", got, err)
	}
	if v, _ := storageAuthz.Load().(string); v != "|X-Amz-Signature=abc" {
		t.Errorf("storage saw Authorization|query %q, want none and the presigned query", v)
	}
}

// TestDigestMismatch: content that does not hash to the digest asked for,
// or announced, is refused.
func TestDigestMismatch(t *testing.T) {
	good := reference.SHA256.FromBytes([]byte(manifestBody))
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasSuffix(r.URL.Path, "/manifests/lying"):
			w.Header().Set("Docker-Content-Digest", string(reference.SHA256.FromBytes([]byte("else"))))
		case strings.Contains(r.URL.Path, "/blobs/"):
			io.WriteString(w, "tampered blob")
			return
		}
		w.Header().Set("Content-Type", upstream.MediaTypeOCIManifest)
		io.WriteString(w, manifestBody+" ")
	}))
	defer ts.Close()
	ctx := ctxFor(t)
	c, _ := upstream.New(upstream.Options{URL: ts.URL})
	if _, _, err := c.GetManifest(ctx, "a/b", string(good)); !errors.Is(err, upstream.ErrDigestMismatch) {
		t.Errorf("GetManifest by digest of other bytes: %v, want ErrDigestMismatch", err)
	}
	if _, _, err := c.GetManifest(ctx, "a/b", "lying"); !errors.Is(err, upstream.ErrDigestMismatch) {
		t.Errorf("GetManifest with a wrong Docker-Content-Digest: %v, want ErrDigestMismatch", err)
	}
	d, body, err := c.GetManifest(ctx, "a/b", "v1")
	if err != nil || d.Digest != reference.SHA256.FromBytes(body) {
		t.Errorf("GetManifest by tag = %+v, %v; want the computed digest", d, err)
	}
	rc, _, err := c.GetBlob(ctx, "a/b", good)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if _, err := io.ReadAll(rc); !errors.Is(err, upstream.ErrDigestMismatch) {
		t.Errorf("reading a tampered blob: %v, want ErrDigestMismatch", err)
	}
}

// TestStreamedPutNotRetried: a PUT refused with 401 is not replayed (its
// body is a stream); PutBlob fails and cancels the upload, whose Location
// (absolute, with a query) keeps its parameters.
func TestStreamedPutNotRetried(t *testing.T) {
	var puts, deletes atomic.Int32
	var putQuery atomic.Value
	var ts *httptest.Server
	ts = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodPost:
			w.Header().Set("Location", ts.URL+"/v2/a/b/blobs/uploads/u1?_state=x%2By")
			w.WriteHeader(http.StatusAccepted)
		case http.MethodPut:
			puts.Add(1)
			putQuery.Store(r.URL.RawQuery)
			w.Header().Set("WWW-Authenticate", `Bearer realm="`+ts.URL+`/token"`)
			w.WriteHeader(http.StatusUnauthorized)
		case http.MethodDelete:
			deletes.Add(1)
			w.WriteHeader(http.StatusNoContent)
		}
	}))
	defer ts.Close()
	c, _ := upstream.New(upstream.Options{URL: ts.URL})
	b := []byte("blob")
	d := reference.SHA256.FromBytes(b)
	err := c.PutBlob(ctxFor(t), "a/b", d, int64(len(b)), bytes.NewReader(b))
	var se *upstream.StatusError
	if !errors.As(err, &se) || se.Status != 401 {
		t.Fatalf("PutBlob = %v, want the 401", err)
	}
	if puts.Load() != 1 || deletes.Load() != 1 {
		t.Errorf("%d PUTs and %d DELETEs, want 1 and 1", puts.Load(), deletes.Load())
	}
	if q, _ := putQuery.Load().(string); q != "_state=x%2By&digest="+strings.ReplaceAll(string(d), ":", "%3A") {
		t.Errorf("PUT query %q", q)
	}
}

// TestBadNames: names, tags and digests that could change the path are
// refused before any request.
func TestBadNames(t *testing.T) {
	c, err := upstream.New(upstream.Options{URL: "http://127.0.0.1:1", Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		t.Errorf("request sent: %s %s", r.Method, r.URL)
		return nil, errors.New("no requests")
	})})
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxFor(t)
	good := reference.SHA256.FromBytes(nil)
	for _, repo := range []string{"", "../x", "a/../../_catalog", "A", "a//b", "a/", "a%2fb", "a?b", "a#b", "a b", "a/b/..", "a\nb"} {
		if _, err := c.HeadManifest(ctx, repo, "v1"); err == nil {
			t.Errorf("HeadManifest(%q) accepted", repo)
		}
		if _, err := c.Tags(ctx, repo); err == nil {
			t.Errorf("Tags(%q) accepted", repo)
		}
		if _, err := c.Mount(ctx, "a/b", good, repo); err == nil {
			t.Errorf("Mount from %q accepted", repo)
		}
	}
	for _, ref := range []string{"", "../../x", "a/b", ".x", "x?y", "sha256:zz", "sha256:../../" + strings.Repeat("a", 58), "md5:abc", strings.Repeat("a", 129)} {
		if _, _, err := c.GetManifest(ctx, "a/b", ref); err == nil {
			t.Errorf("GetManifest(%q) accepted", ref)
		}
		if _, err := c.PutManifest(ctx, "a/b", ref, upstream.MediaTypeOCIManifest, []byte("{}")); err == nil {
			t.Errorf("PutManifest(%q) accepted", ref)
		}
	}
	for _, s := range []string{"", "sha256:" + strings.Repeat("A", 64), "sha256:../" + strings.Repeat("a", 61), "x"} {
		d := reference.Digest(s)
		if _, _, err := c.GetBlob(ctx, "a/b", d); err == nil {
			t.Errorf("GetBlob(%q) accepted", d)
		}
		if err := c.PutBlob(ctx, "a/b", d, 0, bytes.NewReader(nil)); err == nil {
			t.Errorf("PutBlob(%q) accepted", d)
		}
		if _, err := c.Referrers(ctx, "a/b", d); err == nil {
			t.Errorf("Referrers(%q) accepted", d)
		}
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestNewValidatesURL: only a scheme and a host; an error never repeats
// credentials put in the URL.
func TestNewValidatesURL(t *testing.T) {
	for _, u := range []string{"", "registry.example.com", "ftp://h", "http://", "http:///x", "http://h/v2", "http://h?x=1", "http://h#f",
		"https://user:Pass-In-URL@h", "http://h:port"} {
		if _, err := upstream.New(upstream.Options{URL: u}); err == nil {
			t.Errorf("New(%q) accepted", u)
		} else if strings.Contains(err.Error(), "Pass-In-URL") {
			t.Errorf("New(%q): the error holds the password: %v", u, err)
		}
	}
	for u, host := range map[string]string{"https://registry-1.docker.io": "registry-1.docker.io", "http://127.0.0.1:5000/": "127.0.0.1:5000", "http://[::1]:5000": "[::1]:5000"} {
		c, err := upstream.New(upstream.Options{URL: u})
		if err != nil || c.Host() != host {
			t.Errorf("New(%q): host %v, %v; want %s", u, c, err, host)
		}
	}
}
