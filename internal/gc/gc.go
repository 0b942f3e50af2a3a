// Package gc collects garbage while the registry serves: manifests that no
// tag (or index, or referrer subject) keeps alive, blob links no manifest
// uses and blobs no repository holds, each only once older than a grace
// period. Reference and deletion exclude each other: the metadata sweep is
// one transaction, serialized with manifest pushes, and each blob is
// deleted under its digest lock, which uploads and mounts take too.
package gc

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/berth-registry/berth/internal/blobstore"
	"github.com/berth-registry/berth/internal/digestlock"
	"github.com/berth-registry/berth/internal/metadata"
	"github.com/berth-registry/berth/internal/reference"
)

// Report is what a run removed (or, dry, would remove).
type Report struct {
	DryRun    bool                  `json:"dry_run"`
	Manifests []metadata.GCManifest `json:"manifests"`
	Unlinked  int                   `json:"unlinked_blob_links"`
	Blobs     int                   `json:"blobs"`
	Bytes     int64                 `json:"bytes"`
	Duration  time.Duration         `json:"duration_ns"`
}

// Collector runs collections.
type Collector struct {
	meta  metadata.Store
	blobs blobstore.Store
	locks *digestlock.Set
	grace time.Duration
	log   *slog.Logger
	now   func() time.Time

	// beforeBlobs, when set, runs between the metadata sweep and the blob
	// deletions: tests force interleavings with it.
	beforeBlobs func()
}

// New returns a collector; locks must be the set the registry service uses.
func New(meta metadata.Store, blobs blobstore.Store, locks *digestlock.Set, grace time.Duration, log *slog.Logger) *Collector {
	return &Collector{meta: meta, blobs: blobs, locks: locks, grace: grace, log: log, now: time.Now}
}

// Run collects once. With dryRun nothing changes and the report says what
// a real run would remove now.
func (c *Collector) Run(ctx context.Context, dryRun bool) (*Report, error) {
	start := c.now()
	cutoff := start.Add(-c.grace)
	plan, err := c.meta.CollectGarbage(ctx, cutoff, dryRun)
	if err != nil {
		return nil, fmt.Errorf("gc: sweep metadata: %w", err)
	}
	r := &Report{DryRun: dryRun, Manifests: plan.Manifests, Unlinked: plan.Unlinked}
	if r.Manifests == nil {
		r.Manifests = []metadata.GCManifest{}
	}
	if c.beforeBlobs != nil {
		c.beforeBlobs()
	}
	for _, b := range plan.Blobs {
		if dryRun {
			r.Blobs++
			r.Bytes += b.Size
			continue
		}
		freed, err := c.deleteBlob(ctx, b.Digest, cutoff)
		if err != nil {
			return r, err
		}
		if freed >= 0 {
			r.Blobs++
			r.Bytes += freed
		}
	}
	r.Duration = c.now().Sub(start)
	c.log.InfoContext(ctx, "garbage collection", "dry_run", dryRun, "manifests", len(r.Manifests), "blob_links", r.Unlinked,
		"blobs", r.Blobs, "bytes", r.Bytes, "duration", r.Duration)
	return r, nil
}

// deleteBlob deletes one blob if it is still unheld; it returns the bytes
// freed, or -1 when the blob was linked again meanwhile.
func (c *Collector) deleteBlob(ctx context.Context, d reference.Digest, cutoff time.Time) (int64, error) {
	unlock := c.locks.Lock(string(d))
	defer unlock()
	deleted, err := c.meta.DeleteBlobRecord(ctx, d, cutoff)
	if err != nil {
		return 0, fmt.Errorf("gc: %w", err)
	}
	if !deleted {
		return -1, nil
	}
	size, err := c.blobs.Stat(ctx, d)
	if err != nil {
		size = 0 // already gone from storage
	}
	if err := c.blobs.Delete(ctx, d); err != nil {
		return 0, fmt.Errorf("gc: delete blob %s: %w", d, err)
	}
	return size, nil
}

// Schedule runs a collection every interval until ctx ends.
func (c *Collector) Schedule(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := c.Run(ctx, false); err != nil && ctx.Err() == nil {
				c.log.Error("garbage collection failed", "err", err)
			}
		}
	}
}
