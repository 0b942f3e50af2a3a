package blobstore

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/berth-registry/berth/internal/reference"
)

// validUploadID reports whether id can be used in a key: the API's ids are
// hex, but any short run of letters, digits, '-' and '_' is accepted.
func validUploadID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for _, c := range id {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// s3Upload is the state object of an upload session.
type s3Upload struct {
	// Size is the number of bytes received.
	Size int64 `json:"size"`
	// MultipartID is the S3 multipart upload at the data key, once the
	// first part has been uploaded.
	MultipartID string `json:"multipartUploadId,omitempty"`
	// Parts are the uploaded parts, numbered from 1.
	Parts []s3Part `json:"parts,omitempty"`
	// SHA256 is the marshalled state of the sha256 hash of all Size
	// bytes. A blob committed under a sha512 digest (rare) is hashed at
	// the commit, from its content, rather than every upload paying for
	// a second hash as it streams.
	SHA256 []byte `json:"sha256"`
	// NextPart is the lowest part number no request has taken yet. A
	// request that uploads parts into a multipart upload it did not begin
	// first reserves its numbers from here (Writer), so that a concurrent
	// request at the same offset never uploads under a number another one
	// took: the loser of a race changes nothing the winner wrote.
	NextPart int32 `json:"nextPart,omitempty"`
	// Writer is the token of the request that reserved part numbers for a
	// chunk at Size, and WriterSince when it last renewed its claim: while
	// that is within writerLease, other requests at this offset are
	// refused before they upload anything.
	Writer      string    `json:"writer,omitempty"`
	WriterSince time.Time `json:"writerSince,omitzero"`
	// Modified is when the state was last written.
	Modified time.Time `json:"modified"`
	// Rev is the revision the index holds the state at (not in the
	// JSON): random and new at each write, what conditional writes go by,
	// and what tells a write of ours that succeeded although its answer
	// was lost from a concurrent one.
	Rev string `json:"-"`
}

// pendingSize is the number of bytes received after the parts, kept with
// the state in the index until they fill a part or the upload commits.
func (u *s3Upload) pendingSize() int64 { return u.Size - u.partsSize() }

// s3Part is an uploaded part of the multipart upload.
type s3Part struct {
	Number int32  `json:"number"`
	ETag   string `json:"etag"`
	CRC32  string `json:"crc32,omitempty"`
	Size   int64  `json:"size"`
}

func (u *s3Upload) partsSize() int64 {
	var n int64
	for _, p := range u.Parts {
		n += p.Size
	}
	return n
}

// hash restores the upload's sha256 state.
func (u *s3Upload) hash() (hash.Hash, error) {
	h := sha256.New()
	if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(u.SHA256); err != nil {
		return nil, fmt.Errorf("restore sha256 state: %w", err)
	}
	return h, nil
}

// setHash records the sha256 state in the upload.
func (u *s3Upload) setHash(h hash.Hash) error {
	var err error
	if u.SHA256, err = h.(encoding.BinaryMarshaler).MarshalBinary(); err != nil {
		return fmt.Errorf("save sha256 state: %w", err)
	}
	return nil
}

func randomToken() string {
	b := make([]byte, 12)
	rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}

// readState returns an upload's state, at its revision, or
// ErrUploadNotFound.
func (s *S3) readState(ctx context.Context, id string) (*s3Upload, error) {
	if !validUploadID(id) {
		return nil, ErrUploadNotFound
	}
	b, rev, err := s.index.UploadState(ctx, id)
	if errors.Is(err, ErrUploadNotFound) {
		return nil, ErrUploadNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("s3: read state of upload %s: %w", id, err)
	}
	u := s3Upload{Rev: rev}
	if err := json.Unmarshal(b, &u); err != nil {
		return nil, fmt.Errorf("s3: decode state of upload %s: %w", id, err)
	}
	return &u, nil
}

// writeState writes an upload's state, with its pending bytes when
// pending is not nil: only if the upload is still at revision ifRev, or,
// when ifRev is empty, only if there is none yet (ErrStateChanged
// otherwise). It sets u.Rev, the new revision, and u.Modified.
func (s *S3) writeState(ctx context.Context, id string, u *s3Upload, pending *[]byte, ifRev string) error {
	u.Rev = randomToken()
	u.Modified = time.Now().UTC()
	b, err := json.Marshal(u)
	if err != nil {
		return fmt.Errorf("s3: encode state of upload %s: %w", id, err)
	}
	err = s.index.PutUploadState(ctx, id, b, pending, u.Rev, ifRev)
	if err == nil {
		return nil
	}
	// A write that failed may have been made all the same, its answer
	// lost: the revision tells.
	if _, rev, rerr := s.index.UploadState(ctx, id); rerr == nil && rev == u.Rev {
		return nil
	}
	if errors.Is(err, ErrStateChanged) {
		return fmt.Errorf("s3: write state of upload %s: %w", id, ErrStateChanged)
	}
	return fmt.Errorf("s3: write state of upload %s: %w", id, err)
}

// writerLease is how long a request's reservation of part numbers keeps
// other requests at its offset away without being renewed; a request
// renews it every quarter of that while it uploads. It is also how long a
// chunk's retry waits (BusyError) after the replica writing it died: short,
// because the conditional state writes, not the lease, keep a slow writer
// and its successor from mixing their parts.
const writerLease = 20 * time.Second

// reserveBlock is how many part numbers a chunk of unknown length reserves
// at a time (512 MiB of parts).
const reserveBlock = 64

// lastPart is the highest part number of parts, 0 for none.
func lastPart(parts []s3Part) int32 {
	if len(parts) == 0 {
		return 0
	}
	return parts[len(parts)-1].Number
}

// nextFree is the lowest part number no request holds in u.
func (u *s3Upload) nextFree() int32 { return max(u.NextPart, lastPart(u.Parts)+1) }

// claim is a request's reservation of part numbers in a multipart upload
// it shares with other requests (one it did not begin).
type claim struct {
	token     string
	stored    s3Upload // the state as last written or read, at its Rev
	next, end int32    // the numbers left: [next, end)
	renewed   time.Time
	active    bool
}

// reserve claims count more part numbers (0: only renews the claim) with a
// conditional write of the stored state: if another request changed the
// state since, the chunk is refused (ErrOffset) before it uploads
// anything under those numbers.
func (s *S3) reserve(ctx context.Context, id string, c *claim, count int32) error {
	res := c.stored
	base := max(res.nextFree(), c.end)
	if base+count-1 > s3MaxParts {
		return fmt.Errorf("s3: upload %s: more than %d parts of %d bytes", id, s3MaxParts, s3PartSize)
	}
	res.Writer, res.WriterSince, res.NextPart = c.token, time.Now().UTC(), base+count
	err := s.writeState(ctx, id, &res, nil, c.stored.Rev)
	if errors.Is(err, ErrStateChanged) {
		return fmt.Errorf("%w: upload %s was changed by another request", ErrOffset, id)
	}
	if err != nil {
		return err
	}
	c.stored, c.renewed, c.active = res, time.Now(), true
	if count > 0 {
		c.next, c.end = base, base+count
	}
	return nil
}

// CreateUpload implements Store.
func (s *S3) CreateUpload(ctx context.Context, id string) error {
	if !validUploadID(id) {
		return fmt.Errorf("s3: create upload: invalid id %q", id)
	}
	u := &s3Upload{}
	if err := u.setHash(sha256.New()); err != nil {
		return err
	}
	err := s.writeState(ctx, id, u, nil, "")
	if errors.Is(err, ErrStateChanged) {
		return fmt.Errorf("s3: create upload %s: it already exists: %w", id, err)
	}
	return err
}

// UploadStatus implements Store.
func (s *S3) UploadStatus(ctx context.Context, id string) (int64, time.Time, error) {
	u, err := s.readState(ctx, id)
	if err != nil {
		return 0, time.Time{}, err
	}
	return u.Size, u.Modified, nil
}

// AppendUpload implements Store. It holds at most partsInFlight+1 parts
// in memory: the pending bytes of earlier chunks followed by the chunk's
// bytes are uploaded part by part as they fill s3PartSize, and what
// remains becomes the new pending bytes. Only then is the state written; until that
// write nothing the upload's state refers to has changed, so a failure
// anywhere before it leaves the upload as it was.
func (s *S3) AppendUpload(ctx context.Context, id string, offset int64, r io.Reader, length int64) (int64, error) {
	u, err := s.readState(ctx, id)
	if err != nil {
		return 0, err
	}
	if offset != u.Size {
		return u.Size, ErrOffset
	}
	if held := time.Since(u.WriterSince); u.Writer != "" && held < writerLease {
		return u.Size, &BusyError{Offset: u.Size, RetryAfter: writerLease - held}
	}
	c := &claim{token: randomToken(), stored: *u}
	h256, err := u.hash()
	if err != nil {
		return u.Size, fmt.Errorf("s3: upload %s: %w", id, err)
	}

	var src io.Reader = readErrors{r}
	if length >= 0 {
		src = io.LimitReader(src, length)
	}
	// Full parts are uploaded while the next one fills another buffer, up
	// to partsInFlight at a time, oldest first in queue. Buffers go back
	// to the pool only once no upload reads them.
	cur := s.bufs.Get().(*[]byte)
	buf := *cur
	var queue []inflightPart
	var free []*[]byte
	drain := func() {
		for _, q := range queue {
			<-q.ch
			free = append(free, q.buf)
		}
		queue = nil
	}
	defer func() {
		drain()
		s.bufs.Put(cur)
		for _, b := range free {
			s.bufs.Put(b)
		}
	}()

	next := *u // the state after this chunk
	next.Parts = append([]s3Part(nil), u.Parts...)
	pendingSize := u.pendingSize()
	if pendingSize < 0 || pendingSize >= int64(len(buf)) {
		return u.Size, fmt.Errorf("s3: upload %s: corrupt state: %d pending bytes", id, pendingSize)
	}
	fill := int(pendingSize) // bytes in buf; the first pendingSize are fetched lazily
	pendingFetched := pendingSize == 0
	createdMultipart := "" // a multipart upload begun by this chunk
	fail := func(err error) (int64, error) {
		drain() // let the parts in flight end before aborting what they write to
		if createdMultipart != "" {
			cleanup(ctx, func(ctx context.Context) error { return s.abortMultipart(ctx, s.dataKey(id), createdMultipart) })
		}
		if c.active && !errors.Is(err, ErrOffset) {
			// Let the client's retry in at once: the claim goes, the
			// numbers it took stay taken (parts under them are left out
			// of the commit, and go with the multipart upload).
			cleanup(ctx, func(ctx context.Context) error {
				res := c.stored
				res.Writer, res.WriterSince = "", time.Time{}
				return s.writeState(ctx, id, &res, nil, c.stored.Rev)
			})
		}
		var re *ReadError
		if errors.As(err, &re) || errors.Is(err, ErrChunkLength) || errors.Is(err, ErrOffset) {
			return u.Size, err
		}
		// A storage error may come from a concurrent request that moved
		// the upload on (deleting the pending object this one read) or
		// removed it: say so rather than fail with a storage error.
		cur, rerr := s.readState(ctx, id)
		if errors.Is(rerr, ErrUploadNotFound) {
			return 0, fmt.Errorf("%w (removed during the chunk: %v)", ErrUploadNotFound, err)
		}
		if rerr == nil && cur.Rev != c.stored.Rev {
			return cur.Size, fmt.Errorf("%w: upload %s was changed by another request", ErrOffset, id)
		}
		return u.Size, err
	}

	var n int64 // bytes read from r
	for {
		k, rerr := fillBuffer(src, buf[fill:])
		h256.Write(buf[fill : fill+k])
		n += int64(k)
		if rerr != nil && rerr != io.EOF {
			return fail(rerr) // a *ReadError
		}
		if k > 0 && !pendingFetched {
			if err := s.readPending(ctx, id, u.Rev, buf[:pendingSize]); err != nil {
				return fail(err)
			}
			pendingFetched = true
		}
		fill += k
		if fill < len(buf) {
			break // end of the chunk
		}
		// A full part.
		if next.MultipartID == "" {
			mid, err := s.createMultipart(ctx, id)
			if err != nil {
				return fail(err)
			}
			next.MultipartID, createdMultipart = mid, mid
		}
		if len(queue) == partsInFlight { // a buffer is free again
			if err := collect(&queue, &free, &next); err != nil {
				return fail(err)
			}
		}
		number := lastPart(next.Parts) + 1 + int32(len(queue)) // in a multipart upload of its own
		if createdMultipart == "" {
			// Shared with other requests: numbers reserved first.
			switch {
			case c.next == c.end:
				count := int32(reserveBlock)
				if length >= 0 {
					count = int32(max(1, (pendingSize+length)/int64(len(buf))-int64(len(next.Parts)-len(u.Parts)+len(queue))))
				}
				if err := s.reserve(ctx, id, c, count); err != nil {
					return fail(err)
				}
			case time.Since(c.renewed) > writerLease/4:
				if err := s.reserve(ctx, id, c, 0); err != nil {
					return fail(err)
				}
			}
			number = c.next
			c.next++
		}
		if number > s3MaxParts {
			return fail(fmt.Errorf("s3: upload %s: more than %d parts of %d bytes", id, s3MaxParts, s3PartSize))
		}
		queue = append(queue, inflightPart{s.uploadPartAsync(ctx, id, next.MultipartID, number, buf[:fill]), cur})
		if len(free) > 0 {
			cur, free = free[len(free)-1], free[:len(free)-1]
		} else {
			cur = s.bufs.Get().(*[]byte)
		}
		buf = *cur
		fill = 0
	}
	for len(queue) > 0 {
		if err := collect(&queue, &free, &next); err != nil {
			return fail(err)
		}
	}

	if length >= 0 {
		if n != length {
			return fail(fmt.Errorf("%w: got %d bytes, declared %d", ErrChunkLength, n, length))
		}
		if extraByte(r) {
			return fail(fmt.Errorf("%w: more than the declared %d bytes", ErrChunkLength, length))
		}
	}
	if n == 0 {
		return u.Size, nil // nothing to record
	}

	next.Size = u.Size + n
	pending := buf[:fill]
	if err := next.setHash(h256); err != nil {
		return fail(err)
	}
	next.Writer, next.WriterSince = "", time.Time{}
	next.NextPart = max(c.stored.NextPart, lastPart(next.Parts)+1)
	if err := s.writeState(ctx, id, &next, &pending, c.stored.Rev); err != nil {
		// Aborted, committed, or appended to by another request
		// (ErrStateChanged), which fail reports, or a storage error.
		return fail(err)
	}
	return next.Size, nil
}

// cleanup undoes work after a failure, best effort: with a context that a
// cancelled request does not cancel, but bounded in time. What it fails to
// undo is recovered when the session is removed.
func cleanup(ctx context.Context, undo func(ctx context.Context) error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	undo(ctx)
}

// fillBuffer reads from r until buf is full (nil error), r ends (io.EOF)
// or fails.
func fillBuffer(r io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		k, err := r.Read(buf[n:])
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// extraByte reports whether r holds more data.
func extraByte(r io.Reader) bool {
	var b [1]byte
	for i := 0; i < 3; i++ {
		k, err := r.Read(b[:])
		if k > 0 {
			return true
		}
		if err != nil {
			return false
		}
	}
	return false
}

// readPending reads the pending bytes of an upload at revision rev into
// buf, which must be their exact size.
func (s *S3) readPending(ctx context.Context, id, rev string, buf []byte) error {
	b, err := s.index.UploadPending(ctx, id, rev)
	if err != nil {
		return fmt.Errorf("s3: read pending data of upload %s: %w", id, err)
	}
	if len(b) != len(buf) {
		return fmt.Errorf("s3: upload %s: corrupt state: %d pending bytes recorded, %d kept", id, len(buf), len(b))
	}
	copy(buf, b)
	return nil
}

func (s *S3) createMultipart(ctx context.Context, id string) (string, error) {
	out, err := s.client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{
		Bucket:            &s.bucket,
		Key:               aws.String(s.dataKey(id)),
		ContentType:       aws.String("application/octet-stream"),
		ChecksumAlgorithm: types.ChecksumAlgorithmCrc32,
	})
	if err != nil {
		return "", fmt.Errorf("s3: begin multipart upload of upload %s: %w", id, err)
	}
	return aws.ToString(out.UploadId), nil
}

// partResult is the outcome of a part upload.
type partResult struct {
	part s3Part
	err  error
}

// uploadPartAsync uploads b as a part in the background; b must stay
// untouched until the result arrives.
func (s *S3) uploadPartAsync(ctx context.Context, id, multipartID string, number int32, b []byte) chan partResult {
	ch := make(chan partResult, 1)
	go func() {
		p, err := s.uploadPart(ctx, id, multipartID, number, b)
		ch <- partResult{p, err}
	}()
	return ch
}

// partsInFlight is how many parts one chunk uploads at a time: a client
// faster than S3 keeps S3 busy with two, and a chunk holds three buffers.
const partsInFlight = 2

// inflightPart is a part being uploaded and the buffer it reads.
type inflightPart struct {
	ch  chan partResult
	buf *[]byte
}

// collect waits for the oldest part in flight, frees its buffer and adds
// the part to the state.
func collect(queue *[]inflightPart, free *[]*[]byte, next *s3Upload) error {
	q := (*queue)[0]
	*queue = (*queue)[1:]
	r := <-q.ch
	*free = append(*free, q.buf)
	if r.err != nil {
		return r.err
	}
	next.Parts = append(next.Parts, r.part)
	return nil
}

func (s *S3) uploadPart(ctx context.Context, id, multipartID string, number int32, b []byte) (s3Part, error) {
	out, err := s.client.UploadPart(ctx, &s3.UploadPartInput{
		Bucket:            &s.bucket,
		Key:               aws.String(s.dataKey(id)),
		UploadId:          aws.String(multipartID),
		PartNumber:        aws.Int32(number),
		Body:              bytes.NewReader(b),
		ContentLength:     aws.Int64(int64(len(b))),
		ChecksumAlgorithm: types.ChecksumAlgorithmCrc32,
	})
	if err != nil {
		return s3Part{}, fmt.Errorf("s3: put part %d of upload %s: %w", number, id, err)
	}
	return s3Part{Number: number, ETag: aws.ToString(out.ETag), CRC32: aws.ToString(out.ChecksumCRC32), Size: int64(len(b))}, nil
}

// CommitUpload implements Store. Nothing is copied: an upload smaller
// than a part is written to the blob's address in one PUT; a larger one
// completes its multipart upload, and its object stays where it is, its
// key recorded in the index as the blob's location. A blob stored
// already (by another upload) keeps its object; this upload's goes.
func (s *S3) CommitUpload(ctx context.Context, id string, d reference.Digest) (int64, error) {
	u, err := s.readState(ctx, id)
	if err != nil {
		return 0, err
	}
	h256, err := u.hash()
	if err != nil {
		return 0, fmt.Errorf("s3: upload %s: %w", id, err)
	}
	mismatch := func(err error) (int64, error) {
		if rerr := s.removeSession(ctx, id, u); rerr != nil {
			return u.Size, rerr
		}
		return u.Size, err
	}
	switch d.Algorithm() {
	case reference.SHA256:
		if got := reference.SHA256.FromHash(h256); got != d {
			return mismatch(fmt.Errorf("%w: got %s", ErrDigestMismatch, got))
		}
	case reference.SHA512:
		// Checked by store, from the content.
	default:
		return mismatch(fmt.Errorf("%w: unsupported digest algorithm %q", ErrDigestMismatch, d.Algorithm()))
	}

	switch _, size, err := s.index.BlobLocation(ctx, d); {
	case err == nil && size == u.Size && d.Algorithm() == reference.SHA256:
		// Stored already, by another upload or an earlier attempt of
		// this commit: the content is the same.
	case err != nil && !errors.Is(err, ErrNotFound):
		return 0, fmt.Errorf("s3: look up blob %s: %w", d, err)
	default:
		if err := s.store(ctx, id, u, d); err != nil {
			if errors.Is(err, ErrDigestMismatch) {
				u.MultipartID = "" // completed, and its object deleted
				return mismatch(err)
			}
			if !isConcurrencyError(err) && !errors.Is(err, ErrUploadNotFound) && !errors.Is(err, ErrStateChanged) {
				return 0, err
			}
			// A concurrent commit of the same upload (a client retrying
			// through another replica) completed the multipart upload or
			// changed its parts: wait for its outcome.
			if stored, werr := s.awaitCommit(ctx, id, d, u.Size); werr != nil || !stored {
				return 0, cmp.Or(werr, err)
			}
			// The multipart upload is left to abort: a part this commit
			// sent after the other completed it may have begun it
			// again (versitygw), where S3 answers NoSuchUpload.
		} else {
			u.MultipartID = "" // completed: nothing to abort
		}
	}
	if err := s.removeSession(ctx, id, u); err != nil {
		return 0, fmt.Errorf("s3: blob %s stored, but: %w", d, err)
	}
	return u.Size, nil
}

// awaitCommit waits a few seconds for a concurrent commit of upload id to
// store d, and reports whether it did. It returns ErrUploadNotFound when
// the session was removed without storing d.
func (s *S3) awaitCommit(ctx context.Context, id string, d reference.Digest, size int64) (bool, error) {
	deadline := time.Now().Add(5 * time.Second)
	for delay := 50 * time.Millisecond; ; delay = min(2*delay, time.Second) {
		if _, n, err := s.index.BlobLocation(ctx, d); err == nil && n == size {
			return true, nil
		}
		if _, err := s.readState(ctx, id); errors.Is(err, ErrUploadNotFound) {
			if _, n, err := s.index.BlobLocation(ctx, d); err == nil && n == size {
				return true, nil
			}
			return false, ErrUploadNotFound
		}
		if time.Now().Add(delay).After(deadline) {
			return false, nil
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(delay):
		}
	}
}

// store writes the verified content of an upload as blob d and records
// its location.
func (s *S3) store(ctx context.Context, id string, u *s3Upload, d reference.Digest) error {
	key := s.blobKey(d)
	if len(u.Parts) == 0 {
		b := []byte(nil)
		if u.Size > 0 {
			var err error
			if b, err = s.index.UploadPending(ctx, id, u.Rev); err != nil {
				return fmt.Errorf("s3: read pending data of upload %s: %w", id, err)
			}
			if int64(len(b)) != u.Size {
				return fmt.Errorf("s3: upload %s: corrupt state: %d bytes recorded, %d kept", id, u.Size, len(b))
			}
		}
		if d.Algorithm() != reference.SHA256 {
			if got := d.Algorithm().FromBytes(b); got != d {
				return fmt.Errorf("%w: got %s", ErrDigestMismatch, got)
			}
		}
		if err := s.putObject(ctx, key, b); err != nil {
			return fmt.Errorf("s3: store blob %s: %w", d, err)
		}
	} else {
		key = s.dataKey(id)
		if err := s.completeMultipart(ctx, id, u); err != nil {
			return err
		}
		if d.Algorithm() != reference.SHA256 {
			if err := s.verifyObject(ctx, key, d, u.Size); err != nil {
				if errors.Is(err, ErrDigestMismatch) {
					cleanup(ctx, func(ctx context.Context) error { return s.deleteObject(ctx, key) })
				}
				return err
			}
		}
	}
	rel := strings.TrimPrefix(key, s.prefix)
	recorded, err := s.index.AddBlobLocation(ctx, d, rel, u.Size)
	if err != nil {
		return fmt.Errorf("s3: record location of blob %s: %w", d, err)
	}
	if recorded != rel && key != s.blobKey(d) {
		// Stored meanwhile by another upload: one object is enough.
		cleanup(ctx, func(ctx context.Context) error { return s.deleteObject(ctx, key) })
	}
	return nil
}

// verifyObject reads the object at key and checks that it hashes to d.
func (s *S3) verifyObject(ctx context.Context, key string, d reference.Digest, size int64) error {
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.bucket, Key: aws.String(key)})
	if err != nil {
		return fmt.Errorf("s3: read %s to check its %s digest: %w", key, d.Algorithm(), err)
	}
	defer out.Body.Close()
	h := d.Algorithm().New()
	bp := s.bufs.Get().(*[]byte)
	defer s.bufs.Put(bp)
	n, err := io.CopyBuffer(h, out.Body, *bp)
	if err != nil || n != size {
		return fmt.Errorf("s3: read %s to check its %s digest: %d of %d bytes: %v", key, d.Algorithm(), n, size, err)
	}
	if got := d.Algorithm().FromHash(h); got != d {
		return fmt.Errorf("%w: got %s", ErrDigestMismatch, got)
	}
	return nil
}

// completeMultipart uploads the pending data as the last part and
// completes the multipart upload at the data key. When a concurrent
// commit of the same upload (a client retrying through another replica)
// completed it first, it succeeds too.
func (s *S3) completeMultipart(ctx context.Context, id string, u *s3Upload) error {
	parts := append([]s3Part(nil), u.Parts...)
	if pendingSize := u.pendingSize(); pendingSize > 0 {
		bp := s.bufs.Get().(*[]byte)
		defer s.bufs.Put(bp)
		b := (*bp)[:pendingSize]
		if err := s.readPending(ctx, id, u.Rev, b); err != nil {
			return err
		}
		// After every number a request ever reserved: a part under one
		// of those may be on its way still.
		number := max(lastPart(parts)+1, u.NextPart)
		if number > s3MaxParts {
			return fmt.Errorf("s3: upload %s: more than %d parts of %d bytes", id, s3MaxParts, s3PartSize)
		}
		part, err := s.uploadPart(ctx, id, u.MultipartID, number, b)
		if err != nil {
			if s.completedAlready(ctx, id, u, err) {
				return nil
			}
			return err
		}
		parts = append(parts, part)
	}
	completed := make([]types.CompletedPart, len(parts))
	for i, p := range parts {
		completed[i] = types.CompletedPart{PartNumber: aws.Int32(p.Number), ETag: aws.String(p.ETag)}
		if p.CRC32 != "" {
			completed[i].ChecksumCRC32 = aws.String(p.CRC32)
		}
	}
	_, err := s.client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket:          &s.bucket,
		Key:             aws.String(s.dataKey(id)),
		UploadId:        aws.String(u.MultipartID),
		MultipartUpload: &types.CompletedMultipartUpload{Parts: completed},
	})
	if err == nil || s.completedAlready(ctx, id, u, err) {
		return nil
	}
	return fmt.Errorf("s3: complete multipart upload of upload %s: %w", id, err)
}

// completedAlready reports whether err, from completing upload id, comes
// from an earlier or concurrent commit that completed it: the multipart
// upload is gone and the data object has the upload's size.
func (s *S3) completedAlready(ctx context.Context, id string, u *s3Upload, err error) bool {
	if !isNoSuchUpload(err) {
		return false
	}
	out, herr := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &s.bucket, Key: aws.String(s.dataKey(id))})
	return herr == nil && aws.ToInt64(out.ContentLength) == u.Size
}

func (s *S3) putObject(ctx context.Context, key string, b []byte) error {
	_, err := s.client.PutObject(ctx, &s3.PutObjectInput{
		Bucket:        &s.bucket,
		Key:           aws.String(key),
		Body:          bytes.NewReader(b),
		ContentLength: aws.Int64(int64(len(b))),
		ContentType:   aws.String("application/octet-stream"),
	})
	return err
}

// deleteObject deletes an object, reporting only unexpected errors.
func (s *S3) deleteObject(ctx context.Context, key string) error {
	_, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &s.bucket, Key: aws.String(key)})
	if err != nil && !isNotFound(err) {
		return err
	}
	return nil
}

func (s *S3) abortMultipart(ctx context.Context, key, multipartID string) error {
	_, err := s.client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{
		Bucket: &s.bucket, Key: aws.String(key), UploadId: aws.String(multipartID),
	})
	if err != nil && !isNoSuchUpload(err) {
		return err
	}
	return nil
}

// AbortUpload implements Store. Aborting an unknown upload is no error;
// it aborts whatever multipart upload is left at the upload's data key
// (begun by a chunk whose process died before recording it).
func (s *S3) AbortUpload(ctx context.Context, id string) error {
	u, err := s.readState(ctx, id)
	if errors.Is(err, ErrUploadNotFound) {
		if !validUploadID(id) {
			return nil
		}
		return s.abortStrays(ctx, id)
	} else if err != nil {
		return err
	}
	if err := s.abortStrays(ctx, id); err != nil {
		return err
	}
	return s.removeSession(ctx, id, u)
}

// removeSession aborts an upload's recorded multipart upload, if any, and
// removes its state (with its pending bytes). It costs no S3 request for
// an upload without a multipart upload.
func (s *S3) removeSession(ctx context.Context, id string, u *s3Upload) error {
	if u != nil && u.MultipartID != "" {
		if err := s.abortMultipart(ctx, s.dataKey(id), u.MultipartID); err != nil {
			return fmt.Errorf("s3: abort multipart upload of upload %s: %w", id, err)
		}
	}
	if err := s.index.DeleteUploadState(ctx, id, ""); err != nil {
		return fmt.Errorf("s3: delete state of upload %s: %w", id, err)
	}
	return nil
}

// abortStrays aborts the multipart uploads at upload id's data key: those
// begun by a chunk that failed before recording them.
func (s *S3) abortStrays(ctx context.Context, id string) error {
	mpus, err := s.client.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{
		Bucket: &s.bucket, Prefix: aws.String(s.dataKey(id)),
	})
	if err != nil {
		return fmt.Errorf("s3: list multipart uploads of upload %s: %w", id, err)
	}
	for _, m := range mpus.Uploads {
		if aws.ToString(m.Key) != s.dataKey(id) {
			continue
		}
		if err := s.abortMultipart(ctx, s.dataKey(id), aws.ToString(m.UploadId)); err != nil {
			return fmt.Errorf("s3: abort multipart upload of upload %s: %w", id, err)
		}
	}
	return nil
}

// StaleUploads implements Store.
func (s *S3) StaleUploads(ctx context.Context, before time.Time) ([]string, error) {
	ids, err := s.index.StaleUploadStates(ctx, before)
	if err != nil {
		return nil, fmt.Errorf("s3: list stale uploads: %w", err)
	}
	return ids, nil
}
