package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/http"
	"os"
	"path/filepath"

	"github.com/berth-registry/berth/internal/tlscert"
)

// tlsFiles is the certificate the servers compared under -tls serve
// (berth, berth-observed and distribution), self-signed for 127.0.0.1,
// which the benchmark's client trusts.
type tlsFiles struct {
	cert, key string
	pool      *x509.CertPool
}

// benchTLS is set by -tls: the compared servers listen with TLS.
var benchTLS *tlsFiles

// newTLSFiles writes a fresh certificate and key into dir.
func newTLSFiles(dir string) (*tlsFiles, error) {
	certPEM, keyPEM, err := tlscert.Generate(tlscert.Options{Hosts: []string{"127.0.0.1", "localhost"}})
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	t := &tlsFiles{cert: filepath.Join(dir, "cert.pem"), key: filepath.Join(dir, "key.pem"), pool: x509.NewCertPool()}
	if err := os.WriteFile(t.cert, certPEM, 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(t.key, keyPEM, 0o600); err != nil {
		return nil, err
	}
	if !t.pool.AppendCertsFromPEM(certPEM) {
		return nil, errors.New("tls: the generated certificate does not parse")
	}
	return t, nil
}

// berthArgs are berth serve's flags for the certificate.
func (t *tlsFiles) berthArgs() []string {
	if t == nil {
		return nil
	}
	return []string{"--tls-cert", t.cert, "--tls-key", t.key}
}

// distributionConfig is the http.tls section of a docker-registry
// configuration, indented under http:.
func (t *tlsFiles) distributionConfig() string {
	if t == nil {
		return ""
	}
	return "  tls:\n    certificate: " + t.cert + "\n    key: " + t.key + "\n"
}

// client makes c trust the certificate (HTTP/1.1, as registry clients
// pull blobs: Go's client speaks HTTP/2 only when asked to).
func (t *tlsFiles) client(c *http.Client) {
	if t == nil {
		return
	}
	c.Transport.(*http.Transport).TLSClientConfig = &tls.Config{RootCAs: t.pool, MinVersion: tls.VersionTLS12}
}
