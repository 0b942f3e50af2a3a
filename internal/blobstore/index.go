package blobstore

import (
	"context"
	"errors"
	"time"

	"github.com/berth-registry/berth/internal/reference"
)

// ErrStateChanged is returned by S3Index.PutUploadState when the upload's
// state is not at the revision the write was conditioned on: another
// request changed or removed it, or (for a create) it exists already.
var ErrStateChanged = errors.New("upload state changed concurrently")

// S3Index keeps what the S3 store knows besides content: the state of
// each upload session (with the bytes not yet in a part) and where each
// blob's object is. The metadata database implements it (package
// metadata), so that replicas sharing the database share it, and reading
// or writing it costs no S3 request.
//
// Revisions are opaque strings chosen by the writer; a conditional write
// is atomic with respect to every other write of the same upload.
type S3Index interface {
	// UploadState returns the state of upload id and its revision, or
	// ErrUploadNotFound.
	UploadState(ctx context.Context, id string) (state []byte, rev string, err error)
	// UploadPending returns the pending bytes of upload id at revision
	// rev (nil when there are none), ErrStateChanged when the upload is at
	// another revision, or ErrUploadNotFound.
	UploadPending(ctx context.Context, id, rev string) ([]byte, error)
	// PutUploadState writes the state of upload id at revision rev, with
	// its pending bytes when pending is not nil (otherwise they stay as
	// they are). With ifRev "" it creates the upload, which must not
	// exist; otherwise the upload must be at revision ifRev. It returns
	// ErrStateChanged when the condition fails.
	PutUploadState(ctx context.Context, id string, state []byte, pending *[]byte, rev, ifRev string) error
	// DeleteUploadState removes upload id; removing a missing one is no
	// error. With ifRev set, only the upload at that revision goes
	// (ErrStateChanged if it is at another).
	DeleteUploadState(ctx context.Context, id, ifRev string) error
	// StaleUploadStates lists the uploads whose state was last written
	// before t.
	StaleUploadStates(ctx context.Context, before time.Time) ([]string, error)

	// BlobLocation returns the key (relative to the store's prefix) of
	// blob d's object and its size, or ErrNotFound.
	BlobLocation(ctx context.Context, d reference.Digest) (key string, size int64, err error)
	// AddBlobLocation records key as d's object unless d has one already,
	// and returns the key recorded: key, or the earlier one.
	AddBlobLocation(ctx context.Context, d reference.Digest, key string, size int64) (string, error)
	// DeleteBlobLocation removes d's location; removing a missing one is
	// no error.
	DeleteBlobLocation(ctx context.Context, d reference.Digest) error
	// BlobLocations calls fn for each recorded location, in no particular
	// order.
	BlobLocations(ctx context.Context, fn func(d reference.Digest, key string, size int64, created time.Time) error) error
}
