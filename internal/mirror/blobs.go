package mirror

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/berth-registry/berth/internal/blobstore"
	"github.com/berth-registry/berth/internal/errcode"
	"github.com/berth-registry/berth/internal/reference"
	"github.com/berth-registry/berth/internal/registry"
)

// fillKey names a download: one per repository and digest at a time.
type fillKey struct {
	repo string
	d    reference.Digest
}

// fill is a blob being downloaded from an upstream into a spool file that
// every client wanting it reads as it grows. Clients may read all but the
// last byte while it downloads; the last once the whole has been verified
// against its digest, so that no client ever gets a complete wrong blob.
type fill struct {
	d    reference.Digest
	file *os.File
	// ready is closed once the upstream answered (size is known, or err
	// says why there is nothing).
	ready chan struct{}

	mu       sync.Mutex
	size     int64 // from the upstream; -1 when it did not say
	readable int64
	verified bool
	err      error
	progress chan struct{} // closed and replaced at each step
	refs     int           // the download and each reader
}

// advance makes n bytes readable (or all, once verified), or ends the fill
// with err, and wakes the readers.
func (f *fill) advance(n int64, verified bool, err error) {
	f.mu.Lock()
	f.readable, f.verified = n, verified
	if err != nil {
		f.err = err
	}
	close(f.progress)
	f.progress = make(chan struct{})
	f.mu.Unlock()
}

// release drops a reference; the last closes the spool.
func (f *fill) release() {
	f.mu.Lock()
	f.refs--
	last := f.refs == 0
	f.mu.Unlock()
	if last && f.file != nil {
		f.file.Close()
	}
}

// fillReader reads a fill from the start, waiting for bytes as they come.
type fillReader struct {
	f    *fill
	ctx  context.Context
	off  int64
	once sync.Once
}

func (r *fillReader) Read(p []byte) (int, error) {
	readable, _, err := r.wait()
	if err != nil {
		return 0, err
	}
	if r.off >= readable {
		return 0, io.EOF
	}
	n, err := r.f.file.ReadAt(p[:min(int64(len(p)), readable-r.off)], r.off)
	r.off += int64(n)
	if err == io.EOF {
		err = nil
	}
	return n, err
}

// WriteTo sends the fill to w as it grows, through a 1 MiB buffer (as
// berth sends stored blobs: on this machine kind that is as fast as
// sendfile or faster).
func (r *fillReader) WriteTo(w io.Writer) (int64, error) {
	buf := make([]byte, 1<<20)
	var total int64
	for {
		readable, done, err := r.wait()
		if err != nil || (done && r.off >= readable) {
			return total, err
		}
		n, err := io.CopyBuffer(struct{ io.Writer }{w}, io.NewSectionReader(r.f.file, r.off, readable-r.off), buf)
		r.off += n
		total += n
		if err != nil {
			return total, err
		}
	}
}

// wait returns how many bytes are readable once there are more than the
// reader has read, or the fill is verified (done) or failed.
func (r *fillReader) wait() (readable int64, done bool, err error) {
	for {
		f := r.f
		f.mu.Lock()
		readable, verified, ferr, ch := f.readable, f.verified, f.err, f.progress
		f.mu.Unlock()
		switch {
		case ferr != nil:
			return 0, false, ferr
		case r.off < readable || verified:
			return readable, verified, nil
		}
		select {
		case <-ch:
		case <-r.ctx.Done():
			return 0, false, r.ctx.Err()
		}
	}
}

func (r *fillReader) Close() error {
	r.once.Do(r.f.release)
	return nil
}

// Blob opens blob d of a mirrored repository: from the cache when it holds
// it, else from a download of the upstream, shared with every other pull
// of it, which keeps the blob once verified. size is -1 when the upstream
// did not say. The content is an *os.File (blobstore.Content) when cached,
// else a reader that fails, mid-way, when the upstream's bytes turn out
// wrong: the caller must then abort its response.
func (s *Service) Blob(ctx context.Context, t Target, d reference.Digest) (io.ReadCloser, int64, error) {
	c, size, err := s.reg.OpenBlob(ctx, t.Local, d)
	if err == nil {
		return c, size, nil
	}
	if e := errcode.As(err); e.Code != errcode.BlobUnknown {
		return nil, 0, err
	}
	if c, size, ok, err := s.linkStored(ctx, t, d); err != nil || ok {
		return c, size, err
	}
	key := fillKey{t.Local, d}
	s.mu.Lock()
	f := s.fills[key]
	if f == nil {
		f = &fill{d: d, ready: make(chan struct{}), progress: make(chan struct{}), size: -1, refs: 1}
		s.fills[key] = f
		go s.download(context.WithoutCancel(ctx), t, f, key)
	} else {
		s.totals.Shared.Add(1)
	}
	f.mu.Lock()
	f.refs++
	f.mu.Unlock()
	s.mu.Unlock()
	r := &fillReader{f: f, ctx: ctx}
	select {
	case <-f.ready:
	case <-ctx.Done():
		r.Close()
		return nil, 0, errcode.Wrap(ctx.Err(), "waiting for the upstream")
	}
	f.mu.Lock()
	size, err = f.size, f.err
	f.mu.Unlock()
	if err != nil {
		r.Close()
		return nil, 0, s.upstreamError(t, err, errcode.BlobUnknown)
	}
	return r, size, nil
}

// linkStored serves a blob the store holds for another repository once
// the upstream confirms it has it at that size: a mirror never hands out
// what its upstream would not (the digest might be a private blob's).
func (s *Service) linkStored(ctx context.Context, t Target, d reference.Digest) (io.ReadCloser, int64, bool, error) {
	stored, err := s.reg.Blobs().Stat(ctx, d)
	if err != nil {
		return nil, 0, false, nil
	}
	size, err := t.entry.client.HeadBlob(ctx, t.Upstream, d)
	if err != nil || size != stored {
		return nil, 0, false, nil
	}
	if ok, err := s.reg.CachedBlob(ctx, t.Local, d, size); err != nil || !ok {
		return nil, 0, false, nil
	}
	c, size, err := s.reg.OpenBlob(ctx, t.Local, d)
	if err != nil {
		return nil, 0, false, nil
	}
	return c, size, true, nil
}

// StatBlob returns the size of blob d of a mirrored repository: the
// cache's, else the upstream's (a HEAD, which keeps nothing).
func (s *Service) StatBlob(ctx context.Context, t Target, d reference.Digest) (int64, error) {
	size, err := s.reg.StatBlob(ctx, t.Local, d, false)
	if err == nil {
		return size, nil
	}
	if e := errcode.As(err); e.Code != errcode.BlobUnknown {
		return 0, err
	}
	if size, err = t.entry.client.HeadBlob(ctx, t.Upstream, d); err != nil {
		return 0, s.upstreamError(t, err, errcode.BlobUnknown)
	}
	return size, nil
}

// errFault marks upstream content refused.
var errFault = errors.New("upstream content refused")

// download fetches a fill from the upstream, makes it readable as it
// comes, verifies it and keeps it.
func (s *Service) download(ctx context.Context, t Target, f *fill, key fillKey) {
	defer func() {
		s.mu.Lock()
		delete(s.fills, key)
		s.mu.Unlock()
		f.release()
	}()
	fail := func(err error) {
		f.advance(0, false, err)
		select {
		case <-f.ready:
		default:
			close(f.ready)
		}
	}
	s.totals.BlobFetches.Add(1)
	body, size, err := t.entry.client.GetBlob(ctx, t.Upstream, f.d)
	if err != nil {
		fail(err)
		return
	}
	defer body.Close()
	id, file, err := s.spool(ctx)
	if err != nil {
		fail(err)
		return
	}
	f.file = file
	f.mu.Lock()
	f.size = size
	f.mu.Unlock()
	close(f.ready)
	n, err := s.copySpool(ctx, f, body, size)
	if err != nil {
		s.totals.Faults.Add(1)
		s.log.Warn("mirror upstream fault: nothing kept", "mirror", t.Mirror, "repository", t.Local, "digest", f.d, "bytes", n, "err", err)
		f.advance(0, false, fmt.Errorf("%w: %v", errFault, err))
		s.dropSpool(ctx, id, file)
		return
	}
	f.advance(n, true, nil)
	if err := s.keep(ctx, t, f.d, id, file, n); err != nil {
		s.log.Error("mirror could not keep a blob it served", "mirror", t.Mirror, "repository", t.Local, "digest", f.d, "err", err)
		s.dropSpool(ctx, id, file)
	}
}

// copySpool copies the upstream's body into the spool. The upstream
// client checks the digest (and the announced length) as the body is
// read: the copy fails at the end when the bytes are wrong.
func (s *Service) copySpool(ctx context.Context, f *fill, body io.Reader, size int64) (int64, error) {
	buf := make([]byte, 1<<20)
	var n int64
	for {
		k, rerr := body.Read(buf)
		if k > 0 {
			if size >= 0 && n+int64(k) > size {
				return n, fmt.Errorf("upstream sent more than the %d bytes it announced", size)
			}
			if _, err := f.file.WriteAt(buf[:k], n); err != nil {
				return n, fmt.Errorf("write spool: %w", err)
			}
			n += int64(k)
			s.totals.BlobBytes.Add(int64(k))
			f.advance(n-1, false, nil) // the last byte waits for the check
		}
		if rerr == io.EOF {
			return n, nil
		}
		if rerr != nil {
			return n, fmt.Errorf("read upstream: %w", rerr)
		}
		if ctx.Err() != nil {
			return n, ctx.Err()
		}
	}
}

// spool creates the file a download goes to: an upload of the blob store
// when it is a Spooler (committed by renaming), else a temporary file.
func (s *Service) spool(ctx context.Context) (string, *os.File, error) {
	if sp, ok := blobstore.Base(s.reg.Blobs()).(blobstore.Spooler); ok {
		id := registry.NewUploadID()
		f, err := sp.OpenSpool(ctx, id)
		return id, f, err
	}
	f, err := os.CreateTemp(s.spoolDir, "mirror-*")
	if err != nil {
		return "", nil, fmt.Errorf("create spool: %w", err)
	}
	return "", f, nil
}

// dropSpool removes a spool (open readers keep reading what they have).
func (s *Service) dropSpool(ctx context.Context, id string, f *os.File) {
	if id != "" {
		_ = s.reg.Blobs().AbortUpload(context.WithoutCancel(ctx), id)
		return
	}
	_ = os.Remove(f.Name())
}

// keep stores a verified download under its digest and links it into the
// repository, within the namespace's quota (over it, the blob was served
// but is not kept).
func (s *Service) keep(ctx context.Context, t Target, d reference.Digest, id string, f *os.File, size int64) error {
	return s.reg.KeepBlob(ctx, t.Local, d, size, func(ctx context.Context, store blobstore.Store) error {
		if sp, ok := blobstore.Base(store).(blobstore.Spooler); ok && id != "" {
			return sp.CommitVerified(ctx, id, d)
		}
		up := registry.NewUploadID()
		if err := store.CreateUpload(ctx, up); err != nil {
			return err
		}
		if _, err := store.AppendUpload(ctx, up, 0, io.NewSectionReader(f, 0, size), size); err != nil {
			_ = store.AbortUpload(ctx, up)
			return err
		}
		if _, err := store.CommitUpload(ctx, up, d); err != nil {
			return err
		}
		_ = os.Remove(f.Name()) // the spool, copied into the store
		return nil
	})
}
