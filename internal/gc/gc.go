// Package gc collects garbage while the registry serves: first the tags
// retention policies delete, then manifests that no tag (or index, or
// referrer subject) keeps alive, blob links no manifest uses and blobs no
// repository holds, each only once older than a grace period. Reference and deletion exclude each other: the metadata sweep is
// one transaction, serialized with manifest pushes, and each blob is
// deleted under its digest lock, which uploads and mounts take too.
package gc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/berth-registry/berth/internal/blobstore"
	"github.com/berth-registry/berth/internal/digestlock"
	"github.com/berth-registry/berth/internal/metadata"
	"github.com/berth-registry/berth/internal/reference"
	"github.com/berth-registry/berth/internal/retention"
)

// Report is what a run removed (or, dry, would remove).
type Report struct {
	DryRun bool `json:"dry_run"`
	// Tags are the tags retention policies deleted.
	Tags      []metadata.TagDeletion `json:"tags"`
	Manifests []metadata.GCManifest  `json:"manifests"`
	Unlinked  int                    `json:"unlinked_blob_links"`
	Blobs     int                    `json:"blobs"`
	Bytes     int64                  `json:"bytes"`
	Duration  time.Duration          `json:"duration_ns"`
}

// Covering returns the report's tag deletions and manifests in the
// repositories a policy's pattern covers: what that policy alone would
// delete, from a dry run with it as the candidate.
func (r *Report) Covering(repos string) ([]metadata.TagDeletion, []metadata.GCManifest) {
	tags, manifests := []metadata.TagDeletion{}, []metadata.GCManifest{}
	for _, t := range r.Tags {
		if reference.Covers(repos, t.Repository) {
			tags = append(tags, t)
		}
	}
	for _, m := range r.Manifests {
		if reference.Covers(repos, m.Repository) {
			manifests = append(manifests, m)
		}
	}
	return tags, manifests
}

// Totals are counters of what real runs removed since the process
// started, for metrics.
type Totals struct {
	Runs, Tags, Manifests, BlobLinks, Blobs, Bytes atomic.Int64
	// Failures counts runs (not dry runs) that failed; a run refused
	// because another is going on is no failure.
	Failures atomic.Int64
}

func (t *Totals) add(r *Report) {
	t.Runs.Add(1)
	t.Tags.Add(int64(len(r.Tags)))
	t.Manifests.Add(int64(len(r.Manifests)))
	t.BlobLinks.Add(int64(r.Unlinked))
	t.Blobs.Add(int64(r.Blobs))
	t.Bytes.Add(r.Bytes)
}

// Totals returns the collector's counters.
func (c *Collector) Totals() *Totals { return &c.totals }

// Collector runs collections.
type Collector struct {
	meta  metadata.Store
	blobs blobstore.Store
	locks digestlock.Locker
	grace time.Duration
	log   *slog.Logger
	now   func() time.Time

	totals Totals
	// runs serializes collections.
	runs sync.Mutex

	retention  *retention.Planner
	flushPulls func(context.Context) error
	// tryRun, when set, takes a lock that keeps collections of other
	// processes (replicas) from running at the same time.
	tryRun func(ctx context.Context) (unlock func(), ok bool, err error)
	// onRun is called after each real run (OnRun).
	onRun func(context.Context, *Report)

	// afterPlan, when set, runs between retention's decisions and the
	// metadata sweep that applies them: tests force interleavings with it.
	afterPlan func()
	// beforeBlobs, when set, runs between the metadata sweep and the blob
	// deletions: tests force interleavings with it.
	beforeBlobs func()
}

// New returns a collector; locks must be the set the registry service uses.
func New(meta metadata.Store, blobs blobstore.Store, locks digestlock.Locker, grace time.Duration, log *slog.Logger) *Collector {
	return &Collector{meta: meta, blobs: blobs, locks: locks, grace: grace, log: log, now: time.Now}
}

// UseRetention makes each run apply the retention policies first;
// flushPulls writes the pulls noted in memory, which the policies read.
func (c *Collector) UseRetention(p *retention.Planner, flushPulls func(context.Context) error) {
	c.retention, c.flushPulls = p, flushPulls
}

// ErrBusy is returned when another replica is collecting.
var ErrBusy = errors.New("gc: another replica is collecting garbage now")

// UseRunLock makes runs take a lock shared with other replicas first: a
// run finding it taken returns ErrBusy.
// OnRun sets what is called after each collection that was not a dry
// run, with its report (the webhook event of a run).
func (c *Collector) OnRun(fn func(context.Context, *Report)) { c.onRun = fn }

func (c *Collector) UseRunLock(tryRun func(ctx context.Context) (unlock func(), ok bool, err error)) {
	c.tryRun = tryRun
}

// Options of one run.
type Options struct {
	// DryRun changes nothing: the report says what a real run would
	// remove now.
	DryRun bool
	// Candidate evaluates this retention policy in place of the stored one
	// for its pattern; only with DryRun. The run is then limited to the
	// repositories the candidate covers: its cost is that of what they
	// hold, not of the whole registry.
	Candidate *metadata.RetentionPolicy
}

// Run collects once. With dryRun nothing changes and the report says what
// a real run would remove now.
func (c *Collector) Run(ctx context.Context, dryRun bool) (*Report, error) {
	return c.RunWith(ctx, Options{DryRun: dryRun})
}

// RunWith collects once with options.
func (c *Collector) RunWith(ctx context.Context, o Options) (*Report, error) {
	r, err := c.runWith(ctx, o)
	if err != nil && !o.DryRun && !errors.Is(err, ErrBusy) {
		c.totals.Failures.Add(1)
	}
	return r, err
}

func (c *Collector) runWith(ctx context.Context, o Options) (*Report, error) {
	if o.Candidate != nil && !o.DryRun {
		return nil, fmt.Errorf("gc: a candidate retention policy needs a dry run")
	}
	c.runs.Lock()
	defer c.runs.Unlock()
	if c.tryRun != nil && !o.DryRun {
		unlock, ok, err := c.tryRun(ctx)
		if err != nil {
			return nil, fmt.Errorf("gc: %w", err)
		}
		if !ok {
			return nil, ErrBusy
		}
		defer unlock()
	}
	dryRun := o.DryRun
	start := c.now()
	cutoff := start.Add(-c.grace)
	req := metadata.GCRequest{Before: cutoff, DryRun: dryRun}
	if o.Candidate != nil {
		req.Scope = o.Candidate.Repositories
	}
	if c.retention != nil {
		if c.flushPulls != nil {
			if err := c.flushPulls(ctx); err != nil {
				return nil, fmt.Errorf("gc: %w", err)
			}
		}
		d, err := c.retention.Plan(ctx, start, c.grace, o.Candidate)
		if err != nil {
			return nil, fmt.Errorf("gc: %w", err)
		}
		req.DeleteTags, req.UntaggedSince = d.DeleteTags, d.UntaggedSince
	}
	if c.afterPlan != nil {
		c.afterPlan()
	}
	plan, err := c.meta.CollectGarbage(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("gc: sweep metadata: %w", err)
	}
	r := &Report{DryRun: dryRun, Tags: plan.Tags, Manifests: plan.Manifests, Unlinked: plan.Unlinked}
	if r.Manifests == nil {
		r.Manifests = []metadata.GCManifest{}
	}
	if r.Tags == nil {
		r.Tags = []metadata.TagDeletion{}
	}
	if c.beforeBlobs != nil {
		c.beforeBlobs()
	}
	for batch := range slices.Chunk(plan.Blobs, blobBatch) {
		if dryRun {
			r.Blobs += len(batch)
			for _, b := range batch {
				r.Bytes += b.Size
			}
			continue
		}
		n, freed, err := c.deleteBlobs(ctx, batch, cutoff)
		r.Blobs += n
		r.Bytes += freed
		if err != nil {
			return r, err
		}
	}
	r.Duration = c.now().Sub(start)
	if !dryRun {
		c.totals.add(r)
		if c.onRun != nil {
			c.onRun(ctx, r)
		}
	}
	c.log.InfoContext(ctx, "garbage collection", "dry_run", dryRun, "retention_tags", len(r.Tags), "manifests", len(r.Manifests), "blob_links", r.Unlinked,
		"blobs", r.Blobs, "bytes", r.Bytes, "duration", r.Duration)
	return r, nil
}

// blobBatch is how many blobs one transaction deletes: one fsync for the
// batch instead of one per blob, while uploads of those digests wait.
const blobBatch = 128

// deleteBlobs deletes those of the blobs that are still unheld: their
// records in one transaction, then their content, all under their digest
// locks. It returns how many it deleted and the bytes freed.
func (c *Collector) deleteBlobs(ctx context.Context, batch []metadata.GCBlob, cutoff time.Time) (int, int64, error) {
	keys := make([]string, len(batch))
	ds := make([]reference.Digest, len(batch))
	for i, b := range batch {
		keys[i], ds[i] = string(b.Digest), b.Digest
	}
	unlock, err := c.locks.LockAll(ctx, keys)
	if err != nil {
		return 0, 0, fmt.Errorf("gc: %w", err)
	}
	defer unlock()
	deleted, err := c.meta.DeleteBlobRecords(ctx, ds, cutoff)
	if err != nil {
		return 0, 0, fmt.Errorf("gc: %w", err)
	}
	// The records are gone: delete every blob's content even when one
	// fails, since a later run no longer lists them.
	var freed int64
	var errs []error
	n := 0
	for _, d := range deleted {
		size, err := c.blobs.Stat(ctx, d)
		if err != nil {
			size = 0 // already gone from storage
		}
		if err := c.blobs.Delete(ctx, d); err != nil {
			c.log.ErrorContext(ctx, "garbage collection: blob content left behind", "digest", d, "err", err)
			errs = append(errs, fmt.Errorf("gc: delete blob %s: %w", d, err))
			continue
		}
		n++
		freed += size
	}
	return n, freed, errors.Join(errs...)
}

// RunScheduled runs a collection and logs its failure; a run skipped
// because another replica is collecting is no failure.
func (c *Collector) RunScheduled(ctx context.Context) {
	_, err := c.Run(ctx, false)
	switch {
	case errors.Is(err, ErrBusy):
		c.log.Info("garbage collection skipped: another replica is collecting")
	case err != nil && ctx.Err() == nil:
		c.log.Error("garbage collection failed", "err", err)
	}
}
