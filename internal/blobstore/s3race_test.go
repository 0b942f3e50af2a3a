package blobstore

import (
	"bytes"
	"context"
	"errors"
	"io"
	"slices"
	"testing"
	"testing/iotest"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/berth-registry/berth/internal/reference"
	"github.com/berth-registry/berth/internal/testserver"
)

// TestS3ConcurrentChunksKeepTheWinner, on versitygw and MinIO: two replicas append different
// bodies at the same offset of one upload, round after round, also once
// the upload has a multipart upload in S3. Exactly one of each pair is
// taken; the loser leaves no part in the multipart upload and no
// multipart upload of its own; and the upload commits to exactly the
// winners' bytes. (Before the fix, a loser uploaded its part under the
// number the winner took, and the commit failed: InvalidPart.)
func TestS3ConcurrentChunksKeepTheWinner(t *testing.T) {
	testserver.EachS3(t, testConcurrentChunks)
}

func testConcurrentChunks(t *testing.T, srv *testserver.S3Server) {
	prefix := freshPrefix(t)
	a, b := newTestS3(t, srv, prefix), newTestS3(t, srv, prefix)
	ctx := context.Background()
	id := newUploadID(t)
	mustCreate(t, a, id)
	// A few bytes first, so that every chunk merges pending bytes.
	appendChunks(t, a, id, []byte("abc"), []int{3}, false)
	want := []byte("abc")
	data := testData(2*9*mib, 23)
	for round := range 4 {
		size := int64(len(want))
		chunks := [2][]byte{data[:9*mib], data[9*mib:]}
		errs := [2]error{}
		done := make(chan struct{})
		for i, s := range []*S3{a, b} {
			go func() {
				_, errs[i] = s.AppendUpload(ctx, id, size, bytes.NewReader(chunks[i]), int64(len(chunks[i])))
				done <- struct{}{}
			}()
		}
		<-done
		<-done
		if (errs[0] == nil) == (errs[1] == nil) || !errors.Is(errors.Join(errs[0], errs[1]), ErrOffset) {
			t.Fatalf("round %d: concurrent appends: %v and %v; want one success and one ErrOffset", round, errs[0], errs[1])
		}
		winner := 0
		if errs[1] == nil {
			winner = 1
		}
		want = append(want, chunks[winner]...)
		checkUploadSize(t, a, id, int64(len(want)))
		checkOnlyRecordedParts(t, a, id)
	}
	d := reference.SHA256.FromBytes(want)
	if _, err := b.CommitUpload(ctx, id, d); err != nil {
		t.Fatalf("commit after the races: %v", err)
	}
	checkBlob(t, a, d, want)
	checkNoUploadObjects(t, srv, a)
}

// checkOnlyRecordedParts checks that the upload's multipart upload holds
// exactly the parts its state records, and that no other multipart upload
// exists at its data key.
func checkOnlyRecordedParts(t *testing.T, s *S3, id string) {
	t.Helper()
	u, inS3 := recordedParts(t, s, id)
	ups, err := s.client.ListMultipartUploads(context.Background(), &s3.ListMultipartUploadsInput{Bucket: &s.bucket, Prefix: aws.String(s.dataKey(id))})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, up := range ups.Uploads {
		ids = append(ids, aws.ToString(up.UploadId))
	}
	if !slices.Equal(ids, []string{u.MultipartID}) {
		t.Fatalf("multipart uploads at the data key: %v, want only the recorded %q", ids, u.MultipartID)
	}
	if len(inS3) != len(u.Parts) {
		t.Fatalf("%d parts in S3, %d recorded: a losing request left a part (%v)", len(inS3), len(u.Parts), inS3)
	}
}

// recordedParts checks that every part the upload's state records is in
// S3 as recorded, and returns the state and the parts in S3 by number.
func recordedParts(t *testing.T, s *S3, id string) (*s3Upload, map[int32]string) {
	t.Helper()
	ctx := context.Background()
	u, err := s.readState(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if u.MultipartID == "" {
		t.Fatal("the upload has no multipart upload")
	}
	parts, err := s.client.ListParts(ctx, &s3.ListPartsInput{Bucket: &s.bucket, Key: aws.String(s.dataKey(id)), UploadId: aws.String(u.MultipartID)})
	if err != nil {
		t.Fatal(err)
	}
	inS3 := map[int32]string{}
	for _, p := range parts.Parts {
		inS3[aws.ToInt32(p.PartNumber)] = aws.ToString(p.ETag)
	}
	for _, p := range u.Parts {
		if inS3[p.Number] != p.ETag {
			t.Fatalf("part %d: recorded %s, in S3 %q: a losing request changed it", p.Number, p.ETag, inS3[p.Number])
		}
	}
	return u, inS3
}

// TestS3ChunkClaims, on versitygw and MinIO: a request that reserved part numbers keeps others at
// its offset out while its claim is fresh, and a stale claim (a replica
// that died mid-chunk) is taken over without reusing its numbers; a chunk
// that fails (the client's body breaks off) gives its claim up at once.
func TestS3ChunkClaims(t *testing.T) {
	testserver.EachS3(t, testChunkClaims)
}

func testChunkClaims(t *testing.T, srv *testserver.S3Server) {
	prefix := freshPrefix(t)
	a, b := newTestS3(t, srv, prefix), newTestS3(t, srv, prefix)
	ctx := context.Background()
	id := newUploadID(t)
	mustCreate(t, a, id)
	data := testData(27*mib, 31)
	appendChunks(t, a, id, data[:9*mib], []int{9 * mib}, false) // a multipart upload, 1 part + pending
	claimBy := func(since time.Time, next int32) {
		t.Helper()
		u, err := a.readState(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		u.Writer, u.WriterSince, u.NextPart = "a-replica-that-died", since, next
		if err := a.writeState(ctx, id, u, nil, u.Rev); err != nil {
			t.Fatal(err)
		}
	}
	claimBy(time.Now(), 7)
	_, err := b.AppendUpload(ctx, id, 9*mib, bytes.NewReader(data[9*mib:18*mib]), 9*mib)
	var busy *BusyError
	if !errors.Is(err, ErrOffset) || !errors.As(err, &busy) || busy.Offset != 9*mib || busy.RetryAfter <= 0 || busy.RetryAfter > writerLease {
		t.Fatalf("a chunk at the offset of a fresh claim: %v, want a BusyError (an ErrOffset) at %d with a wait of at most %s", err, 9*mib, writerLease)
	}
	claimBy(time.Now().Add(-2*writerLease), 7)
	if _, err := b.AppendUpload(ctx, id, 9*mib, bytes.NewReader(data[9*mib:18*mib]), 9*mib); err != nil {
		t.Fatalf("a chunk at the offset of a stale claim: %v", err)
	}
	u, err := a.readState(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if n := lastPart(u.Parts); n < 7 || u.Writer != "" || u.NextPart <= n {
		t.Fatalf("after taking a stale claim over: last part %d, writer %q, next %d; want a number from 7 on, no writer, next above it", n, u.Writer, u.NextPart)
	}
	// A body that breaks off after a part: refused, and the claim it made
	// does not hold the retry back.
	broken := io.MultiReader(bytes.NewReader(data[18*mib:27*mib]), iotest.ErrReader(errors.New("client went away")))
	if _, err := a.AppendUpload(ctx, id, 18*mib, broken, -1); err == nil {
		t.Fatal("a chunk whose body failed was taken")
	}
	if _, err := b.AppendUpload(ctx, id, 18*mib, bytes.NewReader(data[18*mib:27*mib]), 9*mib); err != nil {
		t.Fatalf("the retry of a failed chunk: %v", err)
	}
	recordedParts(t, a, id) // others may be there: the failed chunk's, left out of the commit
	d := reference.SHA256.FromBytes(data)
	if _, err := a.CommitUpload(ctx, id, d); err != nil {
		t.Fatalf("commit: %v", err)
	}
	checkBlob(t, b, d, data)
	checkNoUploadObjects(t, srv, a)
}
