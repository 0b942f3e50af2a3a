package blobstore

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	mathrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/reference"
)

const mib = 1 << 20

// testStore runs the contract of the Store interface against fresh stores
// made by newStore, one for each subtest.
func testStore(t *testing.T, newStore func(t *testing.T) Store) {
	ctx := context.Background()

	t.Run("Monolithic", func(t *testing.T) {
		s := newStore(t)
		data := []byte("hello, berth")
		d := reference.SHA256.FromBytes(data)
		id := newUploadID(t)
		mustCreate(t, s, id)
		if n, err := s.AppendUpload(ctx, id, 0, bytes.NewReader(data), int64(len(data))); err != nil || n != int64(len(data)) {
			t.Fatalf("append = %d, %v", n, err)
		}
		commit(t, s, id, d, int64(len(data)))
		checkBlob(t, s, d, data)
		if _, _, err := s.UploadStatus(ctx, id); !errors.Is(err, ErrUploadNotFound) {
			t.Errorf("upload status after commit: %v, want ErrUploadNotFound", err)
		}
	})

	t.Run("Empty", func(t *testing.T) {
		s := newStore(t)
		d := reference.SHA256.FromBytes(nil)
		id := newUploadID(t)
		mustCreate(t, s, id)
		commit(t, s, id, d, 0)
		checkBlob(t, s, d, nil)
	})

	t.Run("Chunked", func(t *testing.T) {
		s := newStore(t)
		data := []byte("chunk one|chunk two|three")
		id := newUploadID(t)
		mustCreate(t, s, id)
		appendChunks(t, s, id, data, []int{9, 1, 9, 0, 6}, false)
		d := reference.SHA256.FromBytes(data)
		commit(t, s, id, d, int64(len(data)))
		checkBlob(t, s, d, data)
	})

	t.Run("LargeMixedChunks", func(t *testing.T) {
		s := newStore(t)
		data := testData(13*mib+12345, 1)
		id := newUploadID(t)
		mustCreate(t, s, id)
		appendChunks(t, s, id, data, []int{1, 100 << 10, 6 * mib, len(data) - 1 - 100<<10 - 6*mib}, false)
		d := reference.SHA256.FromBytes(data)
		commit(t, s, id, d, int64(len(data)))
		checkBlob(t, s, d, data)
	})

	t.Run("LargeUnknownLength", func(t *testing.T) {
		s := newStore(t)
		data := testData(13*mib, 2)
		id := newUploadID(t)
		mustCreate(t, s, id)
		// Chunked transfer encoding: length -1, and a reader that does not
		// tell its length.
		if n, err := s.AppendUpload(ctx, id, 0, opaqueReader{bytes.NewReader(data)}, -1); err != nil || n != int64(len(data)) {
			t.Fatalf("append = %d, %v", n, err)
		}
		d := reference.SHA256.FromBytes(data)
		commit(t, s, id, d, int64(len(data)))
		checkBlob(t, s, d, data)
	})

	t.Run("PartSizedChunks", func(t *testing.T) {
		// Chunks that end exactly at part boundaries of 8 MiB, and a
		// last chunk that is a whole part.
		s := newStore(t)
		data := testData(16*mib, 3)
		id := newUploadID(t)
		mustCreate(t, s, id)
		appendChunks(t, s, id, data, []int{5 * mib, 3 * mib, 8 * mib}, true)
		d := reference.SHA256.FromBytes(data)
		commit(t, s, id, d, int64(len(data)))
		checkBlob(t, s, d, data)
	})

	t.Run("SHA512", func(t *testing.T) {
		s := newStore(t)
		data := testData(9*mib+7, 4)
		id := newUploadID(t)
		mustCreate(t, s, id)
		appendChunks(t, s, id, data, []int{3 * mib, len(data) - 3*mib}, false)
		d := reference.SHA512.FromBytes(data)
		commit(t, s, id, d, int64(len(data)))
		checkBlob(t, s, d, data)
		if _, err := s.Stat(ctx, reference.SHA256.FromBytes(data)); !errors.Is(err, ErrNotFound) {
			t.Errorf("blob committed as sha512 is found by its sha256: %v", err)
		}
	})

	t.Run("Offset", func(t *testing.T) {
		s := newStore(t)
		id := newUploadID(t)
		mustCreate(t, s, id)
		appendChunks(t, s, id, []byte("0123456789"), []int{10}, false)
		for _, off := range []int64{0, 9, 11, 100} {
			if _, err := s.AppendUpload(ctx, id, off, strings.NewReader("x"), 1); !errors.Is(err, ErrOffset) {
				t.Errorf("append at %d of a 10-byte upload: %v, want ErrOffset", off, err)
			}
		}
		checkUploadSize(t, s, id, 10)
		appendChunks(t, s, id, []byte("0123456789ab"), []int{10, 2}, false)
	})

	t.Run("ChunkLength", func(t *testing.T) {
		s := newStore(t)
		data := testData(12*mib, 5)
		id := newUploadID(t)
		mustCreate(t, s, id)
		off := 3 * mib
		appendChunks(t, s, id, data[:off], []int{off}, false)
		next := data[off : off+6*mib] // with the first chunk, fills a part
		// Short: declared 7 MiB, sent 6.
		if n, err := s.AppendUpload(ctx, id, int64(off), bytes.NewReader(next), 7*mib); !errors.Is(err, ErrChunkLength) {
			t.Fatalf("short chunk: %d, %v; want ErrChunkLength", n, err)
		}
		checkUploadSize(t, s, id, int64(off))
		// Long: declared 6 MiB - 1, sent 6 MiB.
		if n, err := s.AppendUpload(ctx, id, int64(off), bytes.NewReader(next), 6*mib-1); !errors.Is(err, ErrChunkLength) {
			t.Fatalf("long chunk: %d, %v; want ErrChunkLength", n, err)
		}
		checkUploadSize(t, s, id, int64(off))
		// Short and empty.
		if _, err := s.AppendUpload(ctx, id, int64(off), strings.NewReader(""), 10); !errors.Is(err, ErrChunkLength) {
			t.Fatalf("empty chunk declared 10 bytes: %v; want ErrChunkLength", err)
		}
		checkUploadSize(t, s, id, int64(off))
		// Correct retries.
		appendChunks(t, s, id, data, []int{off, 6 * mib, len(data) - off - 6*mib}, true)
		d := reference.SHA256.FromBytes(data)
		commit(t, s, id, d, int64(len(data)))
		checkBlob(t, s, d, data)
	})

	t.Run("ReadError", func(t *testing.T) {
		s := newStore(t)
		data := testData(20*mib, 6)
		id := newUploadID(t)
		mustCreate(t, s, id)
		off := 3 * mib
		appendChunks(t, s, id, data[:off], []int{off}, false)
		for _, length := range []int64{-1, 15 * mib} {
			// The client sends 12 MiB (more than a part) and disconnects.
			body := &brokenReader{r: bytes.NewReader(data[off : off+12*mib])}
			n, err := s.AppendUpload(ctx, id, int64(off), body, length)
			var re *ReadError
			if !errors.As(err, &re) || !errors.Is(err, errConnReset) {
				t.Fatalf("failing body (length %d): %d, %v; want *ReadError", length, n, err)
			}
			checkUploadSize(t, s, id, int64(off))
		}
		appendChunks(t, s, id, data, []int{off, 2 * mib, len(data) - off - 2*mib}, true)
		d := reference.SHA256.FromBytes(data)
		commit(t, s, id, d, int64(len(data)))
		checkBlob(t, s, d, data)
	})

	t.Run("DigestMismatch", func(t *testing.T) {
		s := newStore(t)
		for _, size := range []int{0, 100, 9 * mib} {
			data := testData(size, 7)
			for _, wrong := range []reference.Digest{
				reference.SHA256.FromBytes([]byte("other")),
				reference.SHA512.FromBytes([]byte("other")),
			} {
				id := newUploadID(t)
				mustCreate(t, s, id)
				appendChunks(t, s, id, data, []int{size}, false)
				if _, err := s.CommitUpload(ctx, id, wrong); !errors.Is(err, ErrDigestMismatch) {
					t.Fatalf("size %d: commit as %s: %v, want ErrDigestMismatch", size, wrong.Algorithm(), err)
				}
				if _, err := s.Stat(ctx, wrong); !errors.Is(err, ErrNotFound) {
					t.Errorf("size %d: blob stored despite the mismatch: %v", size, err)
				}
				if _, _, err := s.UploadStatus(ctx, id); !errors.Is(err, ErrUploadNotFound) {
					t.Errorf("size %d: upload kept after the mismatch: %v", size, err)
				}
				if _, err := s.CommitUpload(ctx, id, reference.SHA256.FromBytes(data)); !errors.Is(err, ErrUploadNotFound) {
					t.Errorf("size %d: commit of a removed upload: %v, want ErrUploadNotFound", size, err)
				}
				if _, err := s.Stat(ctx, reference.SHA256.FromBytes(data)); !errors.Is(err, ErrNotFound) {
					t.Errorf("size %d: blob stored despite the mismatch: %v", size, err)
				}
			}
		}
	})

	t.Run("SameContentTwice", func(t *testing.T) {
		s := newStore(t)
		data := testData(9*mib, 8)
		d := reference.SHA256.FromBytes(data)
		for i := 0; i < 2; i++ {
			id := newUploadID(t)
			mustCreate(t, s, id)
			appendChunks(t, s, id, data, []int{len(data)}, true)
			commit(t, s, id, d, int64(len(data)))
		}
		checkBlob(t, s, d, data)
	})

	t.Run("SeekAndRanges", func(t *testing.T) {
		s := newStore(t)
		data := testData(10*mib+3, 9)
		d := storeBlob(t, s, data)
		c, size, err := s.Open(ctx, d)
		if err != nil {
			t.Fatal(err)
		}
		if size != int64(len(data)) {
			t.Fatalf("open: size %d, want %d", size, len(data))
		}
		read := func(off int64, whence, n int, want []byte) {
			t.Helper()
			if _, err := c.Seek(off, whence); err != nil {
				t.Fatalf("seek(%d, %d): %v", off, whence, err)
			}
			got := make([]byte, n)
			if _, err := io.ReadFull(c, got); err != nil {
				t.Fatalf("read %d bytes after seek(%d, %d): %v", n, off, whence, err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("read after seek(%d, %d): wrong bytes", off, whence)
			}
		}
		read(9*mib, io.SeekStart, 1000, data[9*mib:9*mib+1000])
		read(-10, io.SeekEnd, 10, data[len(data)-10:])
		read(0, io.SeekStart, 5, data[:5])
		read(5, io.SeekCurrent, 5, data[10:15])
		if pos, err := c.Seek(0, io.SeekEnd); err != nil || pos != size {
			t.Fatalf("seek to end = %d, %v", pos, err)
		}
		if n, err := c.Read(make([]byte, 10)); n != 0 || err != io.EOF {
			t.Fatalf("read at end = %d, %v; want 0, EOF", n, err)
		}
		if err := c.Close(); err != nil {
			t.Fatalf("close: %v", err)
		}

		for _, tc := range []struct {
			rng        string
			start, end int // of the expected body
		}{
			{"bytes=1000-1999", 1000, 2000},
			{"bytes=8388600-8388700", 8388600, 8388701}, // across a part boundary
			{"bytes=-10", len(data) - 10, len(data)},
			{"bytes=10485000-", 10485000, len(data)},
			{"", 0, len(data)},
		} {
			c, _, err := s.Open(ctx, d)
			if err != nil {
				t.Fatal(err)
			}
			rec := httptest.NewRecorder()
			req := httptest.NewRequest(http.MethodGet, "/blob", nil)
			if tc.rng != "" {
				req.Header.Set("Range", tc.rng)
			}
			// No Content-Type: ServeContent sniffs the start, then seeks.
			http.ServeContent(rec, req, "", time.Time{}, c)
			c.Close()
			want := http.StatusPartialContent
			if tc.rng == "" {
				want = http.StatusOK
			}
			if rec.Code != want {
				t.Fatalf("range %q: status %d, want %d", tc.rng, rec.Code, want)
			}
			if !bytes.Equal(rec.Body.Bytes(), data[tc.start:tc.end]) {
				t.Fatalf("range %q: got %d bytes, not bytes %d-%d", tc.rng, rec.Body.Len(), tc.start, tc.end-1)
			}
		}
	})

	t.Run("Delete", func(t *testing.T) {
		s := newStore(t)
		data := []byte("to be deleted")
		d := storeBlob(t, s, data)
		if err := s.Delete(ctx, d); err != nil {
			t.Fatalf("delete: %v", err)
		}
		if _, err := s.Stat(ctx, d); !errors.Is(err, ErrNotFound) {
			t.Errorf("stat after delete: %v, want ErrNotFound", err)
		}
		if _, _, err := s.Open(ctx, d); !errors.Is(err, ErrNotFound) {
			t.Errorf("open after delete: %v, want ErrNotFound", err)
		}
		if err := s.Delete(ctx, d); err != nil {
			t.Errorf("delete of a deleted blob: %v", err)
		}
		if err := s.Delete(ctx, reference.SHA512.FromBytes([]byte("never stored"))); err != nil {
			t.Errorf("delete of a missing blob: %v", err)
		}
	})

	t.Run("NotFound", func(t *testing.T) {
		s := newStore(t)
		d := reference.SHA256.FromBytes([]byte("never stored"))
		if _, err := s.Stat(ctx, d); !errors.Is(err, ErrNotFound) {
			t.Errorf("stat: %v, want ErrNotFound", err)
		}
		if _, _, err := s.Open(ctx, d); !errors.Is(err, ErrNotFound) {
			t.Errorf("open: %v, want ErrNotFound", err)
		}
		id := newUploadID(t)
		if _, _, err := s.UploadStatus(ctx, id); !errors.Is(err, ErrUploadNotFound) {
			t.Errorf("upload status: %v, want ErrUploadNotFound", err)
		}
		if _, err := s.AppendUpload(ctx, id, 0, strings.NewReader("x"), 1); !errors.Is(err, ErrUploadNotFound) {
			t.Errorf("append: %v, want ErrUploadNotFound", err)
		}
		if _, err := s.CommitUpload(ctx, id, d); !errors.Is(err, ErrUploadNotFound) {
			t.Errorf("commit: %v, want ErrUploadNotFound", err)
		}
	})

	t.Run("Abort", func(t *testing.T) {
		s := newStore(t)
		data := testData(10*mib, 10)
		id := newUploadID(t)
		mustCreate(t, s, id)
		appendChunks(t, s, id, data, []int{len(data)}, false)
		if err := s.AbortUpload(ctx, id); err != nil {
			t.Fatalf("abort: %v", err)
		}
		if _, _, err := s.UploadStatus(ctx, id); !errors.Is(err, ErrUploadNotFound) {
			t.Errorf("upload status after abort: %v, want ErrUploadNotFound", err)
		}
		if _, err := s.AppendUpload(ctx, id, int64(len(data)), strings.NewReader("x"), 1); !errors.Is(err, ErrUploadNotFound) {
			t.Errorf("append after abort: %v, want ErrUploadNotFound", err)
		}
		if _, err := s.CommitUpload(ctx, id, reference.SHA256.FromBytes(data)); !errors.Is(err, ErrUploadNotFound) {
			t.Errorf("commit after abort: %v, want ErrUploadNotFound", err)
		}
		if err := s.AbortUpload(ctx, id); err != nil {
			t.Errorf("second abort: %v", err)
		}
		// The id can be used again.
		mustCreate(t, s, id)
		checkUploadSize(t, s, id, 0)
	})

	t.Run("Status", func(t *testing.T) {
		s := newStore(t)
		id := newUploadID(t)
		start := time.Now()
		mustCreate(t, s, id)
		size, mod, err := s.UploadStatus(ctx, id)
		if err != nil || size != 0 {
			t.Fatalf("status of a new upload = %d, %v", size, err)
		}
		if mod.Before(start.Add(-2*time.Second)) || mod.After(time.Now().Add(2*time.Second)) {
			t.Errorf("modified %v, not about now (%v)", mod, start)
		}
		appendChunks(t, s, id, []byte("abc"), []int{3}, false)
	})

	t.Run("StaleUploads", func(t *testing.T) {
		s := newStore(t)
		old, young, committed := newUploadID(t), newUploadID(t), newUploadID(t)
		mustCreate(t, s, old)
		appendChunks(t, s, old, []byte("old"), []int{3}, false)
		mustCreate(t, s, committed)
		time.Sleep(50 * time.Millisecond)
		cutoff := time.Now()
		time.Sleep(50 * time.Millisecond)
		mustCreate(t, s, young)
		commit(t, s, committed, reference.SHA256.FromBytes(nil), 0)

		ids, err := s.StaleUploads(ctx, cutoff)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(ids, old) || slices.Contains(ids, young) || slices.Contains(ids, committed) {
			t.Fatalf("stale uploads = %v; want %s and neither %s (written after) nor %s (committed)", ids, old, young, committed)
		}
		// Writing to the old upload makes it young.
		appendChunks(t, s, old, []byte("older"), []int{3, 2}, false)
		ids, err = s.StaleUploads(ctx, cutoff)
		if err != nil {
			t.Fatal(err)
		}
		if slices.Contains(ids, old) {
			t.Fatalf("stale uploads = %v; %s was written after the cut-off", ids, old)
		}
		ids, err = s.StaleUploads(ctx, time.Now().Add(time.Second))
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(ids)
		want := []string{old, young}
		slices.Sort(want)
		if !slices.Equal(ids, want) {
			t.Fatalf("stale uploads before a future time = %v, want %v", ids, want)
		}
	})
}

func TestFSStore(t *testing.T) {
	testStore(t, func(t *testing.T) Store {
		s, err := NewFS(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// newUploadID returns a random upload id like the API's.
func newUploadID(t testing.TB) string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// testData returns n pseudo-random bytes, the same for the same seed.
func testData(n int, seed uint64) []byte {
	r := mathrand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)})
	b := make([]byte, n)
	r.Read(b)
	return b
}

func mustCreate(t testing.TB, s Store, id string) {
	t.Helper()
	if err := s.CreateUpload(context.Background(), id); err != nil {
		t.Fatalf("create upload: %v", err)
	}
}

// appendChunks appends data in chunks of the given sizes, starting at the
// upload's current size (which must be a chunk boundary), and checks the
// size after each. With unknown, chunks are sent with length -1.
func appendChunks(t testing.TB, s Store, id string, data []byte, sizes []int, unknown bool) {
	t.Helper()
	ctx := context.Background()
	size, _, err := s.UploadStatus(ctx, id)
	if err != nil {
		t.Fatalf("upload status: %v", err)
	}
	off := 0
	for _, n := range sizes {
		chunk := data[off : off+n]
		off += n
		if int64(off) <= size {
			continue // already there
		}
		length := int64(n)
		var r io.Reader = bytes.NewReader(chunk)
		if unknown {
			length, r = -1, opaqueReader{r}
		}
		got, err := s.AppendUpload(ctx, id, int64(off-n), r, length)
		if err != nil {
			t.Fatalf("append %d bytes at %d: %v", n, off-n, err)
		}
		if got != int64(off) {
			t.Fatalf("append %d bytes at %d: size %d, want %d", n, off-n, got, off)
		}
		checkUploadSize(t, s, id, int64(off))
	}
	if off != len(data) {
		t.Fatalf("chunk sizes add up to %d, not %d", off, len(data))
	}
}

func checkUploadSize(t testing.TB, s Store, id string, want int64) {
	t.Helper()
	size, _, err := s.UploadStatus(context.Background(), id)
	if err != nil || size != want {
		t.Fatalf("upload status = %d, %v; want size %d", size, err, want)
	}
}

func commit(t testing.TB, s Store, id string, d reference.Digest, want int64) {
	t.Helper()
	size, err := s.CommitUpload(context.Background(), id, d)
	if err != nil {
		t.Fatalf("commit as %s: %v", d, err)
	}
	if size != want {
		t.Fatalf("commit: size %d, want %d", size, want)
	}
}

// storeBlob uploads data in one chunk and returns its sha256 digest.
func storeBlob(t testing.TB, s Store, data []byte) reference.Digest {
	t.Helper()
	id := newUploadID(t)
	mustCreate(t, s, id)
	appendChunks(t, s, id, data, []int{len(data)}, false)
	d := reference.SHA256.FromBytes(data)
	commit(t, s, id, d, int64(len(data)))
	return d
}

// checkBlob checks that the blob d is stored with exactly data.
func checkBlob(t testing.TB, s Store, d reference.Digest, data []byte) {
	t.Helper()
	ctx := context.Background()
	if size, err := s.Stat(ctx, d); err != nil || size != int64(len(data)) {
		t.Fatalf("stat %s = %d, %v; want %d", d, size, err, len(data))
	}
	c, size, err := s.Open(ctx, d)
	if err != nil {
		t.Fatalf("open %s: %v", d, err)
	}
	defer c.Close()
	if size != int64(len(data)) {
		t.Fatalf("open %s: size %d, want %d", d, size, len(data))
	}
	h := d.Algorithm().New()
	n, err := io.Copy(h, c)
	if err != nil {
		t.Fatalf("read %s: %v", d, err)
	}
	if got := d.Algorithm().FromHash(h); got != d || n != int64(len(data)) {
		t.Fatalf("read %s: %d bytes hashing to %s", d, n, got)
	}
}

// opaqueReader hides everything of a reader but Read, as a request body of
// unknown length.
type opaqueReader struct{ r io.Reader }

func (o opaqueReader) Read(p []byte) (int, error) { return o.r.Read(p) }

var errConnReset = errors.New("connection reset by peer")

// brokenReader returns what r holds, then errConnReset, like a client that
// disconnects in the middle of a chunk.
type brokenReader struct{ r io.Reader }

func (b *brokenReader) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err == io.EOF {
		err = errConnReset
	}
	return n, err
}
