package upstream_test

import (
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/config"
	"github.com/berth-registry/berth/internal/reference"
	"github.com/berth-registry/berth/internal/upstream"
)

// TestTokenCached: berth with token auth answers the first request with a
// Bearer challenge; the client buys one token per scope and sends it with
// the following requests, from any goroutine, without another challenge.
func TestTokenCached(t *testing.T) {
	r := startBerth(t, true)
	ctx := ctxFor(t)
	repo := r.prefix + "cached"
	img := pushImage(t, r.client(t, nil, 0), repo, "v1")

	tr := newCounter()
	c := r.client(t, tr, 0)
	for range 3 {
		if _, err := c.HeadManifest(ctx, repo, "v1"); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := c.GetManifest(ctx, repo, "v1"); err != nil {
		t.Fatal(err)
	}
	rc, _, err := c.GetBlob(ctx, repo, reference.SHA256.FromBytes(img.layer))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, rc)
	rc.Close()
	if _, err := c.Tags(ctx, repo); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if _, err := c.HeadManifest(ctx, repo, "v1"); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := tr.count("/token"); n != 1 {
		t.Errorf("%d token requests for pulls of one repository, want 1", n)
	}
	if n := tr.count("/manifests/v1"); n != 3+1+8+1 {
		t.Errorf("%d manifest requests, want 12 and one challenged", n)
	}

	// Pushes need another scope: one more token, then cached too.
	for _, tag := range []string{"v2", "v3"} {
		if _, err := c.PutManifest(ctx, repo, tag, upstream.MediaTypeOCIManifest, img.manifest); err != nil {
			t.Fatal(err)
		}
	}
	if n := tr.count("/token"); n != 2 {
		t.Errorf("%d token requests after pushes, want 2", n)
	}
	for _, a := range tr.authzs {
		if strings.Contains(a, adminPass) {
			t.Errorf("the password went out in clear: %q", a)
		}
	}
}

// TestTokenExpires: a token is used no longer than berth's expires_in
// (less a margin): the next request buys a new one.
func TestTokenExpires(t *testing.T) {
	r := startBerth(t, true, func(c *config.Config) { c.TokenTTL = 2 * time.Second })
	ctx := ctxFor(t)
	repo := r.prefix + "expiring"
	pushImage(t, r.client(t, nil, 0), repo, "v1")
	tr := newCounter()
	c := r.client(t, tr, 0)
	for range 2 {
		if _, err := c.HeadManifest(ctx, repo, "v1"); err != nil {
			t.Fatal(err)
		}
	}
	if n := tr.count("/token"); n != 1 {
		t.Fatalf("%d token requests, want 1", n)
	}
	time.Sleep(2 * time.Second)
	if _, err := c.HeadManifest(ctx, repo, "v1"); err != nil {
		t.Fatal(err)
	}
	if n := tr.count("/token"); n != 2 {
		t.Errorf("%d token requests after the token expired, want 2", n)
	}
}

// TestWrongPassword: berth's token endpoint refuses the credentials; the
// error says so without the password.
func TestWrongPassword(t *testing.T) {
	r := startBerth(t, true)
	ctx := ctxFor(t)
	const wrong = "Wrong-Password-42"
	c, err := upstream.New(upstream.Options{URL: r.url, Username: "admin", Password: wrong})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.HeadManifest(ctx, r.prefix+"app", "v1")
	var se *upstream.StatusError
	if !errors.As(err, &se) || se.Status != 401 {
		t.Fatalf("HeadManifest with a wrong password: %v, want a 401", err)
	}
	t.Logf("error: %v", err)
	if strings.Contains(err.Error(), wrong) || strings.Contains(err.Error(), adminPass) {
		t.Errorf("the error holds the password: %v", err)
	}
	if !strings.Contains(err.Error(), "token") {
		t.Errorf("the error does not say the token request failed: %v", err)
	}
}

// TestAnonymousPushRefused: without credentials the client gets an
// anonymous token, which berth does not let push.
func TestAnonymousPushRefused(t *testing.T) {
	r := startBerth(t, true)
	ctx := ctxFor(t)
	c, err := upstream.New(upstream.Options{URL: r.url})
	if err != nil {
		t.Fatal(err)
	}
	b := []byte("data")
	err = c.PutBlob(ctx, r.prefix+"app", reference.SHA256.FromBytes(b), int64(len(b)), strings.NewReader(string(b)))
	var se *upstream.StatusError
	if !errors.As(err, &se) || (se.Status != 401 && se.Status != 403) {
		t.Fatalf("anonymous PutBlob: %v, want 401 or 403", err)
	}
}
