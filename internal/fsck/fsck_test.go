package fsck_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/blobstore"
	"github.com/berth-registry/berth/internal/digestlock"
	"github.com/berth-registry/berth/internal/fsck"
	"github.com/berth-registry/berth/internal/metadata"
	"github.com/berth-registry/berth/internal/reference"
	"github.com/berth-registry/berth/internal/registry"
	"github.com/berth-registry/berth/internal/testserver"
)

// check runs the consistency check on a store: a pushed blob (live), a
// blob stored without a record (an orphan, as a crash between the store's
// commit and the metadata's leaves), and a recorded blob whose content was
// deleted (missing). The check reports exactly those; repair removes the
// orphan and nothing else; a second check finds only the missing one.
func check(t *testing.T, store interface {
	blobstore.Store
	fsck.Store
}) {
	ctx := context.Background()
	meta, err := metadata.OpenSQLite(ctx, filepath.Join(t.TempDir(), "berth.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { meta.Close() })
	locks := &digestlock.Set{}
	reg := registry.New(meta, store, registry.Options{Locks: locks}, slog.New(slog.DiscardHandler))
	push := func(data string) reference.Digest {
		d := reference.SHA256.FromBytes([]byte(data))
		if err := reg.PutBlob(ctx, "team/app", d, registry.Chunk{Body: bytes.NewReader([]byte(data)), Start: -1, Length: int64(len(data))}, ""); err != nil {
			t.Fatal(err)
		}
		return d
	}
	live := push("live content")
	gone := push("content whose file was lost")
	if err := store.Delete(ctx, gone); err != nil {
		t.Fatal(err)
	}
	orphan := reference.SHA256.FromBytes([]byte("stored, never recorded"))
	if err := store.CreateUpload(ctx, "0123456789abcdef0123456789abcdef"); err != nil {
		t.Fatal(err)
	}
	if _, err := store.AppendUpload(ctx, "0123456789abcdef0123456789abcdef", 0, bytes.NewReader([]byte("stored, never recorded")), -1); err != nil {
		t.Fatal(err)
	}
	if _, err := store.CommitUpload(ctx, "0123456789abcdef0123456789abcdef", orphan); err != nil {
		t.Fatal(err)
	}

	// Within the grace period the orphan is young: left alone.
	r, err := fsck.Check(ctx, store, meta, locks, fsck.Options{Repair: true, Grace: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if r.Stored != 2 || r.Recorded != 2 || r.Young != 1 || len(r.Orphans) != 0 || len(r.Removed) != 0 || !one(r.Missing, gone) {
		t.Fatalf("check with a young orphan: %+v", r)
	}
	time.Sleep(1100 * time.Millisecond) // S3 keeps times to the second
	r, err = fsck.Check(ctx, store, meta, locks, fsck.Options{Grace: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if !one(r.Orphans, orphan) || !one(r.Missing, gone) || len(r.SizeMismatch) != 0 || len(r.Removed) != 0 {
		t.Fatalf("check: %+v; want orphan %s and missing %s", r, orphan, gone)
	}
	if _, err := store.Stat(ctx, orphan); err != nil {
		t.Fatalf("a check without repair removed the orphan: %v", err)
	}
	r, err = fsck.Check(ctx, store, meta, locks, fsck.Options{Repair: true, Grace: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if !one(r.Removed, orphan) || r.RemovedBytes != int64(len("stored, never recorded")) {
		t.Fatalf("repair: %+v", r)
	}
	if _, err := store.Stat(ctx, orphan); !errors.Is(err, blobstore.ErrNotFound) {
		t.Fatalf("the orphan is still stored after repair: %v", err)
	}
	if size, err := store.Stat(ctx, live); err != nil || size != int64(len("live content")) {
		t.Fatalf("repair touched live content: %d, %v", size, err)
	}
	r, err = fsck.Check(ctx, store, meta, locks, fsck.Options{Repair: true, Grace: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Orphans) != 0 || !one(r.Missing, gone) || r.Stored != 1 {
		t.Fatalf("check after repair: %+v", r)
	}
}

func one(bs []fsck.Blob, d reference.Digest) bool { return len(bs) == 1 && bs[0].Digest == d }

func TestCheckFS(t *testing.T) {
	store, err := blobstore.NewFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	check(t, store)
}

func TestCheckS3(t *testing.T) {
	testserver.EachS3(t, func(t *testing.T, srv *testserver.S3Server) {
		store, err := blobstore.NewS3(context.Background(), blobstore.S3Options{Bucket: srv.Bucket, Region: srv.Region, Endpoint: srv.Endpoint,
			PathStyle: true, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey})
		if err != nil {
			t.Fatal(err)
		}
		check(t, store)
	})
}
