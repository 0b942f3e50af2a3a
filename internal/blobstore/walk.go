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

// Walk implements Walker. It matches the objects under blobs/ and
// objects/ with the index: a recorded location whose object exists is its
// blob; an object at a blob's address that no location names is that blob
// (stored before the index kept locations, or its record lost). Objects
// under objects/ that no location names are strays (WalkWithStrays).
func (s *S3) Walk(ctx context.Context, fn func(d reference.Digest, size int64, modified time.Time) error) error {
	return s.WalkWithStrays(ctx, fn, nil)
}

// WalkWithStrays implements StrayWalker. Strays are the objects under
// objects/ that no location names and whose upload is over (no state):
// left by a commit that failed between completing its multipart upload
// and recording it, or by a deletion that failed after removing the
// location.
func (s *S3) WalkWithStrays(ctx context.Context, blob func(d reference.Digest, size int64, modified time.Time) error,
	stray func(key string, size int64, modified time.Time) error) error {
	objects, named, err := s.inventory(ctx)
	if err != nil {
		return err
	}
	seen := map[reference.Digest]bool{}
	for key, d := range named {
		if o, ok := objects[key]; ok { // else missing
			seen[d] = true
			if err := blob(d, o.size, o.modified); err != nil {
				return err
			}
		}
	}
	for key, o := range objects {
		if _, ok := named[key]; ok {
			continue
		}
		parts := strings.Split(key, "/")
		switch {
		case len(parts) == 4 && parts[0] == "blobs":
			if d, ok := blobDigest(parts[1], parts[2], parts[3]); ok && !seen[d] {
				if err := blob(d, o.size, o.modified); err != nil {
					return err
				}
			}
		case len(parts) == 2 && parts[0] == "objects" && stray != nil:
			if _, _, err := s.index.UploadState(ctx, parts[1]); !errors.Is(err, ErrUploadNotFound) {
				continue // being uploaded or committed, or unknown
			}
			if err := stray(key, o.size, o.modified); err != nil {
				return err
			}
		}
	}
	return nil
}

// s3Object is an object of a listing.
type s3Object struct {
	size     int64
	modified time.Time
}

// inventory lists the objects under blobs/ and objects/, and the keys the
// index records as blobs' locations, all relative to the prefix.
func (s *S3) inventory(ctx context.Context) (objects map[string]s3Object, named map[string]reference.Digest, err error) {
	objects = map[string]s3Object{}
	for _, dir := range []string{"blobs/", "objects/"} {
		p := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{Bucket: &s.bucket, Prefix: aws.String(s.prefix + dir)})
		for p.HasMorePages() {
			page, err := p.NextPage(ctx)
			if err != nil {
				return nil, nil, fmt.Errorf("s3: list %s: %w", dir, err)
			}
			for _, o := range page.Contents {
				objects[strings.TrimPrefix(aws.ToString(o.Key), s.prefix)] = s3Object{aws.ToInt64(o.Size), aws.ToTime(o.LastModified)}
			}
		}
	}
	named = map[string]reference.Digest{}
	err = s.index.BlobLocations(ctx, func(d reference.Digest, key string, _ int64, _ time.Time) error {
		named[key] = d
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("s3: list blob locations: %w", err)
	}
	return objects, named, nil
}

// DeleteStray implements StrayWalker: it deletes the object at key unless
// a location names it or its upload is in progress.
func (s *S3) DeleteStray(ctx context.Context, key string) error {
	id, ok := strings.CutPrefix(key, "objects/")
	if !ok || !validUploadID(id) {
		return fmt.Errorf("s3: %q is no upload's object", key)
	}
	if _, _, err := s.index.UploadState(ctx, id); !errors.Is(err, ErrUploadNotFound) {
		return fmt.Errorf("s3: object %s: its upload is in progress", key)
	}
	named := false
	err := s.index.BlobLocations(ctx, func(_ reference.Digest, k string, _ int64, _ time.Time) error {
		named = named || k == key
		return nil
	})
	if err != nil {
		return fmt.Errorf("s3: list blob locations: %w", err)
	}
	if named {
		return fmt.Errorf("s3: object %s is a blob's location", key)
	}
	return s.deleteObject(ctx, s.prefix+key)
}
