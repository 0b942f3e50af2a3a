package registry

import (
	"context"
	"errors"
	"testing"

	"github.com/berth-registry/berth/internal/blobstore"
	"github.com/berth-registry/berth/internal/reference"
)

// putterStore is a store that says it takes whole blobs of up to 8 MiB;
// the budget test never gets as far as storing one.
type putterStore struct{ blobstore.Store }

func (putterStore) PutLimit() int64 { return 8 << 20 }
func (putterStore) PutBlob(context.Context, reference.Digest, []byte) error {
	return errors.New("not stored in this test")
}
func (putterStore) PutUpload(context.Context, string, reference.Digest, []byte) error {
	return errors.New("not stored in this test")
}

// TestWholeBodiesHaveAMemoryBudget: whole bodies held in memory at once
// never exceed wholeBudget. A body over 64 KiB counts as a pooled buffer
// of the store's limit; the one that would go over takes the general
// (streaming) path until another gives its memory back. Bodies of unknown
// length, over the limit, or not starting the upload never go whole.
func TestWholeBodiesHaveAMemoryBudget(t *testing.T) {
	s := newService(t, Options{})
	s.blobs = putterStore{s.blobs}
	var releases []func()
	for i := range wholeBudget / (8 << 20) {
		_, release, ok := s.putter(Chunk{Start: -1, Length: 1 << 20})
		if !ok {
			t.Fatalf("body %d of 1 MiB refused within the budget", i)
		}
		releases = append(releases, release)
	}
	if _, _, ok := s.putter(Chunk{Start: -1, Length: 1 << 20}); ok {
		t.Fatalf("a body over the %d-byte budget went whole (%d bytes held)", wholeBudget, s.wholeBytes.Load())
	}
	releases[0]()
	_, release, ok := s.putter(Chunk{Start: -1, Length: 1 << 20})
	if !ok {
		t.Fatal("refused after a body gave its memory back")
	}
	release()
	for _, r := range releases[1:] {
		r()
	}
	if n := s.wholeBytes.Load(); n != 0 {
		t.Fatalf("%d bytes still counted after every release", n)
	}
	for _, c := range []Chunk{{Start: -1, Length: -1}, {Start: -1, Length: 8<<20 + 1}, {Start: 5, Length: 10}} {
		if _, _, ok := s.putter(c); ok {
			t.Errorf("chunk %+v went whole", c)
		}
	}
}
