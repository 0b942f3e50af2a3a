package registry

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/blobstore"
	"github.com/berth-registry/berth/internal/errcode"
	"github.com/berth-registry/berth/internal/metadata"
	"github.com/berth-registry/berth/internal/reference"
)

func newService(t *testing.T, opts Options) *Service {
	s, _ := newServiceDir(t, opts)
	return s
}

func newServiceDir(t *testing.T, opts Options) (*Service, string) {
	t.Helper()
	dir := t.TempDir()
	blobs, err := blobstore.NewFS(dir)
	if err != nil {
		t.Fatal(err)
	}
	meta, err := metadata.OpenSQLite(context.Background(), dir+"/berth.db")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { meta.Close() })
	return New(meta, blobs, opts, slog.New(slog.NewTextHandler(io.Discard, nil))), dir
}

// TestOrphanedUploadDataExpires: upload data without a session (a crash
// between creating the file and recording the session) is swept too.
func TestOrphanedUploadDataExpires(t *testing.T) {
	ctx := context.Background()
	s := newService(t, Options{UploadTTL: 20 * time.Millisecond})
	orphan := newID()
	if err := s.blobs.CreateUpload(ctx, orphan); err != nil {
		t.Fatal(err)
	}
	time.Sleep(30 * time.Millisecond)
	if n, err := s.ExpireUploads(ctx); err != nil || n != 1 {
		t.Fatalf("ExpireUploads = %d, %v; want the orphan removed", n, err)
	}
	if _, _, err := s.blobs.UploadStatus(ctx, orphan); !errors.Is(err, blobstore.ErrUploadNotFound) {
		t.Fatalf("orphan still there: %v", err)
	}
}

// TestFailedCommitKeepsTheSession: when storing the blob fails, the client
// gets a 500 and may retry the same upload.
func TestFailedCommitKeepsTheSession(t *testing.T) {
	ctx := context.Background()
	s, dir := newServiceDir(t, Options{})
	data := []byte("retry me")
	d := reference.SHA256.FromBytes(data)
	id, err := s.StartUpload(ctx, "r", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.AppendUpload(ctx, "r", id, Chunk{Body: strings.NewReader(string(data)), Start: 0, Length: int64(len(data))}); err != nil {
		t.Fatal(err)
	}
	// Break the blob's directory so that the commit cannot rename into it.
	blobDir := filepath.Join(dir, "blobs", "sha256", d.Encoded()[:2])
	if err := os.Remove(blobDir); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(blobDir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = s.FinishUpload(ctx, "r", id, d, nil)
	if e := errcode.As(err); e.Status != 500 {
		t.Fatalf("commit into a broken directory: %v, want a 500", err)
	}
	if size, err := s.UploadStatus(ctx, "r", id); err != nil || size != int64(len(data)) {
		t.Fatalf("session after the failed commit: %d, %v; want it kept with its data", size, err)
	}
	if err := os.Remove(blobDir); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(blobDir, 0o750); err != nil {
		t.Fatal(err)
	}
	if _, err := s.FinishUpload(ctx, "r", id, d, nil); err != nil {
		t.Fatalf("retry: %v", err)
	}
	if size, err := s.StatBlob(ctx, "r", d, true); err != nil || size != int64(len(data)) {
		t.Fatalf("blob after retry: %d, %v", size, err)
	}
}

func TestIdleUploadsExpire(t *testing.T) {
	ctx := context.Background()
	s := newService(t, Options{UploadTTL: 20 * time.Millisecond})
	idle, err := s.StartUpload(ctx, "r", "")
	if err != nil {
		t.Fatal(err)
	}
	busy, err := s.StartUpload(ctx, "r", "")
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(30 * time.Millisecond)
	if _, err := s.AppendUpload(ctx, "r", busy, Chunk{Body: strings.NewReader("data"), Start: -1, Length: -1}); err != nil {
		t.Fatal(err)
	}
	n, err := s.ExpireUploads(ctx)
	if err != nil || n != 1 {
		t.Fatalf("ExpireUploads = %d, %v; want 1 (only the idle upload)", n, err)
	}
	if _, err := s.UploadStatus(ctx, "r", idle); errcode.As(err).Code != errcode.BlobUploadUnknown {
		t.Errorf("idle upload status: %v, want BLOB_UPLOAD_UNKNOWN", err)
	}
	if size, err := s.UploadStatus(ctx, "r", busy); err != nil || size != 4 {
		t.Errorf("busy upload: %d, %v; want 4 bytes kept", size, err)
	}
}

func TestUploadBelongsToItsRepository(t *testing.T) {
	ctx := context.Background()
	s := newService(t, Options{})
	id, err := s.StartUpload(ctx, "a", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.UploadStatus(ctx, "b", id); errcode.As(err).Code != errcode.BlobUploadUnknown {
		t.Fatalf("status through another repository: %v, want BLOB_UPLOAD_UNKNOWN", err)
	}
	d := reference.SHA512.FromBytes([]byte("x"))
	if _, err := s.FinishUpload(ctx, "a", id, d, &Chunk{Body: strings.NewReader("x"), Start: 0, Length: 1}); err != nil {
		t.Fatalf("sha512 upload: %v", err)
	}
	if size, err := s.StatBlob(ctx, "a", d, true); err != nil || size != 1 {
		t.Fatalf("StatBlob = %d, %v", size, err)
	}
	if _, err := s.StatBlob(ctx, "b", d, true); errcode.As(err).Code != errcode.BlobUnknown {
		t.Fatalf("blob visible in another repository: %v", err)
	}
	if ok, err := s.Mount(ctx, "b", d, ""); !ok || err != nil {
		t.Fatalf("mount without from: %v %v", ok, err)
	}
	if _, err := s.StatBlob(ctx, "b", d, true); err != nil {
		t.Fatalf("blob not mounted: %v", err)
	}
}
