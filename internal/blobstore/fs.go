package blobstore

import (
	"context"
	"encoding"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/berth-registry/berth/internal/reference"
)

// FS stores blobs as files under a root directory:
//
//	root/blobs/<algorithm>/<first two hex>/<hex>   committed blobs
//	root/uploads/<first two of id>/<id>            in-progress uploads
//
// Both live on one file system, so committing is an atomic rename. Uploads
// are spread over 256 directories because creating files in one directory
// from many requests at once contends on that directory's lock.
type FS struct {
	root string

	mu      sync.Mutex
	uploads map[string]*uploadState
	bufs    sync.Pool
}

// uploadState is the running sha256 of an upload held in memory between
// chunks. It is an optimisation: after a restart the file is hashed again.
type uploadState struct {
	mu sync.Mutex
	h  hash.Hash
	n  int64 // bytes hashed
}

// NewFS opens (creating if needed) a filesystem blob store under root. All
// directories a blob or upload can land in are created here, and synced
// once, so that committing a blob only has to sync its own directory.
func NewFS(root string) (*FS, error) {
	var dirs []string
	for _, parent := range []string{"uploads", filepath.Join("blobs", "sha256"), filepath.Join("blobs", "sha512")} {
		for i := 0; i < 256; i++ {
			dirs = append(dirs, filepath.Join(root, parent, fmt.Sprintf("%02x", i)))
		}
	}
	created := false
	for _, d := range dirs {
		if _, err := os.Stat(d); err == nil {
			continue
		}
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("create blob store directory: %w", err)
		}
		created = true
	}
	if created {
		for _, d := range []string{root, filepath.Join(root, "blobs"), filepath.Join(root, "blobs", "sha256"), filepath.Join(root, "blobs", "sha512"), filepath.Join(root, "uploads")} {
			if err := syncDir(d); err != nil {
				return nil, err
			}
		}
	}
	s := &FS{root: root, uploads: map[string]*uploadState{}}
	s.bufs.New = func() any { b := make([]byte, 256<<10); return &b }
	return s, nil
}

func (s *FS) blobPath(d reference.Digest) string {
	enc := d.Encoded()
	return filepath.Join(s.root, "blobs", string(d.Algorithm()), enc[:2], enc)
}

// uploadPath returns where an upload's data lives; ids are at least two
// lowercase hex digits (the API accepts nothing else).
func (s *FS) uploadPath(id string) string {
	return filepath.Join(s.root, "uploads", id[:2], id)
}

// Stat implements Store.
func (s *FS) Stat(_ context.Context, d reference.Digest) (int64, error) {
	fi, err := os.Stat(s.blobPath(d))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, ErrNotFound
	}
	if err != nil {
		return 0, fmt.Errorf("stat blob %s: %w", d, err)
	}
	return fi.Size(), nil
}

// Open implements Store; the Content is an *os.File.
func (s *FS) Open(_ context.Context, d reference.Digest) (Content, int64, error) {
	f, err := os.Open(s.blobPath(d))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0, ErrNotFound
	}
	if err != nil {
		return nil, 0, fmt.Errorf("open blob %s: %w", d, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("stat blob %s: %w", d, err)
	}
	return f, fi.Size(), nil
}

// Delete implements Store.
func (s *FS) Delete(_ context.Context, d reference.Digest) error {
	err := os.Remove(s.blobPath(d))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("delete blob %s: %w", d, err)
	}
	return nil
}

// CreateUpload implements Store.
func (s *FS) CreateUpload(_ context.Context, id string) error {
	f, err := os.OpenFile(s.uploadPath(id), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("create upload %s: %w", id, err)
	}
	s.mu.Lock()
	s.uploads[id] = &uploadState{h: reference.SHA256.New()}
	s.mu.Unlock()
	return f.Close()
}

// state returns the in-memory state of an upload, creating an empty one
// (which forces a re-hash at commit) if the process restarted.
func (s *FS) state(id string) *uploadState {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.uploads[id]
	if !ok {
		st = &uploadState{n: -1}
		s.uploads[id] = st
	}
	return st
}

func (s *FS) forget(id string) {
	s.mu.Lock()
	delete(s.uploads, id)
	s.mu.Unlock()
}

// UploadStatus implements Store.
func (s *FS) UploadStatus(_ context.Context, id string) (int64, time.Time, error) {
	fi, err := os.Stat(s.uploadPath(id))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, time.Time{}, ErrUploadNotFound
	}
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("stat upload %s: %w", id, err)
	}
	return fi.Size(), fi.ModTime(), nil
}

// AppendUpload implements Store.
func (s *FS) AppendUpload(_ context.Context, id string, offset int64, r io.Reader, length int64) (int64, error) {
	st := s.state(id)
	st.mu.Lock()
	defer st.mu.Unlock()
	f, err := os.OpenFile(s.uploadPath(id), os.O_WRONLY, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, ErrUploadNotFound
	}
	if err != nil {
		return 0, fmt.Errorf("open upload %s: %w", id, err)
	}
	defer f.Close()
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return 0, fmt.Errorf("seek upload %s: %w", id, err)
	}
	if offset != size {
		return size, ErrOffset
	}
	var w io.Writer = f
	hashing := st.h != nil && st.n == size
	var saved []byte
	if hashing {
		// Keep the hash state so that a rejected chunk can be undone.
		if m, ok := st.h.(encoding.BinaryMarshaler); ok {
			saved, _ = m.MarshalBinary()
		}
		w = &hashingWriter{f: f, st: st}
	} else {
		st.h, st.n = nil, -1 // out of step: re-hash at commit
	}
	src := r
	if length >= 0 {
		src = io.LimitReader(r, length)
	}
	bp := s.bufs.Get().(*[]byte)
	n, err := io.CopyBuffer(onlyWriter{w}, readErrors{src}, *bp)
	s.bufs.Put(bp)
	if err == nil && length >= 0 {
		if n != length {
			err = fmt.Errorf("%w: got %d bytes, declared %d", ErrChunkLength, n, length)
		} else if k, _ := r.Read(make([]byte, 1)); k > 0 {
			err = fmt.Errorf("%w: more than the declared %d bytes", ErrChunkLength, length)
		}
	}
	if err != nil {
		// Undo the partial chunk: the upload stays as it was.
		if terr := f.Truncate(size); terr != nil {
			return size, fmt.Errorf("undo rejected chunk of upload %s: %w (after %v)", id, terr, err)
		}
		st.h, st.n = nil, -1
		if saved != nil {
			h := reference.SHA256.New()
			if u, ok := h.(encoding.BinaryUnmarshaler); ok && u.UnmarshalBinary(saved) == nil {
				st.h, st.n = h, size
			}
		}
		var re *ReadError
		if errors.As(err, &re) || errors.Is(err, ErrChunkLength) {
			return size, err
		}
		return size, fmt.Errorf("write upload %s: %w", id, err)
	}
	return size + n, nil
}

// readErrors marks errors of the client's body as *ReadError.
type readErrors struct{ r io.Reader }

func (r readErrors) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF {
		err = &ReadError{Err: err}
	}
	return n, err
}

// hashingWriter writes to the file and then hashes what was written.
type hashingWriter struct {
	f  *os.File
	st *uploadState
}

func (w *hashingWriter) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	w.st.h.Write(p[:n])
	w.st.n += int64(n)
	return n, err
}

// onlyWriter hides ReadFrom so that io.CopyBuffer uses the pooled buffer.
type onlyWriter struct{ io.Writer }

// CommitUpload implements Store.
func (s *FS) CommitUpload(_ context.Context, id string, d reference.Digest) (int64, error) {
	st := s.state(id)
	st.mu.Lock()
	defer st.mu.Unlock()
	defer s.forget(id)
	path := s.uploadPath(id)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, ErrUploadNotFound
	}
	if err != nil {
		return 0, fmt.Errorf("open upload %s: %w", id, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("stat upload %s: %w", id, err)
	}
	size := fi.Size()
	var got reference.Digest
	if st.h != nil && st.n == size && d.Algorithm() == reference.SHA256 {
		got = reference.SHA256.FromHash(st.h)
	} else {
		h := d.Algorithm().New()
		bp := s.bufs.Get().(*[]byte)
		_, err := io.CopyBuffer(h, io.NewSectionReader(f, 0, size), *bp)
		s.bufs.Put(bp)
		if err != nil {
			return 0, fmt.Errorf("hash upload %s: %w", id, err)
		}
		got = d.Algorithm().FromHash(h)
	}
	if got != d {
		f.Close()
		os.Remove(path)
		return size, fmt.Errorf("%w: got %s", ErrDigestMismatch, got)
	}
	dst := s.blobPath(d)
	dir := filepath.Dir(dst)
	if _, err := os.Stat(dst); err == nil {
		// Already stored by another upload: the content is identical, but
		// that upload may not have synced its directory entry yet.
		f.Close()
		os.Remove(path)
		if err := syncDir(dir); err != nil {
			return 0, err
		}
		return size, nil
	}
	if err := f.Sync(); err != nil {
		return 0, fmt.Errorf("sync upload %s: %w", id, err)
	}
	if err := os.Rename(path, dst); err != nil {
		return 0, fmt.Errorf("commit blob %s: %w", d, err)
	}
	if err := syncDir(dir); err != nil {
		return 0, err
	}
	return size, nil
}

// AbortUpload implements Store. It waits for a chunk or commit in progress
// on the same upload.
func (s *FS) AbortUpload(_ context.Context, id string) error {
	st := s.state(id)
	st.mu.Lock()
	defer st.mu.Unlock()
	defer s.forget(id)
	err := os.Remove(s.uploadPath(id))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove upload %s: %w", id, err)
	}
	return nil
}

// StaleUploads implements Store.
func (s *FS) StaleUploads(_ context.Context, before time.Time) ([]string, error) {
	var ids []string
	err := filepath.WalkDir(filepath.Join(s.root, "uploads"), func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if fi, err := d.Info(); err == nil && fi.ModTime().Before(before) {
			ids = append(ids, d.Name())
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list uploads: %w", err)
	}
	return ids, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open directory for sync: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}
