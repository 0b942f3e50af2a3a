package upstream_test

import (
	"context"
	"encoding/base64"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/config"
	"github.com/berth-registry/berth/internal/server"
	"github.com/berth-registry/berth/internal/testserver"
	"github.com/berth-registry/berth/internal/upstream"
)

// registry is a real registry a test runs against.
type registry struct {
	name string
	url  string
	// user and pass are the credentials to push with ("" when open).
	user, pass string
	// prefix is prepended to repository names (a namespace).
	prefix string
	// referrersAPI is set when the registry serves the referrers API.
	referrersAPI bool
	// tagPages is set when the registry paginates tag lists.
	tagPages bool
}

// adminPass is the password of berth's admin when auth is on.
const adminPass = "admin-Secret-pw-1"

// startBerth runs berth in-process on 127.0.0.1 with a fresh data
// directory: open, or with token auth, an admin password and the namespace
// team; opts change the configuration.
func startBerth(t *testing.T, auth bool, opts ...func(*config.Config)) *registry {
	t.Helper()
	cfg := &config.Config{Addr: "127.0.0.1:0", DataDir: t.TempDir(), Auth: "none", MaxManifestSize: 1 << 20,
		UploadTTL: time.Hour, ShutdownTimeout: time.Second, BodyTimeout: time.Minute, TokenTTL: 5 * time.Minute,
		ConsoleOff: true, MetricsOff: true}
	if auth {
		cfg.Auth, cfg.AdminPassword = "token", adminPass
	}
	for _, o := range opts {
		o(cfg)
	}
	srv, err := server.New(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(func() { ts.Close(); srv.Close() })
	r := &registry{name: "berth", url: ts.URL, referrersAPI: true, tagPages: true}
	if !auth {
		return r
	}
	r.name, r.user, r.pass, r.prefix = "berth-auth", "admin", adminPass, "team/"
	req, _ := http.NewRequest(http.MethodPost, ts.URL+"/api/v1/namespaces", strings.NewReader(`{"name":"team"}`))
	req.SetBasicAuth("admin", adminPass)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("create namespace: %d %s", resp.StatusCode, body)
	}
	return r
}

// startDistribution runs Debian's Distribution 2.8 until the test ends;
// without it the test is skipped, or fails when CI=true.
func startDistribution(t *testing.T) *registry {
	t.Helper()
	return &registry{name: "distribution", url: testserver.Distribution(t).URL}
}

// counter is a Transport that counts requests by path (token requests
// under "/token") and remembers the Authorization headers it saw.
type counter struct {
	mu     sync.Mutex
	paths  map[string]int
	authzs []string
}

func newCounter() *counter { return &counter{paths: map[string]int{}} }

func (c *counter) RoundTrip(req *http.Request) (*http.Response, error) {
	c.mu.Lock()
	c.paths[req.URL.Path]++
	c.authzs = append(c.authzs, req.Header.Get("Authorization"))
	c.mu.Unlock()
	return http.DefaultTransport.RoundTrip(req)
}

// count returns how many requests went to paths ending in suffix.
func (c *counter) count(suffix string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for p, k := range c.paths {
		if strings.HasSuffix(p, suffix) {
			n += k
		}
	}
	return n
}

// client returns a client of r with its credentials, over tr (nil: the
// default transport).
func (r *registry) client(t *testing.T, tr http.RoundTripper, pageSize int) *upstream.Client {
	t.Helper()
	c, err := upstream.New(upstream.Options{URL: r.url, Username: r.user, Password: r.pass, UserAgent: "upstream-test", Transport: tr, PageSize: pageSize})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// basicOK reports whether req carries Basic user:pass.
func basicOK(req *http.Request, user, pass string) bool {
	return req.Header.Get("Authorization") == "Basic "+base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}
