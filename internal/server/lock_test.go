package server

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/berth-registry/berth/internal/config"
)

func TestDataDirectoryIsLocked(t *testing.T) {
	dir := t.TempDir()
	cfg := &config.Config{Addr: "127.0.0.1:0", DataDir: dir, Auth: "none", MaxManifestSize: 1 << 20, UploadTTL: 3600e9, ShutdownTimeout: 1e9}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	first, err := New(context.Background(), cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(context.Background(), cfg, log); err == nil || !strings.Contains(err.Error(), "in use by another berth process") {
		t.Fatalf("second server on the same data directory: err = %v", err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := New(context.Background(), cfg, log)
	if err != nil {
		t.Fatalf("after the first closed: %v", err)
	}
	again.Close()
}
