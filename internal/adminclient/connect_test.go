package adminclient

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
)

// env returns a Getenv over m.
func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestResolveURL(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.json")
	cfg := &Config{Current: "https://current.example"}
	if err := cfg.Save(path); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		flag string
		env  map[string]string
		want string
	}{
		{"flag.example", map[string]string{"BERTH_REGISTRY": "env.example"}, "https://flag.example"},
		{"", map[string]string{"BERTH_REGISTRY": "http://env.example:5000/"}, "http://env.example:5000"},
		{"", nil, "https://current.example"},
	}
	for _, tc := range cases {
		got, err := Target{Registry: tc.flag, Getenv: env(tc.env), ConfigPath: path}.ResolveURL()
		if err != nil || got != tc.want {
			t.Errorf("flag %q env %v: %q, %v; want %q", tc.flag, tc.env, got, err, tc.want)
		}
	}
	_, err := Target{Getenv: env(nil), ConfigPath: filepath.Join(t.TempDir(), "none.json")}.ResolveURL()
	if err == nil || err.Error() != "no registry selected (run: berth login URL, or pass --registry URL)" {
		t.Errorf("err = %v", err)
	}
	// The config directory comes from BERTH_CONFIG_DIR when no path is given.
	got, err := Target{Getenv: env(map[string]string{"BERTH_CONFIG_DIR": filepath.Dir(path)})}.ResolveURL()
	if err != nil || got != "https://current.example" {
		t.Errorf("via BERTH_CONFIG_DIR: %q, %v", got, err)
	}
}

// authServer answers whoami with the Basic auth user it received.
func authServer(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pass, ok := r.BasicAuth()
		if !ok || pass != "pw-"+user {
			w.Header().Set("WWW-Authenticate", `Basic realm="berth"`)
			w.WriteHeader(http.StatusUnauthorized)
			w.Write([]byte(`{"error":"invalid user name or password"}`))
			return
		}
		w.Write([]byte(`{"name":"` + user + `","admin":false}`))
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestConnectCredentials(t *testing.T) {
	srv := authServer(t)
	path := filepath.Join(t.TempDir(), "config.json")
	cfg := &Config{}
	cfg.SetCredentials(srv.URL, "alice", "pw-alice")
	cfg.SetCredentials("http://stale.example", "carol", "old")
	if err := cfg.Save(path); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	whoami := func(tg Target) (string, error) {
		tg.ConfigPath = path
		c, err := Connect(tg)
		if err != nil {
			return "", err
		}
		id, err := c.WhoAmI(ctx)
		return id.Name, err
	}

	if name, err := whoami(Target{Registry: srv.URL, Getenv: env(nil)}); err != nil || name != "alice" {
		t.Errorf("from config: %q, %v", name, err)
	}
	e := map[string]string{"BERTH_USERNAME": "bob", "BERTH_PASSWORD": "pw-bob"}
	if name, err := whoami(Target{Registry: srv.URL, Getenv: env(e)}); err != nil || name != "bob" {
		t.Errorf("from env: %q, %v", name, err)
	}
	if name, err := whoami(Target{Registry: srv.URL, Getenv: env(e), Username: "dave", Password: "pw-dave"}); err != nil || name != "dave" {
		t.Errorf("explicit: %q, %v", name, err)
	}

	e = map[string]string{"BERTH_USERNAME": "bob", "BERTH_PASSWORD": "wrong"}
	_, err := whoami(Target{Registry: srv.URL, Getenv: env(e)})
	if err == nil || err.Error() != "401 unauthorized: invalid user name or password (check BERTH_USERNAME and BERTH_PASSWORD)" {
		t.Errorf("bad env password: %v", err)
	}
	if _, err := whoami(Target{Registry: srv.URL, Getenv: env(map[string]string{"BERTH_USERNAME": "bob"})}); err == nil ||
		!strings.Contains(err.Error(), "set both BERTH_USERNAME and BERTH_PASSWORD") {
		t.Errorf("half env: %v", err)
	}

	// No credentials stored: sent without, and the 401 says to log in.
	other := strings.Replace(srv.URL, "127.0.0.1", "localhost", 1)
	_, err = whoami(Target{Registry: other, Getenv: env(nil)})
	var nl *NotLoggedInError
	if !errors.As(err, &nl) || err.Error() != "not logged in to "+other+" (run: berth login "+other+")" {
		t.Errorf("not logged in: %v", err)
	}

	// Stored credentials the server rejects point at berth login.
	cfg.SetCredentials(srv.URL, "alice", "changed")
	cfg.Save(path)
	_, err = whoami(Target{Registry: srv.URL, Getenv: env(nil)})
	if err == nil || err.Error() != "401 unauthorized: invalid user name or password (run: berth login "+srv.URL+")" {
		t.Errorf("stale config: %v", err)
	}
}

func TestConnectCACertFromEnv(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"name":"x","admin":false}`))
	}))
	defer srv.Close()
	e := map[string]string{"BERTH_USERNAME": "x", "BERTH_PASSWORD": "y", "BERTH_CA_CERT": writeCA(t, srv)}
	c, err := Connect(Target{Registry: srv.URL, Getenv: env(e)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.WhoAmI(context.Background()); err != nil {
		t.Errorf("with BERTH_CA_CERT: %v", err)
	}
	if c.Username() != "x" || c.URL() != srv.URL {
		t.Errorf("client = %s as %s", c.URL(), c.Username())
	}
}
