package server

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/config"
)

// TestShutdownDelayDrains: after SIGTERM (the context's end) and for
// shutdown_delay, berth is not ready but still serves, new connections
// included, and every response closes its connection; then it stops
// accepting.
func TestShutdownDelayDrains(t *testing.T) {
	const delay = 1500 * time.Millisecond
	cfg := &config.Config{Addr: "127.0.0.1:0", DataDir: t.TempDir(), Auth: "none", MaxManifestSize: 1 << 20,
		UploadTTL: time.Hour, ShutdownTimeout: time.Second, ShutdownDelay: delay}
	srv, err := New(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	var base string
	for i := 0; i < 200 && base == ""; i++ {
		if a := srv.selfAddr.Load(); a != nil {
			base = "http://" + *a
		}
		time.Sleep(10 * time.Millisecond)
	}
	if base == "" {
		t.Fatal("the server did not listen")
	}
	get := func(path string) (int, bool, error) {
		// A client of its own per request: a new connection each time.
		c := &http.Client{Transport: &http.Transport{}, Timeout: 5 * time.Second}
		resp, err := c.Get(base + path)
		if err != nil {
			return 0, false, err
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, resp.Close, nil
	}
	if st, closes, err := get("/readyz"); err != nil || st != http.StatusOK || closes {
		t.Fatalf("before SIGTERM: /readyz %d (closes the connection: %v, %v), want 200 with keep-alive", st, closes, err)
	}

	stopped := time.Now()
	cancel()
	time.Sleep(delay / 3)
	if st, _, err := get("/readyz"); err != nil || st != http.StatusServiceUnavailable {
		t.Errorf("while draining: /readyz %d (%v), want 503", st, err)
	}
	if st, closes, err := get("/v2/"); err != nil || st != http.StatusOK || !closes {
		t.Errorf("while draining: a new connection's GET /v2/ %d (closes the connection: %v, %v), want 200 and Connection: close", st, closes, err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if took := time.Since(stopped); took < delay {
		t.Errorf("Serve returned %s after SIGTERM, before shutdown_delay (%s)", took, delay)
	}
	if _, _, err := get("/healthz"); err == nil {
		t.Error("after the shutdown the server still accepts connections")
	}
}
