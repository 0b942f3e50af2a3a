// Package fsck checks that the blob store and the metadata agree: every
// blob the metadata records is stored (else it is missing: pulls of it
// fail), and every stored blob is recorded (else it is an orphan: space
// nothing will free). Repair removes orphans, only those older than the
// grace period and only under their digest lock after checking again that
// no record appeared, so that an upload committing meanwhile (stored, not
// yet recorded) is never touched. Missing blobs cannot be repaired here:
// they are reported, for a push of the content or a restore.
package fsck

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/berth-registry/berth/internal/blobstore"
	"github.com/berth-registry/berth/internal/digestlock"
	"github.com/berth-registry/berth/internal/metadata"
	"github.com/berth-registry/berth/internal/reference"
)

// Metadata is what the check reads of the metadata store.
type Metadata interface {
	BlobRecords(ctx context.Context, fn func(d reference.Digest, size int64) error) error
	BlobSize(ctx context.Context, d reference.Digest) (int64, error)
}

// Store is the blob store as the check uses it.
type Store interface {
	blobstore.Walker
	Stat(ctx context.Context, d reference.Digest) (int64, error)
	Delete(ctx context.Context, d reference.Digest) error
}

// Blob is a blob the check found wrong.
type Blob struct {
	Digest reference.Digest `json:"digest"`
	Size   int64            `json:"size"`
}

// Report is what a check found and did.
type Report struct {
	// Stored and Recorded count the blobs in the store and the records.
	Stored   int `json:"stored"`
	Recorded int `json:"recorded"`
	// Orphans are stored and not recorded; Young of them were left alone
	// (younger than the grace period: maybe an upload committing).
	Orphans []Blob `json:"orphans"`
	Young   int    `json:"young"`
	// Missing are recorded and not stored; SizeMismatch are both, with
	// different sizes.
	Missing      []Blob `json:"missing"`
	SizeMismatch []Blob `json:"size_mismatch"`
	// Removed are the orphans repair deleted, with their bytes.
	Removed      []Blob `json:"removed"`
	RemovedBytes int64  `json:"removed_bytes"`
	// Strays are objects that are no blob (S3: an upload completed whose
	// location was never recorded, or a blob whose deletion stopped
	// half-way), older than the grace period; repair deletes them
	// (RemovedStrays, their bytes in RemovedBytes too).
	Strays        []Stray `json:"strays,omitempty"`
	RemovedStrays []Stray `json:"removed_strays,omitempty"`
}

// Stray is an object of the store that holds no blob.
type Stray struct {
	Key  string `json:"key"`
	Size int64  `json:"size"`
}

// Options tune a check.
type Options struct {
	// Repair deletes the orphans older than Grace.
	Repair bool
	// Grace is how old an orphan must be to count (default 1h).
	Grace time.Duration
}

// Check compares the store with the metadata.
func Check(ctx context.Context, store Store, meta Metadata, locks digestlock.Locker, o Options) (*Report, error) {
	if o.Grace <= 0 {
		o.Grace = time.Hour
	}
	// The records first: a blob stored after this point and recorded
	// before the walk reaches it is recorded by then; one not yet
	// recorded is young.
	records := map[reference.Digest]int64{}
	if err := meta.BlobRecords(ctx, func(d reference.Digest, size int64) error { records[d] = size; return nil }); err != nil {
		return nil, err
	}
	r := &Report{Recorded: len(records)}
	cutoff := time.Now().Add(-o.Grace)
	seen := map[reference.Digest]bool{}
	var orphans []Blob
	blob := func(d reference.Digest, size int64, modified time.Time) error {
		r.Stored++
		seen[d] = true
		want, ok := records[d]
		switch {
		case ok && want != size:
			r.SizeMismatch = append(r.SizeMismatch, Blob{d, size})
		case ok:
		case modified.After(cutoff):
			r.Young++
		default:
			orphans = append(orphans, Blob{d, size})
		}
		return nil
	}
	var err error
	sw, hasStrays := store.(blobstore.StrayWalker)
	if hasStrays {
		err = sw.WalkWithStrays(ctx, blob, func(key string, size int64, modified time.Time) error {
			if modified.After(cutoff) {
				r.Young++
			} else {
				r.Strays = append(r.Strays, Stray{key, size})
			}
			return nil
		})
	} else {
		err = store.Walk(ctx, blob)
	}
	if err != nil {
		return nil, err
	}
	for d, size := range records {
		if seen[d] {
			continue
		}
		// Deleted by garbage collection since the records were read
		// (which removes the record before the content), or really
		// missing. The walk, not Stat, says what is stored: an S3
		// store's Stat answers from its index of locations.
		if _, err := meta.BlobSize(ctx, d); err == nil {
			r.Missing = append(r.Missing, Blob{d, size})
		}
	}
	if hasStrays && o.Repair {
		if err := removeStrays(ctx, sw, r); err != nil {
			return r, err
		}
	}
	for _, b := range orphans {
		if _, err := meta.BlobSize(ctx, b.Digest); err == nil {
			continue // recorded since
		}
		r.Orphans = append(r.Orphans, b)
		if o.Repair {
			removed, err := remove(ctx, store, meta, locks, b)
			if err != nil {
				return r, err
			}
			if removed {
				r.Removed = append(r.Removed, b)
				r.RemovedBytes += b.Size
			}
		}
	}
	return r, nil
}

// remove deletes an orphan under its digest lock, after checking once more
// that no upload or mount recorded it.
func remove(ctx context.Context, store Store, meta Metadata, locks digestlock.Locker, b Blob) (bool, error) {
	unlock, err := locks.Lock(ctx, string(b.Digest))
	if err != nil {
		return false, fmt.Errorf("lock %s: %w", b.Digest, err)
	}
	defer unlock()
	switch _, err := meta.BlobSize(ctx, b.Digest); {
	case err == nil:
		return false, nil
	case !errors.Is(err, metadata.ErrNotFound):
		return false, fmt.Errorf("look up %s: %w", b.Digest, err)
	}
	if err := store.Delete(ctx, b.Digest); err != nil {
		return false, fmt.Errorf("remove orphan %s: %w", b.Digest, err)
	}
	return true, nil
}

// removeStrays deletes the stray objects the check found (the store
// checks again that each is one).
func removeStrays(ctx context.Context, sw blobstore.StrayWalker, r *Report) error {
	for _, st := range r.Strays {
		if err := sw.DeleteStray(ctx, st.Key); err != nil {
			return fmt.Errorf("remove stray object %s: %w", st.Key, err)
		}
		r.RemovedStrays = append(r.RemovedStrays, st)
		r.RemovedBytes += st.Size
	}
	return nil
}
