package blobstore

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"encoding"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/url"
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
	// Pending names the object within the session's directory that holds
	// the bytes after the parts (fewer than a part); empty when there are
	// none.
	Pending string `json:"pending,omitempty"`
	// SHA256 and SHA512 are the marshalled states of both hashes of all
	// Size bytes.
	SHA256 []byte `json:"sha256"`
	SHA512 []byte `json:"sha512"`
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
	// Rev is random and new at each write: it tells a write of ours that
	// succeeded although its answer was lost from a concurrent one.
	Rev string `json:"rev"`
}

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

// hashes restores the upload's hash states.
func (u *s3Upload) hashes() (h256, h512 hash.Hash, err error) {
	h256, h512 = sha256.New(), sha512.New()
	if err := h256.(encoding.BinaryUnmarshaler).UnmarshalBinary(u.SHA256); err != nil {
		return nil, nil, fmt.Errorf("restore sha256 state: %w", err)
	}
	if err := h512.(encoding.BinaryUnmarshaler).UnmarshalBinary(u.SHA512); err != nil {
		return nil, nil, fmt.Errorf("restore sha512 state: %w", err)
	}
	return h256, h512, nil
}

// setHashes records the hash states in the upload.
func (u *s3Upload) setHashes(h256, h512 hash.Hash) error {
	var err error
	if u.SHA256, err = h256.(encoding.BinaryMarshaler).MarshalBinary(); err != nil {
		return fmt.Errorf("save sha256 state: %w", err)
	}
	if u.SHA512, err = h512.(encoding.BinaryMarshaler).MarshalBinary(); err != nil {
		return fmt.Errorf("save sha512 state: %w", err)
	}
	return nil
}

func randomToken() string {
	b := make([]byte, 12)
	rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}

// readState returns an upload's state and the state object's ETag, or
// ErrUploadNotFound.
func (s *S3) readState(ctx context.Context, id string) (*s3Upload, string, error) {
	if !validUploadID(id) {
		return nil, "", ErrUploadNotFound
	}
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.bucket, Key: aws.String(s.stateKey(id))})
	if isNotFound(err) {
		return nil, "", ErrUploadNotFound
	}
	if err != nil {
		return nil, "", fmt.Errorf("s3: read state of upload %s: %w", id, err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(io.LimitReader(out.Body, 16<<20))
	if err != nil {
		return nil, "", fmt.Errorf("s3: read state of upload %s: %w", id, err)
	}
	var u s3Upload
	if err := json.Unmarshal(b, &u); err != nil {
		return nil, "", fmt.Errorf("s3: decode state of upload %s: %w", id, err)
	}
	return &u, aws.ToString(out.ETag), nil
}

// errStateChanged means the state object was changed or removed by
// someone else since it was read.
var errStateChanged = errors.New("upload state changed concurrently")

// writeState writes an upload's state: only if the state object still has
// the ETag ifMatch, or, when ifMatch is empty, only if there is none yet.
// It sets u.Rev and u.Modified.
func (s *S3) writeState(ctx context.Context, id string, u *s3Upload, ifMatch string) error {
	_, err := s.writeStateTag(ctx, id, u, ifMatch)
	return err
}

// writeStateTag is writeState returning the state object's new ETag.
func (s *S3) writeStateTag(ctx context.Context, id string, u *s3Upload, ifMatch string) (string, error) {
	u.Rev = randomToken()
	u.Modified = time.Now().UTC()
	b, err := json.Marshal(u)
	if err != nil {
		return "", fmt.Errorf("s3: encode state of upload %s: %w", id, err)
	}
	in := &s3.PutObjectInput{
		Bucket:        &s.bucket,
		Key:           aws.String(s.stateKey(id)),
		Body:          bytes.NewReader(b),
		ContentLength: aws.Int64(int64(len(b))),
		ContentType:   aws.String("application/json"),
	}
	if ifMatch != "" {
		in.IfMatch = aws.String(ifMatch)
	} else {
		in.IfNoneMatch = aws.String("*")
	}
	out, err := s.client.PutObject(ctx, in)
	if err == nil {
		return aws.ToString(out.ETag), nil
	}
	// A request that failed may have been written all the same, its
	// answer lost; its retry then fails the precondition. The state's
	// revision tells.
	if cur, etag, rerr := s.readState(ctx, id); rerr == nil && cur.Rev == u.Rev {
		return etag, nil
	}
	if isPreconditionFailed(err) || (ifMatch != "" && isNotFound(err)) {
		return "", fmt.Errorf("s3: write state of upload %s: %w (%v)", id, errStateChanged, err)
	}
	return "", fmt.Errorf("s3: write state of upload %s: %w", id, err)
}

// writerLease is how long a request's reservation of part numbers keeps
// other requests at its offset away without being renewed; a request
// renews it every quarter of that while it uploads.
const writerLease = time.Minute

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
	stored    s3Upload // the state as last written or read
	etag      string   // its ETag
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
	etag, err := s.writeStateTag(ctx, id, &res, c.etag)
	if errors.Is(err, errStateChanged) {
		return fmt.Errorf("%w: upload %s was changed by another request", ErrOffset, id)
	}
	if err != nil {
		return err
	}
	c.stored, c.etag, c.renewed, c.active = res, etag, time.Now(), true
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
	if err := u.setHashes(sha256.New(), sha512.New()); err != nil {
		return err
	}
	err := s.writeState(ctx, id, u, "")
	if errors.Is(err, errStateChanged) {
		return fmt.Errorf("s3: create upload %s: it already exists: %w", id, err)
	}
	return err
}

// UploadStatus implements Store.
func (s *S3) UploadStatus(ctx context.Context, id string) (int64, time.Time, error) {
	u, _, err := s.readState(ctx, id)
	if err != nil {
		return 0, time.Time{}, err
	}
	return u.Size, u.Modified, nil
}

// AppendUpload implements Store. It buffers at most one part in memory:
// the pending bytes of earlier chunks followed by the chunk's bytes are
// uploaded part by part as they fill s3PartSize, and what remains becomes
// the new pending object. Only then is the state written; until that
// write nothing the upload's state refers to has changed, so a failure
// anywhere before it leaves the upload as it was.
func (s *S3) AppendUpload(ctx context.Context, id string, offset int64, r io.Reader, length int64) (int64, error) {
	u, etag, err := s.readState(ctx, id)
	if err != nil {
		return 0, err
	}
	if offset != u.Size {
		return u.Size, ErrOffset
	}
	if u.Writer != "" && time.Since(u.WriterSince) < writerLease {
		return u.Size, fmt.Errorf("%w: another request is writing at offset %d of upload %s", ErrOffset, u.Size, id)
	}
	c := &claim{token: randomToken(), stored: *u, etag: etag}
	h256, h512, err := u.hashes()
	if err != nil {
		return u.Size, fmt.Errorf("s3: upload %s: %w", id, err)
	}

	var src io.Reader = readErrors{r}
	if length >= 0 {
		src = io.LimitReader(src, length)
	}
	bp := s.bufs.Get().(*[]byte)
	defer s.bufs.Put(bp)
	buf := *bp
	// A full part is uploaded while the next one fills a second buffer;
	// inflight is its result. Buffers go back to the pool only once no
	// upload reads them (this defer runs before the Puts).
	var spare *[]byte
	var inflight chan partResult
	defer func() {
		if inflight != nil {
			<-inflight
		}
		if spare != nil {
			s.bufs.Put(spare)
		}
	}()
	other := []byte(nil) // the second buffer, once taken

	next := *u // the state after this chunk
	next.Parts = append([]s3Part(nil), u.Parts...)
	pendingSize := u.Size - u.partsSize()
	if pendingSize < 0 || pendingSize >= int64(len(buf)) {
		return u.Size, fmt.Errorf("s3: upload %s: corrupt state: %d pending bytes", id, pendingSize)
	}
	fill := int(pendingSize) // bytes in buf; the first pendingSize are fetched lazily
	pendingFetched := u.Pending == ""
	createdMultipart := "" // a multipart upload begun by this chunk
	fail := func(err error) (int64, error) {
		if inflight != nil { // let the part in flight end before aborting what it writes to
			<-inflight
			inflight = nil
		}
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
				return s.writeState(ctx, id, &res, c.etag)
			})
		}
		var re *ReadError
		if errors.As(err, &re) || errors.Is(err, ErrChunkLength) || errors.Is(err, ErrOffset) {
			return u.Size, err
		}
		// A storage error may come from a concurrent request that moved
		// the upload on (deleting the pending object this one read) or
		// removed it: say so rather than fail with a storage error.
		cur, _, rerr := s.readState(ctx, id)
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
		h512.Write(buf[fill : fill+k])
		n += int64(k)
		if rerr != nil && rerr != io.EOF {
			return fail(rerr) // a *ReadError
		}
		if k > 0 && !pendingFetched {
			if err := s.readPending(ctx, id, u.Pending, buf[:pendingSize]); err != nil {
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
		if err := collect(&inflight, &next); err != nil { // the other buffer is free again
			return fail(err)
		}
		number := lastPart(next.Parts) + 1 // in a multipart upload of its own
		if createdMultipart == "" {
			// Shared with other requests: numbers reserved first.
			switch {
			case c.next == c.end:
				count := int32(reserveBlock)
				if length >= 0 {
					count = int32(max(1, (pendingSize+length)/int64(len(buf))-int64(len(next.Parts)-len(u.Parts))))
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
		inflight = s.uploadPartAsync(ctx, id, next.MultipartID, number, buf[:fill])
		if spare == nil {
			spare = s.bufs.Get().(*[]byte)
			other = *spare
		}
		buf, other = other, buf
		fill = 0
	}
	if err := collect(&inflight, &next); err != nil {
		return fail(err)
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
	next.Pending = ""
	if fill > 0 {
		next.Pending = "pending-" + randomToken()
		if err := s.putObject(ctx, s.uploadDir(id)+next.Pending, buf[:fill]); err != nil {
			return fail(fmt.Errorf("s3: put pending data of upload %s: %w", id, err))
		}
	}
	if err := next.setHashes(h256, h512); err != nil {
		return fail(err)
	}
	next.Writer, next.WriterSince = "", time.Time{}
	next.NextPart = max(c.stored.NextPart, lastPart(next.Parts)+1)
	if err := s.writeState(ctx, id, &next, c.etag); err != nil {
		// Aborted, committed, or appended to by another request
		// (errStateChanged), which fail reports, or a storage error.
		if next.Pending != "" {
			cleanup(ctx, func(ctx context.Context) error { return s.deleteObject(ctx, s.uploadDir(id)+next.Pending) })
		}
		return fail(err)
	}
	if u.Pending != "" {
		// Merged into a part or into the new pending object. Left over
		// if this fails, it goes with the session.
		s.deleteObject(ctx, s.uploadDir(id)+u.Pending)
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

// readPending reads an upload's pending object into buf, which must be its
// exact size.
func (s *S3) readPending(ctx context.Context, id, name string, buf []byte) error {
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.bucket, Key: aws.String(s.uploadDir(id) + name)})
	if err != nil {
		return fmt.Errorf("s3: read pending data of upload %s: %w", id, err)
	}
	defer out.Body.Close()
	if _, err := io.ReadFull(out.Body, buf); err != nil {
		return fmt.Errorf("s3: read pending data of upload %s: %w", id, err)
	}
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

// collect waits for the part in flight, if any, and adds it to the state.
func collect(inflight *chan partResult, next *s3Upload) error {
	if *inflight == nil {
		return nil
	}
	r := <-*inflight
	*inflight = nil
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

// CommitUpload implements Store.
func (s *S3) CommitUpload(ctx context.Context, id string, d reference.Digest) (int64, error) {
	u, _, err := s.readState(ctx, id)
	if err != nil {
		return 0, err
	}
	h256, h512, err := u.hashes()
	if err != nil {
		return 0, fmt.Errorf("s3: upload %s: %w", id, err)
	}
	var got reference.Digest
	switch d.Algorithm() {
	case reference.SHA256:
		got = reference.SHA256.FromHash(h256)
	case reference.SHA512:
		got = reference.SHA512.FromHash(h512)
	default:
		if err := s.removeSession(ctx, id, u); err != nil {
			return u.Size, err
		}
		return u.Size, fmt.Errorf("%w: unsupported digest algorithm %q", ErrDigestMismatch, d.Algorithm())
	}
	if got != d {
		if err := s.removeSession(ctx, id, u); err != nil {
			return u.Size, err
		}
		return u.Size, fmt.Errorf("%w: got %s", ErrDigestMismatch, got)
	}

	size, err := s.Stat(ctx, d)
	switch {
	case err == nil && size == u.Size:
		// Already stored, by another upload or an earlier attempt of
		// this commit: the content is the same.
	case err != nil && !errors.Is(err, ErrNotFound):
		return 0, err
	default:
		if err := s.store(ctx, id, u, d); err != nil {
			if !isConcurrencyError(err) {
				return 0, err
			}
			// A concurrent commit of the same upload (a client retrying
			// through another replica) completed the multipart upload or
			// removed what this one was copying: wait for its outcome.
			stored, werr := s.awaitCommit(ctx, id, d, u.Size)
			if werr != nil {
				return 0, werr
			}
			if !stored {
				return 0, err
			}
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
		if n, err := s.Stat(ctx, d); err == nil && n == size {
			return true, nil
		}
		if _, _, err := s.readState(ctx, id); errors.Is(err, ErrUploadNotFound) {
			if n, err := s.Stat(ctx, d); err == nil && n == size {
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

// store puts the verified content of an upload at the address of d.
func (s *S3) store(ctx context.Context, id string, u *s3Upload, d reference.Digest) error {
	key := s.blobKey(d)
	switch {
	case len(u.Parts) == 0 && u.Pending == "":
		if err := s.putObject(ctx, key, nil); err != nil {
			return fmt.Errorf("s3: store empty blob %s: %w", d, err)
		}
		return nil
	case len(u.Parts) == 0:
		if err := s.copyObject(ctx, s.uploadDir(id)+u.Pending, key); err != nil {
			return fmt.Errorf("s3: commit upload %s as %s: %w", id, d, err)
		}
		return nil
	}
	if err := s.completeMultipart(ctx, id, u); err != nil {
		return err
	}
	var err error
	if u.Size <= s.maxCopySize {
		err = s.copyObject(ctx, s.dataKey(id), key)
	} else {
		err = s.copyMultipart(ctx, s.dataKey(id), key, u.Size)
	}
	if err != nil {
		return fmt.Errorf("s3: commit upload %s as %s: %w", id, d, err)
	}
	return nil
}

// completeMultipart uploads the pending data as the last part and
// completes the multipart upload at the data key.
func (s *S3) completeMultipart(ctx context.Context, id string, u *s3Upload) error {
	parts := append([]s3Part(nil), u.Parts...)
	if u.Pending != "" {
		pendingSize := u.Size - u.partsSize()
		bp := s.bufs.Get().(*[]byte)
		defer s.bufs.Put(bp)
		b := (*bp)[:pendingSize]
		if err := s.readPending(ctx, id, u.Pending, b); err != nil {
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
	if err == nil {
		return nil
	}
	if isNoSuchUpload(err) {
		// An earlier attempt of this commit may have completed it.
		out, herr := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &s.bucket, Key: aws.String(s.dataKey(id))})
		if herr == nil && aws.ToInt64(out.ContentLength) == u.Size {
			return nil
		}
	}
	return fmt.Errorf("s3: complete multipart upload of upload %s: %w", id, err)
}

// copySource is the x-amz-copy-source of a key of the bucket.
func (s *S3) copySource(key string) string {
	return (&url.URL{Path: s.bucket + "/" + key}).EscapedPath()
}

func (s *S3) copyObject(ctx context.Context, from, to string) error {
	_, err := s.client.CopyObject(ctx, &s3.CopyObjectInput{
		Bucket:     &s.bucket,
		Key:        aws.String(to),
		CopySource: aws.String(s.copySource(from)),
	})
	return err
}

// copyMultipart copies an object too large for CopyObject with a multipart
// upload of UploadPartCopy parts; it appears at its key on completion.
func (s *S3) copyMultipart(ctx context.Context, from, to string, size int64) error {
	out, err := s.client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{
		Bucket: &s.bucket, Key: aws.String(to), ContentType: aws.String("application/octet-stream"),
	})
	if err != nil {
		return fmt.Errorf("begin multipart copy: %w", err)
	}
	mid := aws.ToString(out.UploadId)
	var parts []types.CompletedPart
	for off, n := int64(0), int32(1); off < size; off, n = off+s.copyPartSize, n+1 {
		end := min(off+s.copyPartSize, size) - 1
		pc, err := s.client.UploadPartCopy(ctx, &s3.UploadPartCopyInput{
			Bucket:          &s.bucket,
			Key:             aws.String(to),
			UploadId:        aws.String(mid),
			PartNumber:      aws.Int32(n),
			CopySource:      aws.String(s.copySource(from)),
			CopySourceRange: aws.String(fmt.Sprintf("bytes=%d-%d", off, end)),
		})
		if err != nil {
			cleanup(ctx, func(ctx context.Context) error { return s.abortMultipart(ctx, to, mid) })
			return fmt.Errorf("copy part %d: %w", n, err)
		}
		parts = append(parts, types.CompletedPart{PartNumber: aws.Int32(n), ETag: pc.CopyPartResult.ETag})
	}
	_, err = s.client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket:          &s.bucket,
		Key:             aws.String(to),
		UploadId:        aws.String(mid),
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
	})
	if err != nil {
		cleanup(ctx, func(ctx context.Context) error { return s.abortMultipart(ctx, to, mid) })
		return fmt.Errorf("complete multipart copy: %w", err)
	}
	return nil
}

// AbortUpload implements Store. Aborting an unknown upload is no error; it
// removes whatever objects are left under the id.
func (s *S3) AbortUpload(ctx context.Context, id string) error {
	u, _, err := s.readState(ctx, id)
	if errors.Is(err, ErrUploadNotFound) {
		if !validUploadID(id) {
			return nil
		}
		u = nil
	} else if err != nil {
		return err
	}
	return s.removeSession(ctx, id, u)
}

// removeSession aborts an upload's multipart uploads and deletes its
// objects, the state last: until everything else is gone the session
// still shows in StaleUploads, so that a failed removal is retried.
func (s *S3) removeSession(ctx context.Context, id string, u *s3Upload) error {
	if u != nil && u.MultipartID != "" {
		if err := s.abortMultipart(ctx, s.dataKey(id), u.MultipartID); err != nil {
			return fmt.Errorf("s3: abort multipart upload of upload %s: %w", id, err)
		}
	}
	// Multipart uploads begun by a chunk that never recorded them.
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
	keys, err := s.listKeys(ctx, s.uploadDir(id))
	if err != nil {
		return fmt.Errorf("s3: list objects of upload %s: %w", id, err)
	}
	state := s.stateKey(id)
	for _, k := range keys {
		if k == state {
			continue
		}
		if err := s.deleteObject(ctx, k); err != nil {
			return fmt.Errorf("s3: delete %s of upload %s: %w", strings.TrimPrefix(k, s.uploadDir(id)), id, err)
		}
	}
	if err := s.deleteObject(ctx, state); err != nil {
		return fmt.Errorf("s3: delete state of upload %s: %w", id, err)
	}
	return nil
}

// listKeys lists the keys under a prefix.
func (s *S3) listKeys(ctx context.Context, prefix string) ([]string, error) {
	var keys []string
	p := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{Bucket: &s.bucket, Prefix: aws.String(prefix)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, err
		}
		for _, o := range page.Contents {
			keys = append(keys, aws.ToString(o.Key))
		}
	}
	return keys, nil
}

// StaleUploads implements Store. It goes by the state objects' modification
// times in the listing, which S3 gives to the second; only for a state
// written within a second of before is the state read for its exact time.
func (s *S3) StaleUploads(ctx context.Context, before time.Time) ([]string, error) {
	prefix := s.uploadsPrefix()
	var ids []string
	p := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{Bucket: &s.bucket, Prefix: aws.String(prefix)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("s3: list uploads: %w", err)
		}
		for _, o := range page.Contents {
			id, ok := strings.CutSuffix(strings.TrimPrefix(aws.ToString(o.Key), prefix), "/state")
			if !ok || !validUploadID(id) {
				continue
			}
			lm := aws.ToTime(o.LastModified)
			switch {
			case !lm.Add(time.Second).After(before):
				ids = append(ids, id)
			case !lm.Before(before):
				// Written at or after the cut-off.
			default:
				u, _, err := s.readState(ctx, id)
				if errors.Is(err, ErrUploadNotFound) {
					continue
				}
				if err != nil {
					return nil, err
				}
				if u.Modified.Before(before) {
					ids = append(ids, id)
				}
			}
		}
	}
	return ids, nil
}
