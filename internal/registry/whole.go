package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/berth-registry/berth/internal/blobstore"
	"github.com/berth-registry/berth/internal/errcode"
	"github.com/berth-registry/berth/internal/reference"
)

// A blob sent whole in one request (a monolithic POST, or a PUT that
// brings all of an empty upload) goes to a store that is a
// blobstore.Putter in one step: the body is read into memory (at most the
// store's PutLimit, one S3 part), and then, under the digest's lock,
// stored and linked. On S3 that is one PutObject and no upload state
// written or read back, where the general path keeps the bytes in the
// session's state first (see docs/scaling.md).

// smallBody is the size up to which a whole body gets a buffer of its own;
// larger ones share pooled buffers of the store's limit.
const smallBody = 64 << 10

var wholeBufs sync.Pool // *[]byte of a Putter's PutLimit, and a byte more

// wholeBudget is the most memory whole bodies may hold at once (eight
// parts' worth). A body that would go over it takes the general path,
// which streams through an upload session (and a monolithic upload then
// counts against the namespace's open sessions, as before).
const wholeBudget = 64 << 20

// putter returns the blob store's Putter when chunk c, the first of an
// upload, can go to it whole, with the memory it may hold reserved until
// release.
func (s *Service) putter(c Chunk) (p blobstore.Putter, release func(), ok bool) {
	p, ok = s.blobs.(blobstore.Putter)
	if !ok || p.PutLimit() <= 0 || c.Length < 0 || c.Length > p.PutLimit() || c.Start > 0 {
		return nil, nil, false
	}
	n := c.Length
	if n > smallBody {
		n = p.PutLimit() // a pooled buffer of the limit
	}
	if s.wholeBytes.Add(n) > wholeBudget {
		s.wholeBytes.Add(-n)
		return nil, nil, false
	}
	return p, func() { s.wholeBytes.Add(-n) }, true
}

// putWhole stores chunk c, a whole blob claimed to be d, through the
// store's Putter and links it into repo; id is the empty upload it
// finishes, "" for a monolithic upload without one. ok is false, with
// nothing done, when c cannot go whole (see putter): the general path
// takes it.
func (s *Service) putWhole(ctx context.Context, repo, id string, d reference.Digest, c Chunk) (size int64, ok bool, err error) {
	p, release, ok := s.putter(c)
	if !ok {
		return 0, false, nil
	}
	defer release()
	size, err = s.storeWhole(ctx, repo, id, d, p, c)
	return size, true, err
}

// storeWhole is putWhole once c may go whole through p.
func (s *Service) storeWhole(ctx context.Context, repo, id string, d reference.Digest, p blobstore.Putter, c Chunk) (int64, error) {
	if err := s.checkQuota(ctx, repo, d, c.Length); err != nil {
		if id != "" { // refused before the data is kept: the upload goes
			_ = s.CancelUpload(context.WithoutCancel(ctx), repo, id)
		}
		return 0, err
	}
	b, release, err := readWhole(c, p.PutLimit())
	if err != nil {
		return 0, err
	}
	defer release()
	unlock, err := s.locks.Lock(ctx, string(d))
	if err != nil {
		return 0, internal(err, "upload commit")
	}
	defer unlock()
	if id == "" {
		err = p.PutBlob(ctx, d, b)
	} else {
		err = p.PutUpload(ctx, id, d, b)
	}
	if errors.Is(err, blobstore.ErrOffset) {
		return 0, errcode.WithStatus(errcode.BlobUploadInvalid, http416, "%v", err)
	}
	if err != nil {
		return 0, s.commitError(ctx, id, d, err)
	}
	if err := s.meta.LinkBlob(ctx, repo, d, int64(len(b)), id); err != nil {
		return 0, internal(err, "blob link")
	}
	return int64(len(b)), nil
}

// commitError turns a blob store's failure to commit upload id (or a
// whole blob, id "") as d into the registry's error, ending the session
// when the store has.
func (s *Service) commitError(ctx context.Context, id string, d reference.Digest, err error) error {
	switch {
	case errors.Is(err, blobstore.ErrDigestMismatch):
		if id != "" {
			_ = s.meta.DeleteUpload(ctx, id)
		}
		return errcode.New(errcode.DigestInvalid, "provided digest did not match uploaded content").WithDetail(map[string]string{"digest": string(d)})
	case errors.Is(err, blobstore.ErrUploadNotFound):
		_ = s.meta.DeleteUpload(ctx, id)
		return errUploadUnknown
	}
	return internal(err, "upload commit")
}

// readWhole reads chunk c, of known length up to limit, into memory;
// release gives the buffer back. One byte more than declared is asked
// for, to tell a body that is too long.
func readWhole(c Chunk, limit int64) (b []byte, release func(), err error) {
	release = func() {}
	if c.Length <= smallBody {
		b = make([]byte, c.Length+1)
	} else {
		bp, _ := wholeBufs.Get().(*[]byte)
		if bp == nil || int64(cap(*bp)) <= c.Length {
			nb := make([]byte, limit+1)
			bp = &nb
		}
		b, release = (*bp)[:c.Length+1], func() { wholeBufs.Put(bp) }
	}
	n, err := io.ReadFull(c.Body, b)
	switch {
	case int64(n) == c.Length && (errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF)):
		return b[:n], release, nil // exactly the declared length
	case err == nil:
		err = errcode.New(errcode.BlobUploadInvalid, "%v", fmt.Errorf("%w: more than the declared %d bytes", blobstore.ErrChunkLength, c.Length))
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		err = errcode.New(errcode.BlobUploadInvalid, "%v", fmt.Errorf("%w: got %d bytes, declared %d", blobstore.ErrChunkLength, n, c.Length))
	default:
		err = errcode.New(errcode.BlobUploadInvalid, "reading the chunk failed; the upload is unchanged")
	}
	release()
	return nil, nil, err
}
