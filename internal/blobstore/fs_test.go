package blobstore

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/berth-registry/berth/internal/reference"
)

// failingReader returns some data and then an error, like a client that
// disconnects mid-chunk.
type failingReader struct {
	data string
	done bool
}

func (r *failingReader) Read(p []byte) (int, error) {
	if r.done {
		return 0, errors.New("connection reset")
	}
	r.done = true
	return copy(p, r.data), nil
}

func TestAppendUndoesFailedChunks(t *testing.T) {
	ctx := context.Background()
	s, err := NewFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	const id = "0123456789abcdef0123456789abcdef"
	if err := s.CreateUpload(ctx, id); err != nil {
		t.Fatal(err)
	}
	if n, err := s.AppendUpload(ctx, id, 0, strings.NewReader("good "), -1); err != nil || n != 5 {
		t.Fatalf("append = %d, %v", n, err)
	}
	n, err := s.AppendUpload(ctx, id, 5, &failingReader{data: "partial"}, -1)
	var re *ReadError
	if !errors.As(err, &re) || n != 5 {
		t.Fatalf("failing body: %d, %v; want *ReadError and size 5", n, err)
	}
	if _, err := s.AppendUpload(ctx, id, 5, strings.NewReader("abc"), 5); !errors.Is(err, ErrChunkLength) {
		t.Fatalf("short chunk: %v, want ErrChunkLength", err)
	}
	if _, err := s.AppendUpload(ctx, id, 5, strings.NewReader("abcdefgh"), 5); !errors.Is(err, ErrChunkLength) {
		t.Fatalf("long chunk: %v, want ErrChunkLength", err)
	}
	if _, err := s.AppendUpload(ctx, id, 9, strings.NewReader("x"), -1); !errors.Is(err, ErrOffset) {
		t.Fatalf("gap: %v, want ErrOffset", err)
	}
	if size, _, err := s.UploadStatus(ctx, id); err != nil || size != 5 {
		t.Fatalf("size after rejected chunks = %d, %v; want 5", size, err)
	}
	if _, err := s.AppendUpload(ctx, id, 5, strings.NewReader("data"), 4); err != nil {
		t.Fatal(err)
	}
	want := reference.SHA256.FromBytes([]byte("good data"))
	if _, err := s.CommitUpload(ctx, id, want); err != nil {
		t.Fatalf("commit: %v", err)
	}
	c, size, err := s.Open(ctx, want)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b, _ := io.ReadAll(c)
	if string(b) != "good data" || size != 9 {
		t.Fatalf("blob = %q (%d)", b, size)
	}
}

func TestCommitRejectsWrongDigest(t *testing.T) {
	ctx := context.Background()
	s, err := NewFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	const id = "fedcba9876543210fedcba9876543210"
	if err := s.CreateUpload(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AppendUpload(ctx, id, 0, strings.NewReader("content"), -1); err != nil {
		t.Fatal(err)
	}
	wrong := reference.SHA512.FromBytes([]byte("other"))
	if _, err := s.CommitUpload(ctx, id, wrong); !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("commit with wrong sha512: %v", err)
	}
	if _, err := s.Stat(ctx, wrong); !errors.Is(err, ErrNotFound) {
		t.Fatalf("blob stored despite mismatch: %v", err)
	}
	if _, _, err := s.UploadStatus(ctx, id); !errors.Is(err, ErrUploadNotFound) {
		t.Fatalf("upload kept after mismatch: %v", err)
	}
}
