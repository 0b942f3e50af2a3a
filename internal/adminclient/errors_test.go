package adminclient

import (
	"context"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestAPIErrorRendering(t *testing.T) {
	cases := []struct {
		name    string
		status  int
		header  map[string]string
		body    string
		hint    string
		want    string
		wantErr func(*APIError) bool
	}{
		{name: "403", status: 403, body: `{"error":"only admins may create users"}`,
			want: "403 forbidden: only admins may create users"},
		{name: "409", status: 409, body: `{"error":"user bob already exists"}`,
			want: "409 conflict: user bob already exists"},
		{name: "400", status: 400, body: `{"error":"invalid role \"boss\""}`,
			want: `400 bad request: invalid role "boss"`},
		{name: "404 api", status: 404, body: `{"error":"no such namespace team"}`,
			want: "404 not found: no such namespace team"},
		{name: "401 with hint", status: 401, hint: "run: berth login http://x",
			header: map[string]string{"WWW-Authenticate": `Basic realm="berth"`},
			body:   `{"error":"invalid user name or password"}`,
			want:   "401 unauthorized: invalid user name or password (run: berth login http://x)"},
		{name: "401 no body", status: 401, want: "401 unauthorized: invalid user name or password"},
		{name: "429", status: 429, header: map[string]string{"Retry-After": "30"}, body: `{"error":"too many failed logins"}`,
			want:    "429 too many requests: too many failed logins (retry in 30s)",
			wantErr: func(e *APIError) bool { return e.RetryAfter.Seconds() == 30 }},
		{name: "404 not berth", status: 404, header: map[string]string{"Content-Type": "text/plain"}, body: "404 page not found\n",
			want: "404 not found: 404 page not found (is SRV a berth server with the admin API?)"},
		{name: "502 html", status: 502, header: map[string]string{"Content-Type": "text/html"}, body: "<html><body>Bad Gateway</body></html>",
			want: "502 bad gateway"},
		{name: "control characters", status: 500, body: "{\"error\":\"bad\\u001b[31m\\nthing\"}",
			want: "500 internal server error: bad [31m thing"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				for k, v := range tc.header {
					w.Header().Set(k, v)
				}
				w.WriteHeader(tc.status)
				io.WriteString(w, tc.body)
			}))
			defer srv.Close()
			c, _ := New(Options{URL: srv.URL, Username: "u", Password: "hunter2", AuthHint: tc.hint})
			_, err := c.WhoAmI(context.Background())
			var apiErr *APIError
			if !errors.As(err, &apiErr) || apiErr.StatusCode != tc.status {
				t.Fatalf("err = %#v", err)
			}
			want := strings.ReplaceAll(tc.want, "SRV", srv.URL)
			if err.Error() != want {
				t.Errorf("err = %q\nwant  %q", err, want)
			}
			if tc.wantErr != nil && !tc.wantErr(apiErr) {
				t.Errorf("err fields = %+v", apiErr)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Error("error shows the password")
			}
		})
	}
}

func TestConnectionRefused(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + l.Addr().String()
	l.Close()
	c, _ := New(Options{URL: base, Username: "u", Password: "hunter2"})
	_, err = c.WhoAmI(context.Background())
	want := "cannot reach " + base + ": connection refused (is berth serve running?)"
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v, want %q", err, want)
	}
	var ce *ConnError
	if !errors.As(err, &ce) {
		t.Errorf("err is %T, want *ConnError", err)
	}
}

func TestUnknownHost(t *testing.T) {
	c, _ := New(Options{URL: "http://berth-test.invalid", Username: "u", Password: "p", Timeout: 5 * time.Second})
	_, err := c.WhoAmI(context.Background())
	if err == nil || !strings.HasPrefix(err.Error(), "cannot reach http://berth-test.invalid: ") {
		t.Fatalf("err = %v", err)
	}
}

func TestCanceled(t *testing.T) {
	srv, _ := fakeServer(t, 200, `{}`)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := newTestClient(t, srv.URL).WhoAmI(ctx)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
}

// writeCA writes the test server's certificate as a PEM bundle.
func writeCA(t *testing.T, srv *httptest.Server) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ca.pem")
	data := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestTLS(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, `{"name":"alice","admin":true}`)
	}))
	defer srv.Close()
	ctx := context.Background()

	c, _ := New(Options{URL: srv.URL, Username: "u", Password: "p"})
	_, err := c.WhoAmI(ctx)
	want := "cannot reach " + srv.URL + ": TLS certificate signed by an unknown authority (use --ca-cert FILE, or --insecure-skip-tls-verify)"
	if err == nil || err.Error() != want {
		t.Errorf("untrusted: err = %v, want %q", err, want)
	}

	c, err = New(Options{URL: srv.URL, Username: "u", Password: "p", CACertFile: writeCA(t, srv)})
	if err != nil {
		t.Fatal(err)
	}
	if id, err := c.WhoAmI(ctx); err != nil || id.Name != "alice" || !id.Admin {
		t.Errorf("with CA: %+v, %v", id, err)
	}

	c, _ = New(Options{URL: srv.URL, Username: "u", Password: "p", InsecureSkipTLSVerify: true})
	if _, err := c.WhoAmI(ctx); err != nil {
		t.Errorf("insecure: %v", err)
	}

	plain := "http://" + strings.TrimPrefix(srv.URL, "https://")
	c, _ = New(Options{URL: plain, Username: "u", Password: "p"})
	_, err = c.WhoAmI(ctx)
	if err == nil || !strings.HasSuffix(err.Error(), "(use "+srv.URL+")") {
		t.Errorf("http to TLS server: err = %v", err)
	}
}

func TestHTTPSToPlainServer(t *testing.T) {
	srv, _ := fakeServer(t, 200, `{}`)
	tlsURL := "https://" + strings.TrimPrefix(srv.URL, "http://")
	c, _ := New(Options{URL: tlsURL, Username: "u", Password: "p"})
	_, err := c.WhoAmI(context.Background())
	want := "cannot reach " + tlsURL + ": the server does not speak TLS (use " + srv.URL + ")"
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v, want %q", err, want)
	}
}

func TestBadCABundle(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(path, []byte("not a certificate"), 0o644)
	if _, err := New(Options{URL: "https://x", CACertFile: path}); err == nil || !strings.Contains(err.Error(), "no PEM certificates") {
		t.Errorf("err = %v", err)
	}
	if _, err := New(Options{URL: "https://x", CACertFile: path + ".missing"}); err == nil {
		t.Error("missing CA file accepted")
	}
}
