package tlscert

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// parse decodes a PEM certificate or fails the test.
func parse(t *testing.T, certPEM []byte) *x509.Certificate {
	t.Helper()
	block, rest := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" || len(strings.TrimSpace(string(rest))) != 0 {
		t.Fatalf("certificate PEM is not exactly one CERTIFICATE block:\n%s", certPEM)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func TestGenerateFields(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	certPEM, keyPEM, err := Generate(Options{
		Hosts:    []string{"Registry.Example.COM.", "10.1.2.3", "*.cache.example.com", "[fd00::1]", "registry.example.com", "fd00:0::1"},
		ValidFor: 48 * time.Hour,
		Now:      now,
	})
	if err != nil {
		t.Fatal(err)
	}
	cert := parse(t, certPEM)

	if cert.Subject.CommonName != "registry.example.com" {
		t.Errorf("CN = %q, want the first host, normalized", cert.Subject.CommonName)
	}
	if want := []string{"registry.example.com", "*.cache.example.com"}; !slices.Equal(cert.DNSNames, want) {
		t.Errorf("DNS SANs = %q, want %q (duplicates dropped)", cert.DNSNames, want)
	}
	var ips []string
	for _, ip := range cert.IPAddresses {
		ips = append(ips, ip.String())
	}
	if want := []string{"10.1.2.3", "fd00::1"}; !slices.Equal(ips, want) {
		t.Errorf("IP SANs = %q, want %q", ips, want)
	}
	if !cert.IsCA || !cert.BasicConstraintsValid || !cert.MaxPathLenZero || cert.MaxPathLen != 0 {
		t.Errorf("IsCA %v, BasicConstraintsValid %v, MaxPathLen %d (zero %v); want a CA with path length 0",
			cert.IsCA, cert.BasicConstraintsValid, cert.MaxPathLen, cert.MaxPathLenZero)
	}
	if want := x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature; cert.KeyUsage != want {
		t.Errorf("KeyUsage = %b, want %b", cert.KeyUsage, want)
	}
	if !slices.Equal(cert.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}) {
		t.Errorf("ExtKeyUsage = %v, want [ServerAuth]", cert.ExtKeyUsage)
	}
	if err := cert.CheckSignatureFrom(cert); err != nil {
		t.Errorf("not self-signed: %v", err)
	}
	if cert.SerialNumber.Sign() <= 0 || cert.SerialNumber.BitLen() < 64 {
		t.Errorf("serial %v: want a positive random number of at least 64 bits", cert.SerialNumber)
	}
	if !cert.NotBefore.Equal(now.Add(-backdate)) || !cert.NotAfter.Equal(now.Add(48*time.Hour)) {
		t.Errorf("validity %s .. %s, want %s .. %s", cert.NotBefore, cert.NotAfter, now.Add(-backdate), now.Add(48*time.Hour))
	}
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		t.Fatalf("public key %T, want ECDSA P-256", cert.PublicKey)
	}

	// The key is PKCS #8 and belongs to the certificate.
	block, _ := pem.Decode(keyPEM)
	if block == nil || block.Type != "PRIVATE KEY" {
		t.Fatalf("key PEM is not a PRIVATE KEY block")
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	priv, ok := key.(*ecdsa.PrivateKey)
	if !ok || !priv.PublicKey.Equal(pub) {
		t.Error("private key does not match the certificate's public key")
	}
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		t.Errorf("tls.X509KeyPair: %v", err)
	}
}

func TestGenerateDefaults(t *testing.T) {
	before := time.Now()
	certPEM, _, err := Generate(Options{})
	if err != nil {
		t.Fatal(err)
	}
	cert := parse(t, certPEM)
	if cert.Subject.CommonName != "localhost" || !slices.Equal(cert.DNSNames, []string{"localhost"}) {
		t.Errorf("CN %q, DNS SANs %q; want localhost", cert.Subject.CommonName, cert.DNSNames)
	}
	if len(cert.IPAddresses) != 2 || !cert.IPAddresses[0].Equal(net.IPv4(127, 0, 0, 1)) || !cert.IPAddresses[1].Equal(net.IPv6loopback) {
		t.Errorf("IP SANs = %v, want [127.0.0.1 ::1]", cert.IPAddresses)
	}
	if d := cert.NotAfter.Sub(before); d < DefaultValidity-time.Minute || d > DefaultValidity+time.Minute {
		t.Errorf("NotAfter is %s after now, want about %s", d, DefaultValidity)
	}
	if cert.NotBefore.After(before) {
		t.Errorf("NotBefore %s is after the time of the call %s", cert.NotBefore, before)
	}

	// Two certificates never share a serial number or key.
	other, _, err := Generate(Options{})
	if err != nil {
		t.Fatal(err)
	}
	if c2 := parse(t, other); c2.SerialNumber.Cmp(cert.SerialNumber) == 0 {
		t.Error("two certificates have the same serial number")
	}
}

func TestGenerateRejects(t *testing.T) {
	for _, tc := range []struct {
		hosts []string
		valid time.Duration
		want  string
	}{
		{[]string{"registry.example.com:5000"}, 0, `give just "registry.example.com"`},
		{[]string{"https://registry.example.com"}, 0, `is a URL; give just the host name "registry.example.com"`},
		{[]string{"example.com/path"}, 0, "contains a path"},
		{[]string{""}, 0, "empty host name"},
		{[]string{"a..b"}, 0, "not a valid DNS name"},
		{[]string{"-a.example.com"}, 0, "not a valid DNS name"},
		{[]string{"reg istry"}, 0, "contains"},
		{[]string{"*.com"}, 0, "wildcard"},
		{[]string{"a.*.example.com"}, 0, "wildcard"},
		{[]string{"fe80::1%eth0"}, 0, "neither a DNS name nor an IP address"},
		{[]string{"localhost"}, -time.Hour, "negative"},
	} {
		_, _, err := Generate(Options{Hosts: tc.hosts, ValidFor: tc.valid})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Generate(%q, %s) error = %v, want one containing %q", tc.hosts, tc.valid, err, tc.want)
		}
	}
}

// TestClientsTrustIt serves HTTPS with a generated certificate and connects
// to every SAN with a client whose only root is the certificate itself, as
// a registry client with the file as its CA would. A client without it and
// a name outside the SANs are refused.
func TestClientsTrustIt(t *testing.T) {
	hosts := []string{"registry.test", "localhost", "127.0.0.1", "::1"}
	certPEM, keyPEM, err := Generate(Options{Hosts: hosts})
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes are expected
	srv.StartTLS()
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())

	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(certPEM) {
		t.Fatal("AppendCertsFromPEM found no certificate")
	}
	get := func(serverName string, roots *x509.CertPool) error {
		// Dial the test server whatever the name, so that the name only
		// matters for verification.
		tr := &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: serverName},
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, network, srv.Listener.Addr().String())
			},
		}
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get("https://" + net.JoinHostPort(serverName, port) + "/")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if string(body) != "ok" {
			t.Errorf("%s: body %q", serverName, body)
		}
		return nil
	}
	for _, h := range hosts {
		if err := get(h, roots); err != nil {
			t.Errorf("client trusting the certificate, connecting to %s: %v", h, err)
		}
	}
	if err := get("other.test", roots); err == nil {
		t.Error("a name outside the SANs was accepted")
	}
	if err := get("localhost", x509.NewCertPool()); err == nil {
		t.Error("a client that does not trust the certificate accepted it")
	}
}

func TestWriteFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	certPEM, keyPEM, err := Generate(Options{})
	if err != nil {
		t.Fatal(err)
	}
	check := func(certWant, keyWant []byte) {
		t.Helper()
		for _, f := range []struct {
			name string
			want []byte
			mode os.FileMode
		}{{CertFile, certWant, 0o644}, {KeyFile, keyWant, 0o600}} {
			p := filepath.Join(dir, f.name)
			got, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != string(f.want) {
				t.Errorf("%s does not hold what was written", f.name)
			}
			fi, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != f.mode {
				t.Errorf("%s mode %v, want %v", f.name, fi.Mode().Perm(), f.mode)
			}
		}
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != 2 {
			var names []string
			for _, e := range entries {
				names = append(names, e.Name())
			}
			t.Errorf("directory holds %q, want only the two files (no temporary files left)", names)
		}
	}
	if err := WriteFiles(dir, certPEM, keyPEM); err != nil {
		t.Fatal(err)
	}
	check(certPEM, keyPEM)

	// Replacing works and keeps the modes.
	cert2, key2, err := Generate(Options{Hosts: []string{"other.test"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteFiles(dir, cert2, key2); err != nil {
		t.Fatal(err)
	}
	check(cert2, key2)

	if err := WriteFiles(dir, nil, key2); err == nil {
		t.Error("WriteFiles accepted an empty certificate")
	}
}
