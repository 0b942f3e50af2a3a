package blobstore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/berth-registry/berth/internal/reference"
)

// blobDigest returns the digest a blob's place names (algorithm, two-digit
// directory, encoded digest), or false when it is no blob's place.
func blobDigest(alg, dir, name string) (reference.Digest, bool) {
	d := reference.Digest(alg + ":" + name)
	if _, err := reference.ParseDigest(string(d)); err != nil || len(name) < 2 || name[:2] != dir {
		return "", false
	}
	return d, true
}

// Walk implements Walker.
func (s *FS) Walk(ctx context.Context, fn func(d reference.Digest, size int64, modified time.Time) error) error {
	for _, alg := range []string{"sha256", "sha512"} {
		root := filepath.Join(s.root, "blobs", alg)
		dirs, err := os.ReadDir(root)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("list blobs: %w", err)
		}
		for _, dir := range dirs {
			entries, err := os.ReadDir(filepath.Join(root, dir.Name()))
			if err != nil {
				return fmt.Errorf("list blobs: %w", err)
			}
			for _, e := range entries {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				d, ok := blobDigest(alg, dir.Name(), e.Name())
				if !ok || !e.Type().IsRegular() {
					continue
				}
				fi, err := e.Info()
				if errors.Is(err, fs.ErrNotExist) {
					continue // deleted meanwhile
				}
				if err != nil {
					return fmt.Errorf("stat blob %s: %w", d, err)
				}
				if err := fn(d, fi.Size(), fi.ModTime()); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// Walk implements Walker.
func (s *S3) Walk(ctx context.Context, fn func(d reference.Digest, size int64, modified time.Time) error) error {
	prefix := s.prefix + "blobs/"
	p := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{Bucket: &s.bucket, Prefix: aws.String(prefix)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("s3: list blobs: %w", err)
		}
		for _, o := range page.Contents {
			parts := strings.Split(strings.TrimPrefix(aws.ToString(o.Key), prefix), "/")
			if len(parts) != 3 {
				continue
			}
			d, ok := blobDigest(parts[0], parts[1], parts[2])
			if !ok {
				continue
			}
			if err := fn(d, aws.ToInt64(o.Size), aws.ToTime(o.LastModified)); err != nil {
				return err
			}
		}
	}
	return nil
}
