// Package blobstore defines the one interface through which the registry
// keeps blob content, shared by all repositories and addressed by digest.
// Uploads stream into temporary storage while they are hashed; a blob becomes
// visible only once its digest has been verified and it is durably stored.
package blobstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/berth-registry/berth/internal/reference"
)

// Errors returned by a Store.
var (
	ErrNotFound       = errors.New("blob not found")
	ErrUploadNotFound = errors.New("upload not found")
	// ErrOffset is returned when a chunk does not start where the upload ends.
	ErrOffset = errors.New("chunk does not start at the end of the upload")
	// ErrDigestMismatch is returned when uploaded content does not hash to
	// the digest the client claimed.
	ErrDigestMismatch = errors.New("content does not match digest")
	// ErrChunkLength is returned when a chunk is shorter or longer than the
	// length the client declared.
	ErrChunkLength = errors.New("chunk length differs from the declared length")
)

// BusyError refuses a chunk that starts at the right offset while another
// request holds the upload's writer claim there (a concurrent retry, or a
// replica that died in the middle of a chunk): nothing was written, and
// the same chunk may be sent again after RetryAfter, when the claim has
// lapsed unless its holder is still at work. It is an ErrOffset.
type BusyError struct {
	Offset     int64
	RetryAfter time.Duration
}

func (e *BusyError) Error() string {
	return fmt.Sprintf("another request is writing at offset %d of the upload; retry in %s", e.Offset, e.RetryAfter.Round(time.Second))
}

// Unwrap makes a BusyError an ErrOffset.
func (e *BusyError) Unwrap() error { return ErrOffset }

// ReadError marks a failure to read the client's request body, as opposed
// to a failure of the storage: the first is the client's fault (400), the
// second the server's (500).
type ReadError struct{ Err error }

func (e *ReadError) Error() string { return "reading request body: " + e.Err.Error() }

// Unwrap returns the read error.
func (e *ReadError) Unwrap() error { return e.Err }

// Content is an open blob. For the filesystem store it is an *os.File, so
// that serving it can use zero-copy system calls.
type Content interface {
	io.ReadSeekCloser
}

// Store keeps blobs and in-progress uploads.
type Store interface {
	// Stat returns the size of a committed blob, or ErrNotFound.
	Stat(ctx context.Context, d reference.Digest) (int64, error)
	// Open opens a committed blob for reading, or returns ErrNotFound.
	Open(ctx context.Context, d reference.Digest) (Content, int64, error)
	// Delete removes a committed blob; deleting a missing blob is no error.
	Delete(ctx context.Context, d reference.Digest) error

	// CreateUpload starts an empty upload session with the given id.
	CreateUpload(ctx context.Context, id string) error
	// UploadStatus returns the number of bytes received and the time of the
	// last write, or ErrUploadNotFound.
	UploadStatus(ctx context.Context, id string) (size int64, modified time.Time, err error)
	// AppendUpload writes r at offset, which must equal the upload's size
	// (ErrOffset otherwise), and returns the new size. When length >= 0, r
	// must hold exactly length bytes (ErrChunkLength otherwise). A chunk
	// that fails for any reason leaves the upload as it was; errors reading
	// r are *ReadError.
	AppendUpload(ctx context.Context, id string, offset int64, r io.Reader, length int64) (int64, error)
	// CommitUpload verifies that the upload hashes to d, stores it durably
	// under d and removes the session. On ErrDigestMismatch the session is
	// removed too.
	CommitUpload(ctx context.Context, id string, d reference.Digest) (size int64, err error)
	// AbortUpload removes a session and its data.
	AbortUpload(ctx context.Context, id string) error
	// StaleUploads lists the uploads not written to since before.
	StaleUploads(ctx context.Context, before time.Time) ([]string, error)
}

// Redirector is implemented by stores whose blobs clients can download
// directly, such as S3 with presigned URLs. When configured to (it is off
// by default), the API may answer a blob GET with a redirect to RedirectURL
// instead of serving the content itself.
type Redirector interface {
	// RedirectURL returns a URL from which a plain GET, without
	// credentials, fetches the committed blob d for a limited time.
	RedirectURL(ctx context.Context, d reference.Digest) (string, error)
}

// Spooler is implemented by stores whose uploads are local files (FS). A
// mirror streams a download into a spool (OpenSpool) while its clients
// read the same file, and CommitVerified stores it under d without reading
// it again: the caller hashed it as it streamed. Other stores take the
// download through CreateUpload, AppendUpload and CommitUpload.
type Spooler interface {
	// OpenSpool creates the upload id as a file open for reading and
	// writing; AbortUpload removes it.
	OpenSpool(ctx context.Context, id string) (*os.File, error)
	// CommitVerified stores the upload id, whose content the caller has
	// verified to hash to d, durably under d.
	CommitVerified(ctx context.Context, id string, d reference.Digest) error
}

// Walker is implemented by stores that can list their committed blobs, for
// the consistency check (package fsck).
type Walker interface {
	// Walk calls fn for each committed blob, in no particular order; it
	// skips what is not a blob of the store's layout.
	Walk(ctx context.Context, fn func(d reference.Digest, size int64, modified time.Time) error) error
}

// StrayWalker is implemented by stores that can hold objects that are no
// blob yet or any more (S3: a completed upload whose location was never
// recorded), for the consistency check to report and remove.
type StrayWalker interface {
	// WalkWithStrays is Walk, calling stray for each stray object, by
	// key, in the same pass.
	WalkWithStrays(ctx context.Context, blob func(d reference.Digest, size int64, modified time.Time) error,
		stray func(key string, size int64, modified time.Time) error) error
	// DeleteStray deletes the stray object at key, after checking again
	// that it is one.
	DeleteStray(ctx context.Context, key string) error
}

// Putter is implemented by stores that can store a blob sent whole in one
// request without going through an upload session's state: S3 writes a
// blob below one part straight to its object (one PutObject) and records
// only its location, where AppendUpload would first keep the bytes in the
// session's state and CommitUpload read them back. The caller reads the
// body (at most PutLimit bytes, a part's buffer) before it takes the
// digest's lock, so that a slow client holds no lock. Traced stores have
// the methods whatever they wrap; PutLimit says whether they apply.
type Putter interface {
	// PutLimit is the largest blob PutBlob and PutUpload take (0: none).
	PutLimit() int64
	// PutBlob verifies that b hashes to d and stores it durably under d
	// (ErrDigestMismatch otherwise, storing nothing).
	PutBlob(ctx context.Context, d reference.Digest, b []byte) error
	// PutUpload is PutBlob of the whole content of the empty upload id,
	// which it then ends, as CommitUpload does (on ErrDigestMismatch too).
	// ErrOffset: the upload holds data or another request is writing to
	// it.
	PutUpload(ctx context.Context, id string, d reference.Digest, b []byte) error
}
