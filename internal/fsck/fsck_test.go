package fsck_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

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
func check(t *testing.T, meta *metadata.SQL, store interface {
	blobstore.Store
	fsck.Store
}) {
	ctx := context.Background()
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

// openMeta opens a metadata store (SQLite) for a test.
func openMeta(t *testing.T) *metadata.SQL {
	meta, err := metadata.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "berth.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { meta.Close() })
	return meta
}

func TestCheckFS(t *testing.T) {
	store, err := blobstore.NewFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	check(t, openMeta(t), store)
}

func TestCheckS3(t *testing.T) {
	testserver.EachS3(t, func(t *testing.T, srv *testserver.S3Server) {
		meta := openMeta(t)
		store, err := blobstore.NewS3(context.Background(), blobstore.S3Options{Bucket: srv.Bucket, Region: srv.Region, Endpoint: srv.Endpoint,
			PathStyle: true, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, Index: meta})
		if err != nil {
			t.Fatal(err)
		}
		check(t, meta, store)
		checkS3Objects(t, srv, meta, store)
	})
}

// checkS3Objects checks what only the S3 layout has: a blob's object (a
// completed multipart upload, its location in the index) deleted behind
// the registry's back is missing, and an object under objects/ that no
// location names is a stray, which repair deletes, leaving live objects.
func checkS3Objects(t *testing.T, srv *testserver.S3Server, meta *metadata.SQL, store *blobstore.S3) {
	ctx := context.Background()
	locks := &digestlock.Set{}
	reg := registry.New(meta, store, registry.Options{Locks: locks}, slog.New(slog.DiscardHandler))
	push := func(data []byte) (reference.Digest, string) {
		d := reference.SHA256.FromBytes(data)
		if err := reg.PutBlob(ctx, "team/big", d, registry.Chunk{Body: bytes.NewReader(data), Start: -1, Length: int64(len(data))}, ""); err != nil {
			t.Fatal(err)
		}
		key, _, err := meta.BlobLocation(ctx, d)
		if err != nil || !strings.HasPrefix(key, "objects/") {
			t.Fatalf("location of a 9 MiB blob: %q, %v; want an object under objects/", key, err)
		}
		return d, key
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), 9<<20/16)
	live, liveKey := push(big)
	lost, lostKey := push(append(big, 'x'))
	c := srv.Client()
	if _, err := c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &srv.Bucket, Key: aws.String(lostKey)}); err != nil {
		t.Fatal(err)
	}
	strayKey := "objects/" + strings.Repeat("5", 32)
	if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: &srv.Bucket, Key: aws.String(strayKey), Body: strings.NewReader("left by a crash")}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // S3 keeps times to the second
	r, err := fsck.Check(ctx, store, meta, locks, fsck.Options{Grace: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Strays) != 1 || r.Strays[0].Key != strayKey || !slices.ContainsFunc(r.Missing, func(b fsck.Blob) bool { return b.Digest == lost }) {
		t.Fatalf("check: %+v; want the stray %s and %s missing", r, strayKey, lost)
	}
	r, err = fsck.Check(ctx, store, meta, locks, fsck.Options{Repair: true, Grace: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.RemovedStrays) != 1 || r.RemovedStrays[0].Key != strayKey {
		t.Fatalf("repair: %+v; want the stray removed", r)
	}
	if _, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &srv.Bucket, Key: aws.String(strayKey)}); err == nil {
		t.Fatal("the stray object is still there after repair")
	}
	content, size, err := store.Open(ctx, live)
	if err != nil || size != int64(len(big)) {
		t.Fatalf("repair touched live content at %s: %d, %v", liveKey, size, err)
	}
	defer content.Close()
	got, err := io.ReadAll(content)
	if err != nil || !bytes.Equal(got, big) {
		t.Fatalf("live content after repair: %d bytes, %v", len(got), err)
	}
}
