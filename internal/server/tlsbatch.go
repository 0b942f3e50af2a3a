package server

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// TLS with batched records. Go's crypto/tls writes each record of at most
// 16 KiB with a system call of its own: a 1 GiB blob over HTTPS is 65,536
// writes. Here the records one Write of the connection makes (a response
// body's 1 MiB copy is 64 of them) are gathered and sent with a system
// call per recordBatch bytes; anything written outside a Write (the
// handshake, alerts, close_notify) goes out at once. Measured in
// docs/benchmarks.md ("Over TLS").
//
// http.Server handshakes, and speaks HTTP/2, only on a *tls.Conn: these
// connections complete their handshake when it asks for their TLS state
// (ConnectionState), and the listener offers HTTP/1.1 alone, which is what
// registry clients use for blobs.

// recordBatch is the most gathered before a system call.
const recordBatch = 256 << 10

// tlsListener accepts TLS connections whose records are batched.
type tlsListener struct {
	net.Listener
	config *tls.Config
	log    *slog.Logger
}

// newTLSListener serves TLS with the certificate and key files on ln;
// failed handshakes are logged to log at debug level (as http.Server's own
// TLS logs them to its error log).
func newTLSListener(ln net.Listener, certFile, keyFile string, log *slog.Logger) (net.Listener, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("load TLS certificate %s and key %s: %w", certFile, keyFile, err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}, MinVersion: tls.VersionTLS12}
	return &tlsListener{Listener: ln, config: cfg, log: log}, nil
}

// Accept implements net.Listener.
func (l *tlsListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	raw := &recordBatcher{Conn: c}
	return &batchedTLS{Conn: tls.Server(raw, l.config), raw: raw, log: l.log}, nil
}

// batchedTLS is a TLS connection whose Writes batch their records.
type batchedTLS struct {
	*tls.Conn
	raw *recordBatcher
	log *slog.Logger
	// handshaken is set once the handshake is over: before, a Write (which
	// net/http never makes first) is not batched, so that the handshake's
	// own messages are never held back.
	handshaken atomic.Bool
}

// Write implements net.Conn.
func (c *batchedTLS) Write(p []byte) (int, error) {
	if !c.handshaken.Load() {
		return c.Conn.Write(p)
	}
	c.raw.begin()
	n, err := c.Conn.Write(p)
	if ferr := c.raw.end(); err == nil {
		err = ferr
	}
	return n, err
}

// recordBatcher is the connection under TLS: while batching, what TLS
// writes is gathered, and sent when recordBatch is reached or the batch
// ends.
type recordBatcher struct {
	net.Conn
	mu       sync.Mutex
	batching bool
	buf      []byte
}

func (b *recordBatcher) begin() {
	b.mu.Lock()
	b.batching = true
	b.mu.Unlock()
}

// end sends what was gathered and gives the buffer back to the pool, so
// that an idle connection holds none.
func (b *recordBatcher) end() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.batching = false
	err := b.flush()
	if b.buf != nil {
		buf := b.buf[:0]
		batchBufs.Put(&buf)
		b.buf = nil
	}
	return err
}

// batchBufs are the buffers of connections in the middle of a Write.
var batchBufs = sync.Pool{New: func() any { b := make([]byte, 0, recordBatch); return &b }}

// Write implements net.Conn.
func (b *recordBatcher) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.batching {
		if err := b.flush(); err != nil {
			return 0, err
		}
		return b.Conn.Write(p)
	}
	if len(b.buf)+len(p) > recordBatch {
		if err := b.flush(); err != nil {
			return 0, err
		}
	}
	if b.buf == nil {
		b.buf = (*batchBufs.Get().(*[]byte))[:0]
	}
	if len(p) > cap(b.buf) {
		return b.Conn.Write(p)
	}
	b.buf = append(b.buf, p...)
	return len(p), nil
}

// flush sends what was gathered; the caller holds mu.
func (b *recordBatcher) flush() error {
	if len(b.buf) == 0 {
		return nil
	}
	_, err := b.Conn.Write(b.buf)
	b.buf = b.buf[:0]
	return err
}

// handshakeTimeout bounds a TLS handshake, as http.Server's
// ReadHeaderTimeout bounds the request's header after it.
const handshakeTimeout = 30 * time.Second

// ConnectionState completes the handshake and returns the connection's TLS
// state. http.Server asks for it once, when it starts serving a connection
// that is no *tls.Conn, and gives it to every request as r.TLS. A client
// that speaks plain HTTP to the TLS port gets Go's 400 "Client sent an
// HTTP request to an HTTPS server", as from http.Server's own TLS.
func (c *batchedTLS) ConnectionState() tls.ConnectionState {
	c.Conn.SetDeadline(time.Now().Add(handshakeTimeout))
	err := c.Conn.Handshake()
	c.Conn.SetDeadline(time.Time{})
	if err == nil {
		c.handshaken.Store(true)
	} else if c.log != nil {
		c.log.Debug("TLS handshake failed", "remote", c.Conn.RemoteAddr().String(), "err", err)
	}
	var re tls.RecordHeaderError
	if errors.As(err, &re) && re.Conn != nil && looksLikeHTTP(re.RecordHeader[:]) {
		io.WriteString(re.Conn, "HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n")
		re.Conn.Close()
	}
	return c.Conn.ConnectionState()
}

// looksLikeHTTP reports whether the first bytes of a connection are a
// plain HTTP request's.
func looksLikeHTTP(b []byte) bool {
	for _, m := range []string{"GET /", "HEAD ", "POST ", "PUT /", "OPTIO"} {
		if string(b) == m {
			return true
		}
	}
	return false
}
