package server

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/berth-registry/berth/internal/config"
)

func TestOriginFollowsOnlyTrustedProxies(t *testing.T) {
	trusted, err := config.ParseProxies("10.0.0.0/8, 192.168.1.5")
	if err != nil {
		t.Fatal(err)
	}
	o := &origin{trusted: trusted}
	req := func(remote string, hdr map[string]string) *httptestRequest {
		r := httptest.NewRequest("GET", "/v2/", nil)
		r.Host = "berth.internal:5000"
		r.RemoteAddr = remote
		for k, v := range hdr {
			r.Header.Set(k, v)
		}
		return &httptestRequest{r}
	}
	fwd := map[string]string{"X-Forwarded-Proto": "https", "X-Forwarded-Host": "registry.example.com", "X-Forwarded-For": "203.0.113.7, 10.1.2.3"}
	cases := []struct {
		remote, wantURL, wantIP string
		hdr                     map[string]string
	}{
		{"10.9.9.9:1234", "https://registry.example.com", "203.0.113.7", fwd},
		{"192.168.1.5:1", "https://registry.example.com", "203.0.113.7", fwd},
		{"203.0.113.50:1", "http://berth.internal:5000", "203.0.113.50", fwd}, // not a proxy: headers ignored
		{"10.9.9.9:1234", "http://berth.internal:5000", "10.9.9.9", nil},
		{"10.9.9.9:1234", "http://berth.internal:5000", "10.9.9.9", map[string]string{"X-Forwarded-Host": `evil" realm="x`}},
		// Clients inside the trusted ranges (nodes behind an ingress) are
		// told apart by the first hop, not lumped into the proxy's address.
		{"10.9.9.9:1234", "http://berth.internal:5000", "10.4.4.4", map[string]string{"X-Forwarded-For": "10.4.4.4"}},
		{"10.9.9.9:1234", "http://berth.internal:5000", "10.4.4.4", map[string]string{"X-Forwarded-For": "10.4.4.4, 10.1.2.3"}},
		{"10.9.9.9:1234", "http://berth.internal:5000", "10.1.2.3", map[string]string{"X-Forwarded-For": "junk, 10.1.2.3"}},
	}
	for _, c := range cases {
		r := req(c.remote, c.hdr)
		if got := o.baseURL(r.Request); got != c.wantURL {
			t.Errorf("from %s: base URL %q, want %q", c.remote, got, c.wantURL)
		}
		if got := o.clientIP(r.Request); got != c.wantIP {
			t.Errorf("from %s: client IP %q, want %q", c.remote, got, c.wantIP)
		}
	}
	r := req("127.0.0.1:1", nil).Request
	r.TLS = &tls.ConnectionState{}
	if got := o.baseURL(r); got != "https://berth.internal:5000" {
		t.Errorf("TLS request: %q", got)
	}
	ext := &origin{external: "https://reg.example.com/", trusted: trusted}
	if got := ext.baseURL(req("10.9.9.9:1", fwd).Request); got != "https://reg.example.com" {
		t.Errorf("external_url: %q", got)
	}
}

type httptestRequest struct{ Request *http.Request }
