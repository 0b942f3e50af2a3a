package server

import (
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/berth-registry/berth/internal/httprec"
)

// logRequests logs one line per request, without query strings or headers,
// which may carry credentials.
func logRequests(log *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := httprec.Of(w)
		next.ServeHTTP(sw, r)
		if !log.Enabled(r.Context(), slog.LevelInfo) {
			return
		}
		log.LogAttrs(r.Context(), slog.LevelInfo, "request",
			slog.String("method", r.Method),
			slog.String("path", r.URL.Path),
			slog.Int("status", sw.Status),
			slog.Int64("bytes", sw.Bytes),
			slog.Duration("duration", time.Since(start)),
			slog.String("remote", r.RemoteAddr),
		)
	})
}

// idleBody cuts off a request body that sends nothing for a while: each
// read may wait at most timeout for data, so a stalled upload cannot hold
// its connection, goroutine and file forever. Whole transfers may take as
// long as they need while data flows.
type idleBody struct {
	io.ReadCloser
	rc      *http.ResponseController
	timeout time.Duration
}

func (b *idleBody) Read(p []byte) (int, error) {
	_ = b.rc.SetReadDeadline(time.Now().Add(b.timeout))
	return b.ReadCloser.Read(p)
}

func limitIdleBodies(timeout time.Duration, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body != nil && r.Body != http.NoBody && timeout > 0 {
			r.Body = &idleBody{ReadCloser: r.Body, rc: http.NewResponseController(w), timeout: timeout}
		}
		next.ServeHTTP(w, r)
	})
}
