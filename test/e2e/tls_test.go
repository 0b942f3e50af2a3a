package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// This file tests HTTPS: `berth cert`, and `berth serve --tls-cert FILE
// --tls-key FILE` with the certificate trusted as a CA by crane (through
// SSL_CERT_FILE), Docker Engine (through /etc/docker/certs.d) and Go's
// HTTP client, while plain HTTP on the same port gets nowhere.

// tlsBerth is a berth serving HTTPS with a certificate from `berth cert`.
type tlsBerth struct {
	*server
	// Port is the port berth listens on.
	Port string
	// CertPath is the certificate (also the CA file clients trust).
	CertPath string
	// Client is an HTTP client trusting only CertPath.
	Client *http.Client
}

// berthCert runs `berth cert` with args and returns its result.
func berthCert(t *testing.T, args ...string) cmdResult {
	t.Helper()
	skipIfShort(t)
	if berthBuildErr != nil {
		t.Fatalf("berth binary is not available: %v", berthBuildErr)
	}
	return execIn(t, "", nil, berthBin, append([]string{"cert"}, args...)...)
}

// makeCert writes berth.crt and berth.key for hosts into a new directory
// with `berth cert` and returns their paths.
func makeCert(t *testing.T, hosts ...string) (certPath, keyPath string) {
	t.Helper()
	dir := t.TempDir()
	args := []string{"--out", dir}
	for _, h := range hosts {
		args = append(args, "--host", h)
	}
	if r := berthCert(t, args...); r.Err != nil {
		t.Fatalf("berth cert %s: %v\n%s%s", strings.Join(args, " "), r.Err, r.Stdout, r.Stderr)
	}
	return filepath.Join(dir, "berth.crt"), filepath.Join(dir, "berth.key")
}

// readCert parses a PEM certificate file.
func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		t.Fatalf("%s holds no PEM certificate", path)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return cert
}

// clientTrusting returns an HTTP client whose only root is the certificate
// in certPath (none when certPath is empty).
func clientTrusting(t *testing.T, certPath string) *http.Client {
	t.Helper()
	roots := x509.NewCertPool()
	if certPath != "" {
		roots.AddCert(readCert(t, certPath))
	}
	return &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}},
	}
}

// startTLSBerth starts berth on a free port of ip with --auth=none and the
// given certificate and key, waits until GET /healthz answers over HTTPS
// (verified against the certificate) and stops it with SIGTERM on cleanup,
// like startBerth does for plain HTTP.
func startTLSBerth(t *testing.T, ip, certPath, keyPath string) *tlsBerth {
	t.Helper()
	client := clientTrusting(t, certPath)
	p := start(t, launch{IP: ip, TLS: true, Client: client, Args: []string{"--auth=none", "--tls-cert", certPath, "--tls-key", keyPath}})
	_, port, _ := net.SplitHostPort(p.Addr)
	return &tlsBerth{server: p.server, Port: port, CertPath: certPath, Client: client}
}

// manifestDigestTLS GETs a manifest over HTTPS and returns its digest.
func manifestDigestTLS(t *testing.T, b *tlsBerth, repo, ref string) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, b.URL+"/v2/"+repo+"/manifests/"+ref, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", allManifestTypes)
	resp, err := b.Client.Do(req)
	if err != nil {
		t.Fatalf("GET manifest %s:%s over HTTPS: %v", repo, ref, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET manifest %s:%s over HTTPS: %s %v: %s", repo, ref, resp.Status, err, truncate(string(body), 300))
	}
	return sha256Digest(body)
}

// TestTLSCertCommand checks what `berth cert` writes, that it keeps
// existing files unless --force is given, and that it rejects a host with a
// port with a one-line hint.
func TestTLSCertCommand(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	r := berthCert(t, "--host", "127.0.0.1,localhost", "--host", "registry.test", "--days", "30", "--out", dir)
	if r.Err != nil {
		t.Fatalf("berth cert: %v\n%s", r.Err, r.Stderr)
	}
	certPath, keyPath := filepath.Join(dir, "berth.crt"), filepath.Join(dir, "berth.key")
	for _, want := range []string{certPath, keyPath, "--tls-cert", "--tls-key", "/etc/docker/certs.d/", "SSL_CERT_FILE"} {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("berth cert output does not mention %q:\n%s", want, r.Stdout)
		}
	}
	for path, mode := range map[string]os.FileMode{certPath: 0o644, keyPath: 0o600} {
		if fi, err := os.Stat(path); err != nil {
			t.Fatal(err)
		} else if fi.Mode().Perm() != mode {
			t.Errorf("%s has mode %v, want %v", path, fi.Mode().Perm(), mode)
		}
	}
	cert := readCert(t, certPath)
	if got := strings.Join(cert.DNSNames, ","); got != "localhost,registry.test" {
		t.Errorf("DNS names %q, want localhost,registry.test", got)
	}
	if len(cert.IPAddresses) != 1 || !cert.IPAddresses[0].Equal(net.IPv4(127, 0, 0, 1)) {
		t.Errorf("IP addresses %v, want [127.0.0.1]", cert.IPAddresses)
	}
	if cert.Subject.CommonName != "127.0.0.1" || !cert.IsCA {
		t.Errorf("CN %q, IsCA %v; want the first host and a CA", cert.Subject.CommonName, cert.IsCA)
	}
	if d := time.Until(cert.NotAfter); d < 29*24*time.Hour || d > 30*24*time.Hour {
		t.Errorf("certificate expires in %s, want 30 days", d)
	}
	if _, err := tls.LoadX509KeyPair(certPath, keyPath); err != nil {
		t.Errorf("key does not match the certificate: %v", err)
	}

	// Existing files are kept without --force.
	before, _ := os.ReadFile(certPath)
	r = berthCert(t, "--host", "localhost", "--out", dir)
	if r.Err == nil {
		t.Fatal("berth cert replaced existing files without --force")
	}
	if !strings.Contains(r.Stderr, "already exists") || !strings.Contains(r.Stderr, "--force") || len(lines(r.Stderr)) != 1 {
		t.Errorf("refusal is not one line naming the file and --force:\n%s", r.Stderr)
	}
	if after, _ := os.ReadFile(certPath); string(after) != string(before) {
		t.Error("a refused berth cert changed the certificate")
	}
	if r = berthCert(t, "--host", "localhost", "--out", dir, "--force"); r.Err != nil {
		t.Fatalf("berth cert --force: %v\n%s", r.Err, r.Stderr)
	}
	if after, _ := os.ReadFile(certPath); string(after) == string(before) {
		t.Error("berth cert --force left the old certificate")
	}

	r = berthCert(t, "--host", "registry.test:5000", "--out", t.TempDir())
	if r.Err == nil || !strings.Contains(r.Stderr, `"registry.test"`) || len(lines(r.Stderr)) != 1 {
		t.Errorf("berth cert --host registry.test:5000: err %v, want a one-line hint to drop the port; stderr:\n%s", r.Err, r.Stderr)
	}
}

// TestTLSServe checks that berth serves HTTPS with the certificate to a
// client trusting it under each name, and that plain HTTP, an untrusting
// client and a name the certificate does not cover get nowhere.
func TestTLSServe(t *testing.T) {
	certPath, keyPath := makeCert(t, "127.0.0.1", "localhost")
	b := startTLSBerth(t, "127.0.0.1", certPath, keyPath)

	for _, host := range []string{"127.0.0.1", "localhost"} {
		url := "https://" + net.JoinHostPort(host, b.Port) + "/v2/"
		resp, err := b.Client.Get(url)
		if err != nil {
			t.Errorf("GET %s trusting the certificate: %v", url, err)
			continue
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.TLS == nil || resp.TLS.Version < tls.VersionTLS12 {
			t.Errorf("GET %s: %s, TLS %v; want 200 over TLS 1.2 or later", url, resp.Status, resp.TLS != nil)
		}
	}

	// Plain HTTP to the TLS port: a transport error or Go's 400 "Client
	// sent an HTTP request to an HTTPS server", never the registry.
	plain := &http.Client{Timeout: 10 * time.Second}
	for _, req := range []struct{ method, path string }{{"GET", "/v2/"}, {"POST", "/v2/e2e/plain/blobs/uploads/"}} {
		r, err := http.NewRequest(req.method, "http://"+b.Addr+req.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := plain.Do(r)
		if err != nil {
			t.Logf("plain HTTP %s %s: %v (refused, as wanted)", req.method, req.path, err)
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Docker-Distribution-API-Version") != "" {
			t.Errorf("plain HTTP %s %s on the TLS port answered %s: %s", req.method, req.path, resp.Status, truncate(string(body), 200))
		}
	}

	// A client that does not trust the certificate is refused, and so is a
	// name outside it.
	if _, err := clientTrusting(t, "").Get(b.URL + "/v2/"); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("untrusting client: err %v, want a certificate error", err)
	}
	other := clientTrusting(t, certPath)
	other.Transport.(*http.Transport).TLSClientConfig.ServerName = "registry.invalid"
	if _, err := other.Get(b.URL + "/v2/"); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("name outside the certificate: err %v, want a certificate error", err)
	}
}

// TestTLSCrane pushes and pulls with crane over verified TLS, trusting the
// certificate through SSL_CERT_FILE and without --insecure, and checks that
// crane refuses the registry when it trusts a different certificate.
func TestTLSCrane(t *testing.T) {
	crane := needTool(t, "crane")
	certPath, keyPath := makeCert(t, "127.0.0.1", "localhost")
	b := startTLSBerth(t, "127.0.0.1", certPath, keyPath)
	// SSL_CERT_DIR points at an empty directory so that only SSL_CERT_FILE
	// supplies roots.
	noDir := "SSL_CERT_DIR=" + t.TempDir()
	trusting := []string{"SSL_CERT_FILE=" + certPath, noDir}
	cr := func(args ...string) string {
		t.Helper()
		r := execIn(t, "", trusting, crane, args...)
		if r.Err != nil {
			t.Fatalf("crane %s: %v\n%s", strings.Join(args, " "), r.Err, truncate(r.Stderr, 2000))
		}
		return strings.TrimSpace(r.Stdout)
	}

	payload := randomBytes(t, 256<<10)
	dir := t.TempDir()
	layerPath := filepath.Join(dir, "layer.tar")
	writeFile(t, layerPath, layerTar(t, testFile{Name: "data/payload.bin", Data: payload}))

	ref := b.Addr + "/e2e/tls:v1"
	cr("append", "-f", layerPath, "-t", ref)
	dgst := cr("digest", ref)
	if got := manifestDigestTLS(t, b, "e2e/tls", "v1"); got != dgst {
		t.Errorf("registry serves e2e/tls:v1 as %s, crane digest says %s", got, dgst)
	}
	// Pull through the certificate's DNS name too.
	byName := "localhost:" + b.Port + "/e2e/tls:v1"
	if got := cr("digest", byName); got != dgst {
		t.Errorf("crane digest %s = %s, want %s", byName, got, dgst)
	}
	exportPath := filepath.Join(dir, "export.tar")
	cr("export", byName, exportPath)
	checkFiles(t, "crane export over TLS", exportPath, map[string][]byte{"data/payload.bin": payload})
	cr("pull", "--format", "oci", ref, filepath.Join(dir, "pulled"))

	// Trusting another certificate, crane must refuse the connection.
	otherCert, _ := makeCert(t, "127.0.0.1", "localhost")
	r := execIn(t, "", []string{"SSL_CERT_FILE=" + otherCert, noDir}, crane, "digest", ref)
	if r.Err == nil {
		t.Fatalf("crane trusting a different certificate reached the registry")
	}
	if !strings.Contains(r.Stderr, "certificate") && !strings.Contains(r.Stderr, "HTTPS server") {
		t.Errorf("crane trusting a different certificate failed, but not on TLS:\n%s", truncate(r.Stderr, 2000))
	}
}

// TestTLSDockerLocalhost pushes and pulls with Docker Engine as
// localhost:PORT, with the certificate in /etc/docker/certs.d/localhost:PORT/.
//
// Docker treats registries resolving into 127.0.0.0/8 as insecure: it tries
// HTTPS without verifying the certificate and then falls back to plain
// HTTP. So this test proves that Docker talks TLS to berth, not that it
// verifies the certificate (TestTLSDockerCertsDir does that). It routes
// Docker through a proxy that records whether each connection opens with
// a TLS handshake, and requires every one to.
func TestTLSDockerLocalhost(t *testing.T) {
	docker := needDocker(t)
	certPath, keyPath := makeCert(t, "127.0.0.1", "localhost")
	b := startTLSBerth(t, "127.0.0.1", certPath, keyPath)
	sniff := startTLSSniffer(t, b.Addr)
	registry := "localhost:" + sniff.Port
	installDockerCA(t, registry, certPath)

	ref := registry + "/e2e/tls-docker:v1"
	dgst := dockerPushPull(t, docker, ref)
	if got := manifestDigestTLS(t, b, "e2e/tls-docker", "v1"); got != dgst {
		t.Errorf("registry serves e2e/tls-docker:v1 as %s, docker pushed %s", got, dgst)
	}
	tlsConns, plainConns := sniff.counts()
	t.Logf("docker opened %d TLS and %d plain connections", tlsConns, plainConns)
	if tlsConns == 0 || plainConns != 0 {
		t.Errorf("docker opened %d TLS and %d plain connections; want only TLS", tlsConns, plainConns)
	}
}

// installDockerCA copies certPath to /etc/docker/certs.d/<registry>/ca.crt
// and removes that directory (and certs.d itself when it created it and it
// is empty) on cleanup.
func installDockerCA(t *testing.T, registry, certPath string) {
	t.Helper()
	if h := os.Getenv("DOCKER_HOST"); h != "" && !strings.HasPrefix(h, "unix://") {
		t.Skipf("DOCKER_HOST=%s: the daemon would not see this machine's /etc/docker/certs.d", h)
	}
	const certsD = "/etc/docker/certs.d"
	_, statErr := os.Stat(certsD)
	dir := filepath.Join(certsD, registry)
	ca, err := os.ReadFile(certPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		missing(t, "cannot write %s (run as root): %v", dir, err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("removing %s: %v", dir, err)
		}
		if errors.Is(statErr, os.ErrNotExist) {
			_ = os.Remove(certsD) // only if empty
		}
	})
	if err := os.WriteFile(filepath.Join(dir, "ca.crt"), ca, 0o644); err != nil {
		t.Fatal(err)
	}
}

// buildTinyImage builds a FROM scratch image holding one random file as
// ref and removes it from the engine on cleanup.
func buildTinyImage(t *testing.T, docker, ref string) {
	t.Helper()
	ctxDir := t.TempDir()
	writeFile(t, filepath.Join(ctxDir, "note.txt"), []byte("tls e2e "+randomHex(t, 16)+"\n"))
	writeFile(t, filepath.Join(ctxDir, "Dockerfile"), []byte("FROM scratch\nCOPY note.txt /note.txt\n"))
	t.Cleanup(func() { execIn(t, "", nil, docker, "rmi", "-f", ref) })
	run(t, docker, "build", "-q", "-t", ref, ctxDir)
}

// dockerPushPull pushes ref (building it first unless it exists), removes
// it locally, pulls it back and returns the pushed digest, checking that
// the pull reports the same one.
func dockerPushPull(t *testing.T, docker, ref string) string {
	t.Helper()
	if execIn(t, "", nil, docker, "image", "inspect", ref).Err != nil {
		buildTinyImage(t, docker, ref)
	}
	m := pushDigestRE.FindStringSubmatch(run(t, docker, "push", ref))
	if m == nil {
		t.Fatalf("no digest in docker push output")
	}
	run(t, docker, "rmi", ref)
	pullOut := run(t, docker, "pull", ref)
	if p := pullDigestRE.FindStringSubmatch(pullOut); p == nil || p[1] != m[1] {
		t.Errorf("docker pull %s reported:\n%s\nwant digest %s", ref, pullOut, m[1])
	}
	return m[1]
}

// tlsSniffer is a TCP proxy on a loopback port that forwards every
// connection to a backend and counts how many opened with a TLS handshake
// record (first byte 0x16) and how many with anything else.
type tlsSniffer struct {
	Port    string
	ln      net.Listener
	backend string

	mu        sync.Mutex
	tls       int
	plain     int
	conns     map[net.Conn]bool
	handlers  sync.WaitGroup
	closeOnce sync.Once
}

// startTLSSniffer starts a tlsSniffer forwarding to backend and closes it
// on cleanup.
func startTLSSniffer(t *testing.T, backend string) *tlsSniffer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &tlsSniffer{ln: ln, backend: backend, conns: map[net.Conn]bool{}}
	s.Port = strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	go s.accept()
	t.Cleanup(s.close)
	return s
}

func (s *tlsSniffer) accept() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.handlers.Add(1)
		go s.handle(c)
	}
}

// track adds or removes a connection; it refuses to add after close.
func (s *tlsSniffer) track(c net.Conn, add bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !add {
		delete(s.conns, c)
		return true
	}
	if s.conns == nil {
		return false
	}
	s.conns[c] = true
	return true
}

func (s *tlsSniffer) handle(c net.Conn) {
	defer s.handlers.Done()
	defer c.Close()
	if !s.track(c, true) {
		return
	}
	defer s.track(c, false)
	first := make([]byte, 1)
	if _, err := io.ReadFull(c, first); err != nil {
		return
	}
	s.mu.Lock()
	if first[0] == 0x16 {
		s.tls++
	} else {
		s.plain++
	}
	s.mu.Unlock()
	up, err := net.DialTimeout("tcp", s.backend, 10*time.Second)
	if err != nil {
		return
	}
	defer up.Close()
	if !s.track(up, true) {
		return
	}
	defer s.track(up, false)
	if _, err := up.Write(first); err != nil {
		return
	}
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, up); done <- struct{}{} }()
	<-done
	c.Close()
	up.Close()
	<-done
}

// counts returns how many connections opened with TLS and how many did not.
func (s *tlsSniffer) counts() (tlsConns, plainConns int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tls, s.plain
}

// close stops accepting, closes open connections and waits for handlers.
func (s *tlsSniffer) close() {
	s.closeOnce.Do(func() {
		s.ln.Close()
		s.mu.Lock()
		for c := range s.conns {
			c.Close()
		}
		s.conns = nil
		s.mu.Unlock()
		s.handlers.Wait()
	})
}
