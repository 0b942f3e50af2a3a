package server

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/config"
)

// syncBuffer is a log sink safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Hardening: a request whose client went away is no server error: it is
// not logged at ERROR as "request failed" nor recorded as a 500.
func TestClientDisconnectIsNoServerError(t *testing.T) {
	var logs syncBuffer
	cfg := &config.Config{Addr: "127.0.0.1:0", DataDir: t.TempDir(), Auth: "none", MaxManifestSize: 1 << 20,
		UploadTTL: time.Hour, ShutdownTimeout: time.Second}
	srv, err := New(context.Background(), cfg, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	for _, path := range []string{"/v2/team/app/tags/list", "/v2/team/app/manifests/latest", "/v2/_catalog"} {
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // the client is gone before berth reads the database
		req := httptest.NewRequest(http.MethodGet, path, nil).WithContext(ctx)
		rec := httptest.NewRecorder()
		srv.Handler().ServeHTTP(rec, req)
		if rec.Code/100 == 5 {
			t.Errorf("GET %s after the client left: recorded as %d", path, rec.Code)
		}
	}
	if out := logs.String(); strings.Contains(out, "level=ERROR") || !strings.Contains(out, "status=499") {
		t.Fatalf("logs of cancelled requests:\n%s", out)
	}
}
