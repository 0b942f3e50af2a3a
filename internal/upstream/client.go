// Package upstream is a client of a remote registry that speaks the OCI
// Distribution Specification (the Docker Registry HTTP API v2): manifests,
// blobs, tag and catalog listings, referrers, cross-repository mounts and
// monolithic uploads. berth's pull-through mirror and replication use it.
//
// Authentication follows the registry's challenges: a Bearer challenge buys
// a token from its realm (with Basic credentials when the client has them,
// anonymously otherwise), cached per scope until shortly before it expires
// and shared by all goroutines; a Basic challenge sends the credentials. A
// request is retried once after a 401; a streamed blob upload gets its
// token on the bodiless POST that opens the upload, so that the PUT that
// carries the blob is sent authorised.
//
// Repository names, tags and digests are validated before they go into a
// path. Errors never contain the password or a token.
package upstream

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/berth-registry/berth/internal/reference"
)

// Media types the client accepts for manifests.
const (
	MediaTypeOCIManifest    = "application/vnd.oci.image.manifest.v1+json"
	MediaTypeOCIIndex       = "application/vnd.oci.image.index.v1+json"
	MediaTypeDockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
	MediaTypeDockerList     = "application/vnd.docker.distribution.manifest.list.v2+json"
)

// manifestAccept is the Accept header of manifest requests.
var manifestAccept = strings.Join([]string{MediaTypeOCIManifest, MediaTypeOCIIndex, MediaTypeDockerManifest, MediaTypeDockerList}, ", ")

// MaxManifestSize bounds a manifest GetManifest reads (4 MiB, as in CNCF
// Distribution and containerd).
const MaxManifestSize = 4 << 20

// Options configure a Client.
type Options struct {
	// URL is the registry's base URL, such as "https://registry-1.docker.io"
	// or "http://127.0.0.1:5000": a scheme and a host, no path, query,
	// fragment or user information.
	URL string
	// Username and Password are optional credentials, sent for Basic
	// challenges and to the token realm of Bearer challenges.
	Username, Password string
	// UserAgent is sent with every request (default "berth-upstream").
	UserAgent string
	// Transport makes the requests (default: a clone of
	// http.DefaultTransport with connection, TLS and response header
	// timeouts). The client has no overall timeout, since blobs are
	// streamed: bound requests with their context.
	Transport http.RoundTripper
	// PageSize is the n parameter of the first tag or catalog page (0 lets
	// the registry choose); later pages follow the registry's Link header.
	PageSize int
}

// Client talks to one remote registry. It is safe for concurrent use.
type Client struct {
	base      *url.URL
	user      string
	pass      string
	userAgent string
	pageSize  int
	http      *http.Client
	auth      authState
}

// New validates o and returns a client of the registry at o.URL.
func New(o Options) (*Client, error) {
	base, err := parseBase(o.URL)
	if err != nil {
		return nil, err
	}
	if o.PageSize < 0 {
		return nil, fmt.Errorf("upstream: page size %d is negative", o.PageSize)
	}
	if o.Username == "" && o.Password != "" {
		return nil, errors.New("upstream: a password without a user name")
	}
	rt := o.Transport
	if rt == nil {
		rt = defaultTransport()
	}
	ua := o.UserAgent
	if ua == "" {
		ua = "berth-upstream"
	}
	c := &Client{base: base, user: o.Username, pass: o.Password, userAgent: ua, pageSize: o.PageSize}
	c.http = &http.Client{Transport: rt, CheckRedirect: checkRedirect}
	c.auth.tokens = map[string]cachedToken{}
	return c, nil
}

// parseBase validates a registry's base URL.
func parseBase(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		// url.Error repeats the URL, which may hold credentials.
		return nil, errors.New("upstream: the registry URL does not parse")
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("upstream: registry URL scheme %q: want http or https", u.Scheme)
	case u.User != nil:
		return nil, errors.New("upstream: the registry URL must not hold credentials (use Username and Password)")
	case u.Host == "" || u.Hostname() == "":
		return nil, errors.New("upstream: the registry URL has no host")
	case u.Opaque != "" || (u.Path != "" && u.Path != "/"):
		return nil, fmt.Errorf("upstream: the registry URL must have no path, has %q", u.Path)
	case u.RawQuery != "" || u.ForceQuery:
		return nil, errors.New("upstream: the registry URL must have no query")
	case u.Fragment != "" || strings.Contains(raw, "#"):
		return nil, errors.New("upstream: the registry URL must have no fragment")
	}
	return &url.URL{Scheme: u.Scheme, Host: u.Host}, nil
}

// defaultTransport is a clone of http.DefaultTransport with timeouts for
// each step short of the body, which may stream for long.
func defaultTransport() http.RoundTripper {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DialContext = (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	t.TLSHandshakeTimeout = 10 * time.Second
	t.ResponseHeaderTimeout = 2 * time.Minute
	t.ExpectContinueTimeout = time.Second
	t.IdleConnTimeout = 90 * time.Second
	t.MaxIdleConnsPerHost = 16
	return t
}

// maxRedirects bounds the redirects one request follows.
const maxRedirects = 10

// checkRedirect follows up to maxRedirects redirects and never sends the
// Authorization header to a host other than the one first asked (Go's
// client keeps it for another port of the same host name): blob GETs are
// redirected to object storage with presigned URLs.
func checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= maxRedirects {
		return fmt.Errorf("stopped after %d redirects", maxRedirects)
	}
	if !strings.EqualFold(req.URL.Host, via[0].URL.Host) || req.URL.Scheme != via[0].URL.Scheme {
		req.Header.Del("Authorization")
	}
	return nil
}

// Host returns the registry's host[:port].
func (c *Client) Host() string { return c.base.Host }

// call is one request to the registry.
type call struct {
	method string
	path   string // absolute path, such as /v2/<name>/tags/list
	query  url.Values
	url    *url.URL // instead of path and query: a URL the registry gave
	header http.Header
	body   []byte // replayable body (nil: none)
	// stream is a body that cannot be replayed, of length bytes: the
	// request is sent once, with the token the cache holds.
	stream io.Reader
	length int64
	// scopes are the token scopes the request needs when the registry's
	// challenge names none; extra are added to the challenge's (a mount's
	// source repository).
	scopes []string
	extra  []string
}

// pullScope and pushScope are the scopes of reads and writes to repo.
func pullScope(repo string) []string { return []string{"repository:" + repo + ":pull"} }
func pushScope(repo string) []string { return []string{"repository:" + repo + ":pull,push"} }

// target returns the URL the call goes to.
func (c *Client) target(k *call) *url.URL {
	if k.url != nil {
		return k.url
	}
	u := *c.base
	u.Path = k.path
	if len(k.query) > 0 {
		u.RawQuery = k.query.Encode()
	}
	return &u
}

// send makes one attempt of k with the Authorization value authz.
func (c *Client) send(ctx context.Context, k *call, authz string) (*http.Response, error) {
	var body io.Reader
	if k.body != nil {
		body = bytes.NewReader(k.body)
	}
	req, err := http.NewRequestWithContext(ctx, k.method, c.target(k).String(), body)
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	if k.stream != nil {
		req.ContentLength = k.length
		req.Body = io.NopCloser(k.stream)
		if k.length == 0 {
			req.Body = http.NoBody
		}
	}
	for name, v := range k.header {
		req.Header[name] = v
	}
	req.Header.Set("User-Agent", c.userAgent)
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, scrubURLError(err)
	}
	return resp, nil
}

// scrubURLError drops the query from a url.Error's URL: an upload's
// location or a presigned redirect may carry secrets in it.
func scrubURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		if u, perr := url.Parse(ue.URL); perr == nil {
			u.RawQuery, u.User = "", nil
			return &url.Error{Op: ue.Op, URL: u.String(), Err: ue.Err}
		}
	}
	return err
}

// do sends k, answering one authentication challenge, and returns a 2xx
// response (whose body the caller closes) or an error: a *StatusError for
// other statuses.
func (c *Client) do(ctx context.Context, k *call) (*http.Response, error) {
	var authz string
	if k.url == nil || c.sameOrigin(k.url) {
		// Credentials go to the registry only, not to a Location on
		// another host.
		authz = c.cachedAuthorization(k)
	}
	resp, err := c.send(ctx, k, authz)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode == http.StatusUnauthorized && k.stream == nil && c.sameOrigin(resp.Request.URL) {
		challenges := resp.Header.Values("WWW-Authenticate")
		drain(resp)
		authz, err = c.answer(ctx, challenges, k)
		if err != nil {
			return nil, err
		}
		if resp, err = c.send(ctx, k, authz); err != nil {
			return nil, err
		}
	}
	if resp.StatusCode/100 != 2 {
		return nil, c.statusError(resp, authz)
	}
	return resp, nil
}

// sameOrigin reports whether u is on the registry (not a redirect target).
func (c *Client) sameOrigin(u *url.URL) bool {
	return u.Scheme == c.base.Scheme && strings.EqualFold(u.Host, c.base.Host)
}

// drain reads a little of a response body, so that the connection can be
// reused, and closes it.
func drain(resp *http.Response) {
	_, _ = io.CopyN(io.Discard, resp.Body, 64<<10)
	resp.Body.Close()
}

// validRepo checks a repository name before it goes into a path.
func validRepo(repo string) error {
	if err := reference.ValidateName(repo); err != nil {
		return fmt.Errorf("upstream: %w", err)
	}
	return nil
}

// validRef checks a manifest reference, a tag or a digest.
func validRef(ref string) error {
	if reference.IsDigest(ref) {
		_, err := validDigest(reference.Digest(ref))
		return err
	}
	if err := reference.ValidateTag(ref); err != nil {
		return fmt.Errorf("upstream: %w", err)
	}
	return nil
}

// validDigest checks a digest before it goes into a path or a query.
func validDigest(d reference.Digest) (reference.Digest, error) {
	p, err := reference.ParseDigest(string(d))
	if err != nil {
		return "", fmt.Errorf("upstream: %w", err)
	}
	return p, nil
}

// wrap adds an operation's context to an error.
func (c *Client) wrap(op string, err error) error {
	return fmt.Errorf("upstream %s: %s: %w", c.base.Host, op, err)
}
