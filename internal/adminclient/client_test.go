package adminclient

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// recorded is one request as the stand-in server saw it.
type recorded struct {
	method, path, rawPath, auth, accept, contentType, userAgent, body string
}

// fakeServer answers every request with status and body and records it.
func fakeServer(t *testing.T, status int, body string) (*httptest.Server, *recorded) {
	t.Helper()
	rec := &recorded{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		*rec = recorded{r.Method, r.URL.Path, r.URL.EscapedPath(), r.Header.Get("Authorization"),
			r.Header.Get("Accept"), r.Header.Get("Content-Type"), r.Header.Get("User-Agent"), string(b)}
		if body != "" {
			w.Header().Set("Content-Type", "application/json")
		}
		w.WriteHeader(status)
		io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv, rec
}

func newTestClient(t *testing.T, url string) *Client {
	t.Helper()
	c, err := New(Options{URL: url, Username: "alice", Password: "s3cret:pw", UserAgent: "berth-cli/test"})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestRequestShape(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name, method, path, body string
		call                     func(c *Client) error
	}{
		{"whoami", "GET", "/api/v1/whoami", "", func(c *Client) error { _, err := c.WhoAmI(ctx); return err }},
		{"list users", "GET", "/api/v1/users", "", func(c *Client) error { _, _, err := c.ListUsers(ctx); return err }},
		{"add user generated", "POST", "/api/v1/users", `{"name":"bob","admin":false}`, func(c *Client) error {
			_, _, err := c.CreateUser(ctx, NewUser{Name: "bob"})
			return err
		}},
		{"add admin with password", "POST", "/api/v1/users", `{"name":"bob","password":"pw","admin":true}`, func(c *Client) error {
			_, _, err := c.CreateUser(ctx, NewUser{Name: "bob", Password: "pw", Admin: true})
			return err
		}},
		{"delete user", "DELETE", "/api/v1/users/bob", "", func(c *Client) error { return c.DeleteUser(ctx, "bob") }},
		{"passwd generated", "PUT", "/api/v1/users/bob/password", `{}`, func(c *Client) error {
			_, err := c.SetPassword(ctx, "bob", "")
			return err
		}},
		{"passwd given", "PUT", "/api/v1/users/bob/password", `{"password":"new"}`, func(c *Client) error {
			_, err := c.SetPassword(ctx, "bob", "new")
			return err
		}},
		{"list namespaces", "GET", "/api/v1/namespaces", "", func(c *Client) error { _, _, err := c.ListNamespaces(ctx); return err }},
		{"create namespace", "POST", "/api/v1/namespaces", `{"name":"team","public":false}`, func(c *Client) error {
			_, err := c.CreateNamespace(ctx, "team", false)
			return err
		}},
		{"set public", "PATCH", "/api/v1/namespaces/team", `{"public":true}`, func(c *Client) error {
			_, err := c.SetNamespacePublic(ctx, "team", true)
			return err
		}},
		{"set private", "PATCH", "/api/v1/namespaces/team", `{"public":false}`, func(c *Client) error {
			_, err := c.SetNamespacePublic(ctx, "team", false)
			return err
		}},
		{"delete namespace", "DELETE", "/api/v1/namespaces/team", "", func(c *Client) error { return c.DeleteNamespace(ctx, "team") }},
		{"members", "GET", "/api/v1/namespaces/team/members", "", func(c *Client) error { _, _, err := c.ListMembers(ctx, "team"); return err }},
		{"set member", "PUT", "/api/v1/namespaces/team/members/alice", `{"role":"writer"}`, func(c *Client) error {
			_, err := c.SetMember(ctx, "team", "alice", "writer")
			return err
		}},
		{"remove member", "DELETE", "/api/v1/namespaces/team/members/alice", "", func(c *Client) error { return c.RemoveMember(ctx, "team", "alice") }},
		{"robots", "GET", "/api/v1/namespaces/team/robots", "", func(c *Client) error { _, _, err := c.ListRobots(ctx, "team"); return err }},
		{"create robot", "POST", "/api/v1/namespaces/team/robots", `{"name":"ci","scopes":["team/*"],"actions":["pull","push"],"expires_in":"90d"}`, func(c *Client) error {
			_, _, err := c.CreateRobot(ctx, "team", NewRobot{Name: "ci", Scopes: []string{"team/*"}, Actions: []string{"pull", "push"}, ExpiresIn: "90d"})
			return err
		}},
		{"create robot never expires", "POST", "/api/v1/namespaces/team/robots", `{"name":"ci","scopes":["team/app"],"actions":["pull"]}`, func(c *Client) error {
			_, _, err := c.CreateRobot(ctx, "team", NewRobot{Name: "ci", Scopes: []string{"team/app"}, Actions: []string{"pull"}})
			return err
		}},
		{"revoke robot", "DELETE", "/api/v1/namespaces/team/robots/team+ci", "", func(c *Client) error { return c.RevokeRobot(ctx, "team", "team+ci") }},
		{"rotate keys", "POST", "/api/v1/keys/rotate", "", func(c *Client) error { _, err := c.RotateKeys(ctx); return err }},
	}
	wantAuth := "Basic " + base64.StdEncoding.EncodeToString([]byte("alice:s3cret:pw"))
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, resp := http.StatusOK, `{}`
			if tc.method == "DELETE" {
				status, resp = http.StatusNoContent, ""
			} else if strings.HasPrefix(tc.name, "list") || tc.name == "members" || tc.name == "robots" {
				resp = `[]`
			}
			srv, rec := fakeServer(t, status, resp)
			if err := tc.call(newTestClient(t, srv.URL)); err != nil {
				t.Fatalf("call: %v", err)
			}
			if rec.method != tc.method || rec.rawPath != tc.path {
				t.Errorf("request = %s %s, want %s %s", rec.method, rec.rawPath, tc.method, tc.path)
			}
			if rec.auth != wantAuth {
				t.Errorf("Authorization = %q, want %q", rec.auth, wantAuth)
			}
			if rec.accept != "application/json" || rec.userAgent != "berth-cli/test" {
				t.Errorf("Accept = %q, User-Agent = %q", rec.accept, rec.userAgent)
			}
			if tc.body == "" {
				if rec.body != "" || rec.contentType != "" {
					t.Errorf("unexpected body %q (Content-Type %q)", rec.body, rec.contentType)
				}
				return
			}
			if rec.contentType != "application/json" {
				t.Errorf("Content-Type = %q", rec.contentType)
			}
			if !jsonEqual(t, rec.body, tc.body) {
				t.Errorf("body = %s, want %s", rec.body, tc.body)
			}
		})
	}
}

func jsonEqual(t *testing.T, a, b string) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal([]byte(a), &x); err != nil {
		t.Fatalf("%q: %v", a, err)
	}
	if err := json.Unmarshal([]byte(b), &y); err != nil {
		t.Fatalf("%q: %v", b, err)
	}
	xb, _ := json.Marshal(x)
	yb, _ := json.Marshal(y)
	return string(xb) == string(yb)
}

func TestPathSegmentsEscaped(t *testing.T) {
	srv, rec := fakeServer(t, http.StatusNoContent, "")
	c := newTestClient(t, srv.URL)
	if err := c.RemoveMember(context.Background(), "a/b", "x y?"); err != nil {
		t.Fatal(err)
	}
	if want := "/api/v1/namespaces/a%2Fb/members/x%20y%3F"; rec.rawPath != want {
		t.Errorf("path = %s, want %s", rec.rawPath, want)
	}
}

func TestDecodeResponses(t *testing.T) {
	ctx := context.Background()
	robots := `[{"name":"team+ci","namespace":"team","scopes":["team/*"],"actions":["pull"],
		"expires_at":null,"created_at":"2025-01-02T03:04:05Z","last_used_at":"2025-02-03T04:05:06Z","revoked":true,"future":1}]`
	srv, _ := fakeServer(t, http.StatusOK, robots)
	list, raw, err := newTestClient(t, srv.URL).ListRobots(ctx, "team")
	if err != nil {
		t.Fatal(err)
	}
	if string(raw) != robots {
		t.Errorf("raw = %s, want the server's bytes", raw)
	}
	r := list[0]
	if r.Name != "team+ci" || r.ExpiresAt != nil || r.LastUsedAt == nil || !r.Revoked ||
		!r.CreatedAt.Equal(time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)) {
		t.Errorf("robot = %+v", r)
	}

	srv, _ = fakeServer(t, http.StatusCreated, `{"name":"team+ci","namespace":"team","scopes":["team/*"],"actions":["pull"],
		"expires_at":"2025-04-02T00:00:00Z","created_at":"2025-01-02T00:00:00Z","last_used_at":null,"revoked":false,"secret":"shh"}`)
	created, _, err := newTestClient(t, srv.URL).CreateRobot(ctx, "team", NewRobot{Name: "ci"})
	if err != nil || created.Secret != "shh" || created.Name != "team+ci" || created.ExpiresAt == nil {
		t.Errorf("created = %+v, %v", created, err)
	}

	srv, _ = fakeServer(t, http.StatusCreated, `{"name":"bob","admin":false,"password":"gen"}`)
	u, _, err := newTestClient(t, srv.URL).CreateUser(ctx, NewUser{Name: "bob"})
	if err != nil || u.Password != "gen" {
		t.Errorf("user = %+v, %v", u, err)
	}

	srv, _ = fakeServer(t, http.StatusOK, `{"kid":"k2"}`)
	if kid, err := newTestClient(t, srv.URL).RotateKeys(ctx); err != nil || kid != "k2" {
		t.Errorf("kid = %q, %v", kid, err)
	}
}

func TestNotJSONSuccess(t *testing.T) {
	srv, _ := fakeServer(t, http.StatusOK, "<html>hello</html>")
	_, _, err := newTestClient(t, srv.URL).ListUsers(context.Background())
	if err == nil || !strings.HasPrefix(err.Error(), "unexpected response from GET "+srv.URL+"/api/v1/users") {
		t.Fatalf("err = %v", err)
	}
}

func TestRedirectNotFollowed(t *testing.T) {
	followed := false
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/elsewhere" {
			followed = true
			return
		}
		http.Redirect(w, r, "https://registry.example.com/elsewhere", http.StatusMovedPermanently)
	}))
	defer srv.Close()
	_, err := newTestClient(t, srv.URL).WhoAmI(context.Background())
	want := "301 moved permanently: the server redirects to https://registry.example.com/elsewhere (use https://registry.example.com as the registry URL)"
	if err == nil || err.Error() != want || followed {
		t.Fatalf("err = %v, want %q (followed %v)", err, want, followed)
	}
}
