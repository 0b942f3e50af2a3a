package console

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/metadata"
	"github.com/berth-registry/berth/internal/token"
)

// TestSessionExpiry: a session unused for SessionTTL ends; use extends
// it, but never past MaxSessionAge after the sign-in. Real SQLite store and
// auth service; the console's clock is moved by the test.
func TestSessionExpiry(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	store, err := metadata.OpenSQLite(ctx, filepath.Join(dir, "berth.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	keys, err := token.LoadKeys(filepath.Join(dir, "keys"))
	if err != nil {
		t.Fatal(err)
	}
	acc := auth.New(store, keys, auth.Options{Issuer: "berth", Service: "berth"}, slog.New(slog.DiscardHandler))
	if _, err := acc.Bootstrap(ctx, "admin-pass-123"); err != nil {
		t.Fatal(err)
	}
	h, err := New(Options{Store: store, Accounts: acc, SessionTTL: time.Hour, MaxSessionAge: 3 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	h.now = func() time.Time { return now }
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)

	var cookies []*http.Cookie
	get := func(path string) string {
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		for _, c := range cookies {
			req.AddCookie(c)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		cookies = append(cookies, res.Cookies()...)
		return string(b)
	}
	login := get("/login")
	tok := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(login)[1]
	req, _ := http.NewRequest("POST", srv.URL+"/login", strings.NewReader(url.Values{"csrf": {tok}, "user": {"admin"}, "password": {"admin-pass-123"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", srv.URL)
	for _, c := range cookies {
		req.AddCookie(c)
	}
	cl := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := cl.Do(req)
	if err != nil || res.StatusCode != 303 {
		t.Fatalf("sign in: %v %v", res, err)
	}
	res.Body.Close()
	cookies = res.Cookies()
	// The browser keeps the cookie as long as the session may live, so
	// that use can extend the session past its first SessionTTL.
	for _, c := range cookies {
		if c.Name == sessionCookie && !c.Expires.Equal(now.Add(3*time.Hour).Truncate(time.Second)) {
			t.Errorf("session cookie expires %v, want the session's longest life %v", c.Expires, now.Add(3*time.Hour))
		}
	}
	signedIn := func() bool { return strings.Contains(get("/doctor"), ">admin<") } // a page that needs no registry

	start := now
	for _, step := range []struct {
		at   time.Duration
		want bool
	}{
		{40 * time.Minute, true},           // extends to 1h40
		{90 * time.Minute, true},           // extends to 2h30
		{140 * time.Minute, true},          // extends to 3h (the cap)
		{170 * time.Minute, true},          // still before 3h
		{3*time.Hour + time.Minute, false}, // past the sign-in's cap, however used
	} {
		now = start.Add(step.at)
		if got := signedIn(); got != step.want {
			t.Fatalf("at +%v signed in = %v, want %v", step.at, got, step.want)
		}
	}

	// An unused session ends after SessionTTL.
	now = time.Now()
	start = now
	cookies = nil
	login = get("/login")
	tok = regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(login)[1]
	req, _ = http.NewRequest("POST", srv.URL+"/login", strings.NewReader(url.Values{"csrf": {tok}, "user": {"admin"}, "password": {"admin-pass-123"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", srv.URL)
	for _, c := range cookies {
		req.AddCookie(c)
	}
	if res, err = cl.Do(req); err != nil || res.StatusCode != 303 {
		t.Fatalf("sign in again: %v %v", res, err)
	}
	res.Body.Close()
	cookies = res.Cookies()
	now = start.Add(61 * time.Minute)
	if signedIn() {
		t.Error("a session unused for longer than SessionTTL is still valid")
	}
}

// TestLocalPath: a sign-in's next page stays on this console. "/\t/x"
// passed before (browsers drop the tab and go to //x, another site).
func TestLocalPath(t *testing.T) {
	for next, want := range map[string]string{
		"/namespaces":                   "/namespaces",
		"/repo?name=team/app":           "/repo?name=team/app",
		"":                              "/",
		"https://evil.example/":         "/",
		"//evil.example/":               "/",
		"/\\evil.example/":              "/",
		"/\t/evil.example/":             "/",
		"/\n/evil.example/":             "/",
		"/\r\n/evil.example":            "/",
		"/\x7f/evil.example":            "/",
		"/a\\b":                         "/",
		"/" + strings.Repeat("a", 2000): "/",
	} {
		if got := localPath(next); got != want {
			t.Errorf("localPath(%q) = %q, want %q", next, got, want)
		}
	}
}
