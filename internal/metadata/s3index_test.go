package metadata_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/blobstore"
	"github.com/berth-registry/berth/internal/metadata"
	"github.com/berth-registry/berth/internal/reference"
)

// TestS3IndexUploadStates: creation, conditional updates, pending bytes,
// deletion and expiry of upload states.
func TestS3IndexUploadStates(t *testing.T) {
	onBoth(t, func(t *testing.T, s *metadata.SQL) {
		ctx := context.Background()
		if _, _, err := s.UploadState(ctx, "u1"); !errors.Is(err, blobstore.ErrUploadNotFound) {
			t.Fatalf("missing upload: %v", err)
		}
		if _, err := s.UploadPending(ctx, "u1", "r1"); !errors.Is(err, blobstore.ErrUploadNotFound) {
			t.Fatalf("pending of missing upload: %v", err)
		}
		if err := s.PutUploadState(ctx, "u1", []byte(`{"n":1}`), nil, "r1", ""); err != nil {
			t.Fatal(err)
		}
		if err := s.PutUploadState(ctx, "u1", []byte(`{"n":9}`), nil, "r9", ""); !errors.Is(err, blobstore.ErrStateChanged) {
			t.Fatalf("second create: %v", err)
		}
		state, rev, err := s.UploadState(ctx, "u1")
		if err != nil || string(state) != `{"n":1}` || rev != "r1" {
			t.Fatalf("state %q rev %q err %v", state, rev, err)
		}
		if p, err := s.UploadPending(ctx, "u1", "r1"); err != nil || p != nil {
			t.Fatalf("pending of new upload: %q %v", p, err)
		}

		// Conditional update with pending bytes, then a wrong revision.
		pending := []byte("abc")
		if err := s.PutUploadState(ctx, "u1", []byte(`{"n":2}`), &pending, "r2", "r1"); err != nil {
			t.Fatal(err)
		}
		if err := s.PutUploadState(ctx, "u1", []byte(`{"n":3}`), nil, "r3", "r1"); !errors.Is(err, blobstore.ErrStateChanged) {
			t.Fatalf("update at stale revision: %v", err)
		}
		if err := s.PutUploadState(ctx, "nope", []byte(`{}`), nil, "r3", "r1"); !errors.Is(err, blobstore.ErrStateChanged) {
			t.Fatalf("update of missing upload: %v", err)
		}
		if p, err := s.UploadPending(ctx, "u1", "r2"); err != nil || string(p) != "abc" {
			t.Fatalf("pending %q %v", p, err)
		}
		if _, err := s.UploadPending(ctx, "u1", "r1"); !errors.Is(err, blobstore.ErrStateChanged) {
			t.Fatalf("pending at stale revision: %v", err)
		}

		// nil pending keeps the bytes; non-nil replaces them (empty: none).
		if err := s.PutUploadState(ctx, "u1", []byte(`{"n":3}`), nil, "r3", "r2"); err != nil {
			t.Fatal(err)
		}
		if p, err := s.UploadPending(ctx, "u1", "r3"); err != nil || string(p) != "abc" {
			t.Fatalf("pending kept: %q %v", p, err)
		}
		big := bytes.Repeat([]byte{0, 1, 2, 255}, 1<<16)
		if err := s.PutUploadState(ctx, "u1", []byte(`{"n":4}`), &big, "r4", "r3"); err != nil {
			t.Fatal(err)
		}
		if p, err := s.UploadPending(ctx, "u1", "r4"); err != nil || !bytes.Equal(p, big) {
			t.Fatalf("pending replaced: %d bytes, %v", len(p), err)
		}
		empty := []byte{}
		if err := s.PutUploadState(ctx, "u1", []byte(`{"n":5}`), &empty, "r5", "r4"); err != nil {
			t.Fatal(err)
		}
		if p, err := s.UploadPending(ctx, "u1", "r5"); err != nil || p != nil {
			t.Fatalf("pending emptied: %q %v", p, err)
		}

		// Expiry: u1 was written before the cut, u2 after.
		time.Sleep(2 * time.Millisecond)
		cut := time.Now()
		time.Sleep(2 * time.Millisecond)
		if err := s.PutUploadState(ctx, "u2", []byte(`{}`), &pending, "a", ""); err != nil {
			t.Fatal(err)
		}
		if ids, err := s.StaleUploadStates(ctx, cut); err != nil || !slices.Equal(ids, []string{"u1"}) {
			t.Fatalf("stale before cut: %v %v", ids, err)
		}
		ids, err := s.StaleUploadStates(ctx, time.Now().Add(time.Second))
		slices.Sort(ids)
		if err != nil || !slices.Equal(ids, []string{"u1", "u2"}) {
			t.Fatalf("stale after: %v %v", ids, err)
		}

		if err := s.DeleteUploadState(ctx, "u1", ""); err != nil {
			t.Fatal(err)
		}
		if err := s.DeleteUploadState(ctx, "u1", ""); err != nil {
			t.Fatalf("deleting a missing upload: %v", err)
		}
		if _, _, err := s.UploadState(ctx, "u1"); !errors.Is(err, blobstore.ErrUploadNotFound) {
			t.Fatalf("deleted upload: %v", err)
		}
		if err := s.PutUploadState(ctx, "u1", []byte(`{}`), nil, "r6", "r5"); !errors.Is(err, blobstore.ErrStateChanged) {
			t.Fatalf("update of deleted upload: %v", err)
		}
	})
}

// TestS3IndexConcurrentUpdates: of writers at the same revision, exactly
// one wins, for creates and for updates.
func TestS3IndexConcurrentUpdates(t *testing.T) {
	onBoth(t, func(t *testing.T, s *metadata.SQL) {
		ctx := context.Background()
		for trial := range 10 {
			id := fmt.Sprintf("u%d", trial)
			for _, ifRev := range []string{"", "base"} {
				if ifRev != "" {
					if err := s.PutUploadState(ctx, id, []byte(`{}`), nil, "base", ""); err != nil {
						t.Fatal(err)
					}
				}
				var wg sync.WaitGroup
				errs := make([]error, 8)
				for g := range errs {
					wg.Add(1)
					go func() {
						defer wg.Done()
						p := []byte{byte(g)}
						errs[g] = s.PutUploadState(ctx, id, []byte(fmt.Sprintf(`{"g":%d}`, g)), &p, fmt.Sprintf("w%d", g), ifRev)
					}()
				}
				wg.Wait()
				winner := -1
				for g, err := range errs {
					switch {
					case err == nil:
						if winner >= 0 {
							t.Fatalf("trial %d ifRev %q: writers %d and %d both won", trial, ifRev, winner, g)
						}
						winner = g
					case !errors.Is(err, blobstore.ErrStateChanged):
						t.Fatalf("trial %d ifRev %q: %v", trial, ifRev, err)
					}
				}
				if winner < 0 {
					t.Fatalf("trial %d ifRev %q: no writer won", trial, ifRev)
				}
				state, rev, err := s.UploadState(ctx, id)
				if err != nil || rev != fmt.Sprintf("w%d", winner) || string(state) != fmt.Sprintf(`{"g":%d}`, winner) {
					t.Fatalf("trial %d ifRev %q: winner %d, state %q rev %q err %v", trial, ifRev, winner, state, rev, err)
				}
				if p, err := s.UploadPending(ctx, id, rev); err != nil || !bytes.Equal(p, []byte{byte(winner)}) {
					t.Fatalf("trial %d ifRev %q: pending %v %v", trial, ifRev, p, err)
				}
				if err := s.DeleteUploadState(ctx, id, ""); err != nil {
					t.Fatal(err)
				}
			}
		}
	})
}

// TestS3IndexBlobLocations: the first location recorded stays; lookup,
// listing and deletion.
func TestS3IndexBlobLocations(t *testing.T) {
	onBoth(t, func(t *testing.T, s *metadata.SQL) {
		ctx := context.Background()
		d := digest(1)
		if _, _, err := s.BlobLocation(ctx, d); !errors.Is(err, blobstore.ErrNotFound) {
			t.Fatalf("missing location: %v", err)
		}
		before := time.Now().Add(-time.Second)
		if key, err := s.AddBlobLocation(ctx, d, "blobs/a", 10); err != nil || key != "blobs/a" {
			t.Fatalf("first add: %q %v", key, err)
		}
		if key, err := s.AddBlobLocation(ctx, d, "blobs/b", 10); err != nil || key != "blobs/a" {
			t.Fatalf("second add: %q %v", key, err)
		}
		if key, size, err := s.BlobLocation(ctx, d); err != nil || key != "blobs/a" || size != 10 {
			t.Fatalf("location %q %d %v", key, size, err)
		}
		if _, err := s.AddBlobLocation(ctx, digest(2), "blobs/c", 20); err != nil {
			t.Fatal(err)
		}
		got := map[reference.Digest]string{}
		err := s.BlobLocations(ctx, func(d reference.Digest, key string, size int64, created time.Time) error {
			got[d] = fmt.Sprintf("%s %d", key, size)
			if created.Before(before) || created.After(time.Now()) {
				t.Errorf("%s created %v", d, created)
			}
			return nil
		})
		if err != nil || len(got) != 2 || got[digest(1)] != "blobs/a 10" || got[digest(2)] != "blobs/c 20" {
			t.Fatalf("locations %v %v", got, err)
		}
		stop := errors.New("stop")
		if err := s.BlobLocations(ctx, func(reference.Digest, string, int64, time.Time) error { return stop }); err != stop {
			t.Fatalf("callback error: %v", err)
		}
		if err := s.DeleteBlobLocation(ctx, d); err != nil {
			t.Fatal(err)
		}
		if err := s.DeleteBlobLocation(ctx, d); err != nil {
			t.Fatalf("deleting a missing location: %v", err)
		}
		if _, _, err := s.BlobLocation(ctx, d); !errors.Is(err, blobstore.ErrNotFound) {
			t.Fatalf("deleted location: %v", err)
		}
		if key, err := s.AddBlobLocation(ctx, d, "blobs/b", 10); err != nil || key != "blobs/b" {
			t.Fatalf("add after delete: %q %v", key, err)
		}
	})
}

// TestS3IndexBlobLocationsPages: a listing longer than one page sees every
// location once, and its callback may delete what it is given.
func TestS3IndexBlobLocationsPages(t *testing.T) {
	onBoth(t, func(t *testing.T, s *metadata.SQL) {
		ctx := context.Background()
		const n = 2345
		var wg sync.WaitGroup
		for w := range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < n; i += 16 {
					if _, err := s.AddBlobLocation(ctx, digest(i), fmt.Sprint(i), int64(i)); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		seen := map[reference.Digest]int{}
		err := s.BlobLocations(ctx, func(d reference.Digest, key string, size int64, _ time.Time) error {
			seen[d]++
			if key != fmt.Sprint(size) {
				t.Errorf("%s: key %q size %d", d, key, size)
			}
			return s.DeleteBlobLocation(ctx, d)
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(seen) != n {
			t.Fatalf("listed %d of %d locations", len(seen), n)
		}
		for d, c := range seen {
			if c != 1 {
				t.Fatalf("%s listed %d times", d, c)
			}
		}
		if err := s.BlobLocations(ctx, func(d reference.Digest, _ string, _ int64, _ time.Time) error {
			return fmt.Errorf("%s left after deletion", d)
		}); err != nil {
			t.Fatal(err)
		}
	})
}
