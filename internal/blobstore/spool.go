package blobstore

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/berth-registry/berth/internal/reference"
)

// OpenSpool implements Spooler: the spool is an upload's file, so that an
// interrupted download is removed like any abandoned upload.
func (s *FS) OpenSpool(_ context.Context, id string) (*os.File, error) {
	f, err := os.OpenFile(s.uploadPath(id), os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create spool %s: %w", id, err)
	}
	return f, nil
}

// CommitVerified implements Spooler: sync the file, rename it into place
// and sync its directory, as CommitUpload does after its hash check.
func (s *FS) CommitVerified(_ context.Context, id string, d reference.Digest) error {
	path := s.uploadPath(id)
	dst := s.blobPath(d)
	if _, err := os.Stat(dst); err == nil {
		os.Remove(path)
		return syncDir(filepath.Dir(dst))
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open spool %s: %w", id, err)
	}
	err = f.Sync()
	f.Close()
	if err != nil {
		return fmt.Errorf("sync spool %s: %w", id, err)
	}
	if err := os.Rename(path, dst); err != nil {
		return fmt.Errorf("commit blob %s: %w", d, err)
	}
	return syncDir(filepath.Dir(dst))
}
