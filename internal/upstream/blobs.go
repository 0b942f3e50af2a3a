package upstream

import (
	"context"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/berth-registry/berth/internal/reference"
)

// blobPath is the path of a blob of repo; d is validated.
func blobPath(repo string, d reference.Digest) string { return "/v2/" + repo + "/blobs/" + string(d) }

// uploadsPath is the path that opens an upload to repo.
func uploadsPath(repo string) string { return "/v2/" + repo + "/blobs/uploads/" }

// GetBlob streams the blob d of repo and returns its body with its size
// (-1 when the registry does not say). Redirects are followed (to object
// storage, say) without the Authorization header when they leave the
// registry's host. The body is checked as it is read: reading it to its end
// fails with an error matching ErrDigestMismatch if the bytes do not hash to
// d, so that a caller that stores what it reads must read to io.EOF before
// it keeps the blob. The caller closes the body.
func (c *Client) GetBlob(ctx context.Context, repo string, d reference.Digest) (io.ReadCloser, int64, error) {
	if err := validRepo(repo); err != nil {
		return nil, 0, err
	}
	d, err := validDigest(d)
	if err != nil {
		return nil, 0, err
	}
	resp, err := c.do(ctx, &call{method: http.MethodGet, path: blobPath(repo, d), scopes: pullScope(repo)})
	if err != nil {
		return nil, 0, c.wrap("get blob "+repo+"@"+string(d), err)
	}
	v := &verifier{rc: resp.Body, h: d.Algorithm().New(), want: d, size: resp.ContentLength}
	return v, resp.ContentLength, nil
}

// verifier hashes a blob as it is read and checks it at the end.
type verifier struct {
	rc   io.ReadCloser
	h    hash.Hash
	want reference.Digest
	size int64 // -1: unknown
	n    int64
	err  error
}

func (v *verifier) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	n, err := v.rc.Read(p)
	v.h.Write(p[:n])
	v.n += int64(n)
	if err == io.EOF {
		switch got := v.want.Algorithm().FromHash(v.h); {
		case v.size >= 0 && v.n != v.size:
			err = fmt.Errorf("blob %s: read %d bytes of %d: %w", v.want, v.n, v.size, io.ErrUnexpectedEOF)
		case got != v.want:
			err = fmt.Errorf("blob %s: %w: the bytes hash to %s", v.want, ErrDigestMismatch, got)
		}
	}
	if err != nil {
		v.err = err
	}
	return n, err
}

func (v *verifier) Close() error { return v.rc.Close() }

// HeadBlob returns the size of the blob d of repo; a missing blob gives an
// error matching ErrNotFound.
func (c *Client) HeadBlob(ctx context.Context, repo string, d reference.Digest) (int64, error) {
	if err := validRepo(repo); err != nil {
		return 0, err
	}
	d, err := validDigest(d)
	if err != nil {
		return 0, err
	}
	resp, err := c.do(ctx, &call{method: http.MethodHead, path: blobPath(repo, d), scopes: pullScope(repo)})
	if err != nil {
		return 0, c.wrap("head blob "+repo+"@"+string(d), err)
	}
	drain(resp)
	return resp.ContentLength, nil
}

// Mount asks the registry to link the blob d of the repository from into
// repo without a copy, and reports whether it did. When the registry opens
// an upload instead (it does not have the blob, or will not mount it), the
// upload is cancelled and Mount returns false: push the blob then.
func (c *Client) Mount(ctx context.Context, repo string, d reference.Digest, from string) (bool, error) {
	if err := validRepo(repo); err != nil {
		return false, err
	}
	if err := validRepo(from); err != nil {
		return false, err
	}
	d, err := validDigest(d)
	if err != nil {
		return false, err
	}
	op := "mount " + from + "@" + string(d) + " into " + repo
	resp, err := c.do(ctx, &call{method: http.MethodPost, path: uploadsPath(repo), body: []byte{},
		query: url.Values{"mount": {string(d)}, "from": {from}}, scopes: pushScope(repo), extra: pullScope(from)})
	if err != nil {
		return false, c.wrap(op, err)
	}
	drain(resp)
	switch resp.StatusCode {
	case http.StatusCreated:
		return true, nil
	case http.StatusAccepted:
		// The registry expires abandoned uploads: a failed cancel is no
		// reason to fail the caller, who will push the blob now.
		if loc, err := location(resp); err == nil {
			c.cancelUpload(ctx, repo, loc)
		}
		return false, nil
	}
	return false, c.wrap(op, fmt.Errorf("unexpected status %d", resp.StatusCode))
}

// location resolves a response's Location against its request's URL.
func location(resp *http.Response) (*url.URL, error) {
	loc := resp.Header.Get("Location")
	if loc == "" {
		return nil, errors.New("the answer has no Location")
	}
	u, err := resp.Request.URL.Parse(loc)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errors.New("the answer's Location is not a usable URL")
	}
	u.Fragment = ""
	return u, nil
}

// cancelUpload deletes an upload session, best effort, even when ctx is
// done.
func (c *Client) cancelUpload(ctx context.Context, repo string, loc *url.URL) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if resp, err := c.do(ctx, &call{method: http.MethodDelete, url: loc, scopes: pushScope(repo)}); err == nil {
		drain(resp)
	}
}

// PutBlob uploads the blob d of size bytes, read from body, to repo: a POST
// opens the upload (and meets the authentication challenge, its body being
// empty), then one PUT to its Location with ?digest=d streams the whole
// blob (a monolithic upload). The body is read once, never replayed: if the
// PUT is refused, even with a 401, PutBlob fails and cancels the upload.
// body is not read after PutBlob returns.
func (c *Client) PutBlob(ctx context.Context, repo string, d reference.Digest, size int64, body io.Reader) error {
	if err := validRepo(repo); err != nil {
		return err
	}
	d, err := validDigest(d)
	if err != nil {
		return err
	}
	op := "put blob " + repo + "@" + string(d)
	if size < 0 {
		return c.wrap(op, fmt.Errorf("size %d: the size must be known", size))
	}
	resp, err := c.do(ctx, &call{method: http.MethodPost, path: uploadsPath(repo), body: []byte{}, scopes: pushScope(repo)})
	if err != nil {
		return c.wrap(op, fmt.Errorf("open the upload: %w", err))
	}
	drain(resp)
	if resp.StatusCode != http.StatusAccepted {
		return c.wrap(op, fmt.Errorf("open the upload: status %d, want 202", resp.StatusCode))
	}
	loc, err := location(resp)
	if err != nil {
		return c.wrap(op, fmt.Errorf("open the upload: %w", err))
	}
	put := *loc
	if put.RawQuery != "" {
		put.RawQuery += "&"
	}
	// Appended, not re-encoded: the registry's own parameters (a signed
	// upload state, say) stay byte for byte.
	put.RawQuery += "digest=" + url.QueryEscape(string(d))
	g := &guardedReader{r: body}
	defer g.close()
	resp, err = c.do(ctx, &call{method: http.MethodPut, url: &put, stream: g, length: size,
		header: http.Header{"Content-Type": {"application/octet-stream"}}, scopes: pushScope(repo)})
	if err != nil {
		g.close()
		c.cancelUpload(ctx, repo, loc)
		return c.wrap(op, err)
	}
	drain(resp)
	if h := reference.Digest(resp.Header.Get("Docker-Content-Digest")); h != "" && h != d {
		return c.wrap(op, fmt.Errorf("%w: the registry stored %.80s", ErrDigestMismatch, h))
	}
	return nil
}

// guardedReader stops reads once closed: the HTTP transport may still read
// a request body after the round trip ends, and the caller's reader is the
// caller's again once PutBlob returns.
type guardedReader struct {
	mu   sync.Mutex
	r    io.Reader
	done bool
}

func (g *guardedReader) Read(p []byte) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.done {
		return 0, errors.New("upload ended")
	}
	return g.r.Read(p)
}

func (g *guardedReader) close() {
	g.mu.Lock()
	g.done = true
	g.mu.Unlock()
}
