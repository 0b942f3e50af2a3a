package blobstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/berth-registry/berth/internal/reference"
)

var _ Putter = (*S3)(nil)

// PutLimit implements Putter: a blob that fits in one part.
func (s *S3) PutLimit() int64 { return s3PartSize }

// PutBlob implements Putter: content that hashes to d is written with one
// PutObject to d's address and its location recorded; a blob stored
// already is not written again.
func (s *S3) PutBlob(ctx context.Context, d reference.Digest, b []byte) error {
	if int64(len(b)) > s3PartSize {
		return fmt.Errorf("s3: put blob %s: %d bytes, more than one part (%d)", d, len(b), s3PartSize)
	}
	if d.Algorithm() != reference.SHA256 && d.Algorithm() != reference.SHA512 {
		return fmt.Errorf("%w: unsupported digest algorithm %q", ErrDigestMismatch, d.Algorithm())
	}
	if got := d.Algorithm().FromBytes(b); got != d {
		return fmt.Errorf("%w: got %s", ErrDigestMismatch, got)
	}
	switch _, size, err := s.index.BlobLocation(ctx, d); {
	case err == nil && size == int64(len(b)):
		return nil // stored already; the content is the same
	case err != nil && !errors.Is(err, ErrNotFound):
		return fmt.Errorf("s3: look up blob %s: %w", d, err)
	}
	key := s.blobKey(d)
	if err := s.putObject(ctx, key, b); err != nil {
		return fmt.Errorf("s3: store blob %s: %w", d, err)
	}
	if _, err := s.index.AddBlobLocation(ctx, d, strings.TrimPrefix(key, s.prefix), int64(len(b))); err != nil {
		return fmt.Errorf("s3: record location of blob %s: %w", d, err)
	}
	return nil
}

// PutUpload implements Putter. The session's state is removed only at the
// revision read first: should a concurrent chunk of the same session have
// moved it on meanwhile, the blob is stored all the same and the session
// stays that chunk's.
func (s *S3) PutUpload(ctx context.Context, id string, d reference.Digest, b []byte) error {
	u, err := s.readState(ctx, id)
	if err != nil {
		return err
	}
	if u.Size != 0 || u.MultipartID != "" {
		return fmt.Errorf("%w: upload %s holds %d bytes", ErrOffset, id, u.Size)
	}
	if u.Writer != "" && time.Since(u.WriterSince) < writerLease {
		return fmt.Errorf("%w: another request is writing to upload %s", ErrOffset, id)
	}
	err = s.PutBlob(ctx, d, b)
	if err != nil && !errors.Is(err, ErrDigestMismatch) {
		return err // the session is as it was
	}
	if derr := s.index.DeleteUploadState(ctx, id, u.Rev); derr != nil && !errors.Is(derr, ErrStateChanged) {
		if err == nil {
			return fmt.Errorf("s3: blob %s stored, but: delete state of upload %s: %w", d, id, derr)
		}
		return fmt.Errorf("s3: delete state of upload %s: %w", id, derr)
	}
	return err
}
