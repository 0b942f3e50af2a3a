// Package adminclient is the client side of berth's admin API
// (/api/v1/...): an HTTP client that renders failures as one-line errors
// with a hint, and the CLI credentials file that `berth login` writes.
package adminclient

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/berth-registry/berth/internal/tlscert"
)

// maxResponse bounds how much of a response body is read.
const maxResponse = 8 << 20

// Options configures a Client.
type Options struct {
	// URL is the server's base URL as returned by NormalizeURL.
	URL string
	// Username and Password are sent with every request as HTTP Basic auth.
	Username, Password string
	// CACertFile is a PEM bundle trusted in addition to the system roots.
	CACertFile string
	// InsecureSkipTLSVerify disables verification of the server certificate.
	InsecureSkipTLSVerify bool
	// UserAgent is sent as the User-Agent header when set.
	UserAgent string
	// Timeout bounds each request; zero means 60 seconds.
	Timeout time.Duration
	// AuthHint is appended to 401 errors, e.g. "run: berth login URL".
	AuthHint string
}

// Client talks to one berth server's admin API. It never logs or returns
// the Authorization header or the password.
type Client struct {
	base      string
	user      string
	password  string
	userAgent string
	authHint  string
	http      *http.Client
}

// New returns a Client for opts. It fails only when the CA bundle cannot
// be used.
func New(opts Options) (*Client, error) {
	tlsConf := &tls.Config{MinVersion: tls.VersionTLS12}
	if opts.CACertFile != "" {
		system, _ := x509.SystemCertPool() // nil when there is none: the bundle alone
		pool, err := tlscert.CAPool(opts.CACertFile, system)
		if err != nil {
			return nil, fmt.Errorf("CA bundle: %w", err)
		}
		tlsConf.RootCAs = pool
	}
	if opts.InsecureSkipTLSVerify {
		tlsConf.InsecureSkipVerify = true
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tlsConf
	timeout := opts.Timeout
	if timeout == 0 {
		timeout = 60 * time.Second
	}
	hc := &http.Client{
		Transport: tr,
		Timeout:   timeout,
		// A redirect would resend credentials or turn a POST into a GET;
		// report it instead so the user can fix the URL.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return &Client{
		base:      opts.URL,
		user:      opts.Username,
		password:  opts.Password,
		userAgent: opts.UserAgent,
		authHint:  opts.AuthHint,
		http:      hc,
	}, nil
}

// URL returns the server's base URL.
func (c *Client) URL() string { return c.base }

// Username returns the user name the client authenticates as.
func (c *Client) Username() string { return c.user }

// do sends a request with an optional JSON body in and decodes a
// successful response into out when out is not nil. It returns the raw
// response body.
func (c *Client) do(ctx context.Context, method, path string, in, out any) ([]byte, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, fmt.Errorf("invalid request %s %s: %v", method, path, err)
	}
	if c.user != "" {
		req.SetBasicAuth(c.user, c.password)
	}
	req.Header.Set("Accept", "application/json")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.userAgent != "" {
		req.Header.Set("User-Agent", c.userAgent)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, ctxErr
		}
		return nil, &ConnError{URL: c.base, Err: err}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
	if err != nil {
		return nil, &ConnError{URL: c.base, Err: err}
	}
	if len(data) > maxResponse {
		return nil, fmt.Errorf("response from %s %s is larger than %d bytes", method, c.base+path, maxResponse)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		if resp.StatusCode == http.StatusUnauthorized && c.user == "" {
			// No credentials: an open registry would have answered.
			return nil, &NotLoggedInError{URL: c.base}
		}
		return nil, c.apiError(resp, data)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return nil, fmt.Errorf("unexpected response from %s %s: %v", method, c.base+path, err)
		}
	}
	return data, nil
}
