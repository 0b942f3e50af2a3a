package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
)

// Media types used by the workloads.
const (
	ociManifest = "application/vnd.oci.image.manifest.v1+json"
	ociConfig   = "application/vnd.oci.image.config.v1+json"
	ociLayer    = "application/vnd.oci.image.layer.v1.tar+gzip"
	// manifestAccept is what docker and containerd send when pulling.
	manifestAccept = "application/vnd.oci.image.manifest.v1+json, " +
		"application/vnd.oci.image.index.v1+json, " +
		"application/vnd.docker.distribution.manifest.v2+json, " +
		"application/vnd.docker.distribution.manifest.list.v2+json"
)

// maxBody caps how much of a non-blob response body is read.
const maxBody = 16 << 20

// httpError is an unexpected answer from a server, kept with the request
// that got it so that it can be reported exactly.
type httpError struct {
	server     string
	method     string
	url        string
	reqHeader  http.Header
	reqBody    string
	want       string
	status     string
	respHeader http.Header
	respBody   string
	err        error
}

func (e *httpError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: unexpected answer to %s %s\n", e.server, e.method, e.url)
	fmt.Fprintf(&b, "  request headers: %s\n", fmtHeader(e.reqHeader))
	if e.reqBody != "" {
		fmt.Fprintf(&b, "  request body: %s\n", e.reqBody)
	}
	fmt.Fprintf(&b, "  expected: %s\n", e.want)
	if e.err != nil {
		fmt.Fprintf(&b, "  transport error: %v\n", e.err)
		return b.String()
	}
	fmt.Fprintf(&b, "  response: %s\n", e.status)
	fmt.Fprintf(&b, "  response headers: %s\n", fmtHeader(e.respHeader))
	fmt.Fprintf(&b, "  response body: %s\n", e.respBody)
	return b.String()
}

// fmtHeader renders headers on one line in a stable order.
func fmtHeader(h http.Header) string {
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, k+": "+strings.Join(h[k], ", "))
	}
	return "{" + strings.Join(parts, "; ") + "}"
}

// snippet shortens a body for an error report.
func snippet(b []byte) string {
	if len(b) > 2048 {
		return fmt.Sprintf("%q… (%d bytes)", b[:2048], len(b))
	}
	return fmt.Sprintf("%q", b)
}

// resolve turns a path or a Location header into an absolute URL.
func (s *server) resolve(loc string) string {
	if strings.HasPrefix(loc, "http://") || strings.HasPrefix(loc, "https://") {
		return loc
	}
	return s.base + loc
}

// request describes one small request.
type request struct {
	method string
	url    string // path or absolute URL
	header http.Header
	body   []byte
	desc   string // request body description for reports; default snippet
	want   []int  // acceptable status codes
}

// do sends a small request and reads the whole response body. Any status
// not in r.want, or a transport error, becomes an *httpError.
func (s *server) do(ctx context.Context, r request) (*http.Response, []byte, error) {
	var body io.Reader
	if r.body != nil {
		body = bytes.NewReader(r.body)
	}
	req, err := http.NewRequestWithContext(ctx, r.method, s.resolve(r.url), body)
	if err != nil {
		return nil, nil, err
	}
	for k, v := range r.header {
		req.Header[k] = v
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, nil, s.fail(req, r, nil, nil, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return nil, nil, s.fail(req, r, resp, b, err)
	}
	if !slices.Contains(r.want, resp.StatusCode) {
		return resp, b, s.fail(req, r, resp, b, nil)
	}
	return resp, b, nil
}

// fail builds the *httpError for a request.
func (s *server) fail(req *http.Request, r request, resp *http.Response, body []byte, err error) *httpError {
	e := &httpError{server: s.name, method: req.Method, url: req.URL.String(),
		reqHeader: req.Header, reqBody: r.desc, want: fmt.Sprint("status ", r.want), err: err}
	if e.reqBody == "" && r.body != nil {
		e.reqBody = snippet(r.body)
	}
	if resp != nil {
		e.status, e.respHeader, e.respBody = resp.Status, resp.Header, snippet(body)
	}
	return e
}

// check turns a failed expectation about a successful response into an
// *httpError that shows the full exchange.
func (s *server) check(ok bool, resp *http.Response, body []byte, r request, what string, args ...any) error {
	if ok {
		return nil
	}
	e := s.fail(resp.Request, r, resp, body, nil)
	e.want = fmt.Sprintf(what, args...)
	return e
}

// withQuery adds a query parameter to a Location, keeping the ones the
// server put there (distribution carries its upload state in _state).
func withQuery(loc, key, val string) string {
	u, err := url.Parse(loc)
	if err != nil {
		return loc
	}
	q := u.Query()
	q.Set(key, val)
	u.RawQuery = q.Encode()
	return u.String()
}

// headBlob reports whether repo has the blob, as clients check before an
// upload.
func (s *server) headBlob(ctx context.Context, repo, dgst string) (bool, error) {
	resp, _, err := s.do(ctx, request{method: http.MethodHead, url: "/v2/" + repo + "/blobs/" + dgst,
		want: []int{http.StatusOK, http.StatusNotFound}})
	if err != nil {
		return false, err
	}
	return resp.StatusCode == http.StatusOK, nil
}

// pushBlob uploads a small blob as containerd does: POST to open an
// upload, then one PUT with the whole body and the digest.
func (s *server) pushBlob(ctx context.Context, repo string, data []byte, dgst string) error {
	post := request{method: http.MethodPost, url: "/v2/" + repo + "/blobs/uploads/", want: []int{http.StatusAccepted}}
	resp, b, err := s.do(ctx, post)
	if err != nil {
		return err
	}
	loc := resp.Header.Get("Location")
	if err := s.check(loc != "", resp, b, post, "a Location header"); err != nil {
		return err
	}
	put := request{method: http.MethodPut, url: withQuery(s.resolve(loc), "digest", dgst),
		header: http.Header{"Content-Type": {"application/octet-stream"}}, body: data,
		desc: fmt.Sprintf("%d bytes of blob %s", len(data), dgst), want: []int{http.StatusCreated}}
	resp, b, err = s.do(ctx, put)
	if err != nil {
		return err
	}
	return s.check(resp.Header.Get("Docker-Content-Digest") == dgst, resp, b, put, "Docker-Content-Digest %s", dgst)
}

// mountBlob links an existing blob of repo from into repo.
func (s *server) mountBlob(ctx context.Context, repo, from, dgst string) error {
	q := url.Values{"mount": {dgst}, "from": {from}}
	_, _, err := s.do(ctx, request{method: http.MethodPost,
		url: "/v2/" + repo + "/blobs/uploads/?" + q.Encode(), want: []int{http.StatusCreated}})
	return err
}

// putManifest stores an OCI image manifest under ref and checks the digest
// the server computed.
func (s *server) putManifest(ctx context.Context, repo, ref string, body []byte) error {
	put := request{method: http.MethodPut, url: "/v2/" + repo + "/manifests/" + ref,
		header: http.Header{"Content-Type": {ociManifest}}, body: body, want: []int{http.StatusCreated}}
	resp, b, err := s.do(ctx, put)
	if err != nil {
		return err
	}
	want := digestOf(body)
	return s.check(resp.Header.Get("Docker-Content-Digest") == want, resp, b, put, "Docker-Content-Digest %s", want)
}

// pushStreamed uploads a generated blob as the docker client does: POST,
// one PATCH streaming the whole body with chunked encoding and no
// Content-Length, then PUT ?digest=.
func (s *server) pushStreamed(ctx context.Context, repo string, size int64, seed uint64, dgst string) error {
	post := request{method: http.MethodPost, url: "/v2/" + repo + "/blobs/uploads/", want: []int{http.StatusAccepted}}
	resp, b, err := s.do(ctx, post)
	if err != nil {
		return err
	}
	if err := s.check(resp.Header.Get("Location") != "", resp, b, post, "a Location header"); err != nil {
		return err
	}
	loc := s.resolve(resp.Header.Get("Location"))
	req, err := http.NewRequestWithContext(ctx, http.MethodPatch, loc, newBlobStream(size, seed))
	if err != nil {
		return err
	}
	req.ContentLength = -1 // unknown: sent with chunked transfer encoding
	req.Header.Set("Content-Type", "application/octet-stream")
	patch := request{method: http.MethodPatch, url: loc, desc: fmt.Sprintf("%d generated bytes, chunked", size), want: []int{http.StatusAccepted}}
	presp, err := s.client.Do(req)
	if err != nil {
		return s.fail(req, patch, nil, nil, err)
	}
	b, _ = io.ReadAll(io.LimitReader(presp.Body, maxBody))
	presp.Body.Close()
	if presp.StatusCode != http.StatusAccepted {
		return s.fail(req, patch, presp, b, nil)
	}
	wantRange := fmt.Sprintf("0-%d", size-1)
	if err := s.check(presp.Header.Get("Range") == wantRange, presp, b, patch, "Range: %s", wantRange); err != nil {
		return err
	}
	if loc2 := presp.Header.Get("Location"); loc2 != "" {
		loc = s.resolve(loc2)
	}
	put := request{method: http.MethodPut, url: withQuery(loc, "digest", dgst), want: []int{http.StatusCreated}}
	resp, b, err = s.do(ctx, put)
	if err != nil {
		return err
	}
	return s.check(resp.Header.Get("Docker-Content-Digest") == dgst, resp, b, put, "Docker-Content-Digest %s", dgst)
}

// pullBlob downloads a blob, discarding it, and checks its length; with
// verify it also checks the sha256 of the body.
func (s *server) pullBlob(ctx context.Context, repo, dgst string, size int64, verify bool) error {
	r := request{method: http.MethodGet, url: "/v2/" + repo + "/blobs/" + dgst, want: []int{http.StatusOK}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.resolve(r.url), nil)
	if err != nil {
		return err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return s.fail(req, r, nil, nil, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, maxBody))
		return s.fail(req, r, resp, b, nil)
	}
	n, got, err := readBody(resp.Body, verify)
	if err != nil {
		return s.fail(req, r, resp, nil, fmt.Errorf("reading body after %d bytes: %v", n, err))
	}
	if err := s.check(n == size, resp, nil, r, "%d body bytes, got %d", size, n); err != nil {
		return err
	}
	if verify {
		return s.check(got == dgst, resp, nil, r, "body digest %s, got %s", dgst, got)
	}
	return nil
}

// readBody reads a download to its end through a 256 KiB buffer, as a
// client does, and returns its length and, with verify, its sha256 digest.
func readBody(body io.Reader, verify bool) (int64, string, error) {
	// Wrap io.Discard so that io.CopyBuffer uses our large buffer instead
	// of Discard's 8 KiB ReadFrom.
	var dst io.Writer = struct{ io.Writer }{io.Discard}
	h := sha256.New()
	if verify {
		dst = h
	}
	n, err := io.CopyBuffer(dst, body, make([]byte, 256<<10))
	if err != nil || !verify {
		return n, "", err
	}
	return n, "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}
