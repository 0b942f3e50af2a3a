package server

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/berth-registry/berth/internal/tlscert"
)

// testCert writes a self-signed certificate for 127.0.0.1 and its key
// into files, and returns the certificate and the files' paths.
func testCert(t *testing.T) (certPEM []byte, certFile, keyFile string) {
	t.Helper()
	certPEM, keyPEM, err := tlscert.Generate(tlscert.Options{Hosts: []string{"127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return certPEM, certFile, keyFile
}

// countingListener counts the writes made to its connections.
type countingListener struct {
	net.Listener
	writes atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: c, writes: &l.writes}, nil
}

type countingConn struct {
	net.Conn
	writes *atomic.Int64
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// TestTLSBatchesRecords: over berth's TLS listener a response of 4 MiB
// written in 1 MiB pieces arrives intact with a few dozen system calls (a
// write per 16 KiB record would be 256 or more), the handshake and the
// small writes around it are not held back, requests see their TLS state
// (r.TLS, as http.Server gives a *tls.Conn), and HTTP/1.1 is what is
// negotiated.
func TestTLSBatchesRecords(t *testing.T) {
	certPEM, certFile, keyFile := testCert(t)
	base, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	counted := &countingListener{Listener: base}
	ln, err := newTLSListener(counted, certFile, keyFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	body := make([]byte, 4<<20)
	for i := range body {
		body[i] = byte(i * 31 / 7)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/state" {
			if r.TLS == nil {
				fmt.Fprint(w, "no TLS state")
				return
			}
			fmt.Fprintf(w, "%x %s", r.TLS.Version, r.TLS.NegotiatedProtocol)
			return
		}
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		for off := 0; off < len(body); off += 1 << 20 {
			if _, err := w.Write(body[off : off+1<<20]); err != nil {
				return
			}
		}
	})}
	go srv.Serve(ln)
	defer srv.Close()

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}}
	url := "https://" + base.Addr().String()

	resp, err := client.Get(url + "/state")
	if err != nil {
		t.Fatal(err)
	}
	state, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := fmt.Sprintf("%x http/1.1", tls.VersionTLS13); string(state) != want || resp.ProtoMajor != 1 {
		t.Fatalf("TLS state seen by the handler: %q (HTTP/%d), want %q over HTTP/1", state, resp.ProtoMajor, want)
	}

	before := counted.writes.Load()
	resp, err = client.Get(url + "/blob")
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("body: %d bytes, equal %v, err %v", len(got), bytes.Equal(got, body), err)
	}
	writes := counted.writes.Load() - before
	t.Logf("%d system calls for a %d-byte response", writes, len(body))
	if writes > 40 {
		t.Fatalf("%d writes for a %d-byte response; records are not batched (one per 16 KiB record would be %d)", writes, len(body), len(body)/(16<<10))
	}
}

// TestTLSPlainHTTPGets400: plain HTTP to berth's TLS port gets Go's 400
// "Client sent an HTTP request to an HTTPS server", never the handler.
func TestTLSPlainHTTPGets400(t *testing.T) {
	_, certFile, keyFile := testCert(t)
	base, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := newTLSListener(base, certFile, keyFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { t.Error("the handler was reached over plain HTTP") })}
	go srv.Serve(ln)
	defer srv.Close()
	resp, err := http.Get("http://" + base.Addr().String() + "/v2/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !bytes.Contains(body, []byte("HTTP request to an HTTPS server")) {
		t.Fatalf("plain HTTP: %s %q", resp.Status, body)
	}
}

// TestRecordBatcherKeepsNoBufferBetweenWrites: a connection gives its
// batch buffer back after each Write, so that idle keep-alive connections
// hold none (256 KiB each otherwise), and what it sends is what was
// written, in order.
func TestRecordBatcherKeepsNoBufferBetweenWrites(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	rb := &recordBatcher{Conn: a}
	got := make(chan []byte)
	go func() { all, _ := io.ReadAll(b); got <- all }()
	var want []byte
	for i := range 3 {
		rb.begin()
		for j := range 40 {
			p := bytes.Repeat([]byte{byte(i*40 + j)}, 16<<10)
			want = append(want, p...)
			if _, err := rb.Write(p); err != nil {
				t.Fatal(err)
			}
		}
		if err := rb.end(); err != nil {
			t.Fatal(err)
		}
		if rb.buf != nil {
			t.Fatalf("after write %d the connection keeps a %d-byte buffer", i, cap(rb.buf))
		}
	}
	small := []byte("outside a batch")
	want = append(want, small...)
	if _, err := rb.Write(small); err != nil {
		t.Fatal(err)
	}
	a.Close()
	if all := <-got; !bytes.Equal(all, want) {
		t.Fatalf("sent %d bytes, want %d in the same order", len(all), len(want))
	}
}
