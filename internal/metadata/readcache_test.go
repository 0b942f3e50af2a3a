package metadata_test

import (
	"context"
	"database/sql"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/metadata"
	"github.com/berth-registry/berth/internal/reference"
)

// cachedReplica opens a store on dsn with its read cache on, and waits
// for the cache's listener to connect.
func cachedReplica(t *testing.T, dsn string) *metadata.SQL {
	t.Helper()
	s, err := metadata.OpenPostgres(context.Background(), dsn, 4)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	s.CacheReads(dsn, 1<<20, slog.New(slog.NewTextHandler(io.Discard, nil)))
	waitFor(t, "the read cache's listener to connect", s.CacheOn)
	return s
}

func waitFor(t *testing.T, what string, ok func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !ok() {
		if time.Since(start) > 5*time.Second {
			t.Fatalf("no %s after %s", what, time.Since(start))
		}
		time.Sleep(time.Millisecond)
	}
	return time.Since(start)
}

func tagged(t *testing.T, s *metadata.SQL, repo, ref string) reference.Digest {
	t.Helper()
	m, err := s.GetManifest(context.Background(), repo, ref)
	if errors.Is(err, metadata.ErrNotFound) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	return m.Digest
}

// TestPostgresReadCache: two replicas on one database, each with its read
// cache. Replica a answers repeated manifest and blob-link reads from
// memory, sees at once what it wrote itself, and sees what b moved,
// deleted or unlinked as soon as the database's notification arrives; with
// its notification connection killed it reconnects, and meanwhile asks the
// database.
func TestPostgresReadCache(t *testing.T) {
	ctx := context.Background()
	_, dsn := openPG(t, 4)
	a, b := cachedReplica(t, dsn), cachedReplica(t, dsn)
	const repo = "cache/app"
	blob := digest(900)
	if err := b.LinkBlob(ctx, repo, blob, 10, ""); err != nil {
		t.Fatal(err)
	}
	for i, m := range []*metadata.PutManifest{manifest(repo, 1, "v", false), manifest(repo, 2, "keep", false)} {
		if err := b.PutManifest(ctx, m); err != nil {
			t.Fatal(i, err)
		}
	}

	// Repeated reads on a are answered from memory.
	before := a.CacheStats()
	for range 10 {
		if d := tagged(t, a, repo, "v"); d != digest(1) {
			t.Fatalf("v = %s, want %s", d, digest(1))
		}
		if d := tagged(t, a, repo, string(digest(2))); d != digest(2) {
			t.Fatalf("by digest = %s", d)
		}
		if size, err := a.KeepBlobLink(ctx, repo, blob, time.Now().Add(-time.Minute)); err != nil || size != 10 {
			t.Fatalf("blob link: %d, %v", size, err)
		}
	}
	after := a.CacheStats()
	if hits := after.Hits - before.Hits; hits < 27 {
		t.Fatalf("%d cache hits in 30 repeated reads, want 27 or more (misses %d)", hits, after.Misses-before.Misses)
	}

	// b moves the tag: a sees it once notified.
	if err := b.PutManifest(ctx, manifest(repo, 3, "v", false)); err != nil {
		t.Fatal(err)
	}
	lag := waitFor(t, "tag move seen by the other replica", func() bool { return tagged(t, a, repo, "v") == digest(3) })
	t.Logf("tag move on b seen on a after %s", lag)

	// a's own write: read at once.
	if err := a.PutManifest(ctx, manifest(repo, 4, "v", false)); err != nil {
		t.Fatal(err)
	}
	if d := tagged(t, a, repo, "v"); d != digest(4) {
		t.Fatalf("a's own tag move read back as %s, want %s", d, digest(4))
	}

	// a deletes a manifest it has cached by tag and by digest: gone at once.
	if err := a.PutManifest(ctx, manifest(repo, 6, "mine", false)); err != nil {
		t.Fatal(err)
	}
	tagged(t, a, repo, "mine")
	tagged(t, a, repo, string(digest(6)))
	if err := a.DeleteManifest(ctx, repo, digest(6), nil); err != nil {
		t.Fatal(err)
	}
	if d, d2 := tagged(t, a, repo, "mine"), tagged(t, a, repo, string(digest(6))); d != "" || d2 != "" {
		t.Fatalf("a's own deletion read back as %q and %q", d, d2)
	}

	// b deletes a manifest a has cached by digest and by tag, then unlinks
	// the blob a has cached.
	tagged(t, a, repo, "keep")
	if err := b.DeleteManifest(ctx, repo, digest(2), nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "manifest deletion seen by digest", func() bool { return tagged(t, a, repo, string(digest(2))) == "" })
	waitFor(t, "manifest deletion seen by tag", func() bool { return tagged(t, a, repo, "keep") == "" })
	if err := b.UnlinkBlob(ctx, repo, blob, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "blob unlink seen", func() bool {
		_, err := a.RepositoryBlob(ctx, repo, blob)
		return errors.Is(err, metadata.ErrNotFound)
	})

	// Garbage collection on b removes untagged manifests a has cached:
	// one notification for the whole transaction, not one per row.
	for i := 10; i < 14; i++ {
		m := manifest(repo, i, "", false)
		m.Tags = nil
		if err := b.PutManifest(ctx, m); err != nil {
			t.Fatal(err)
		}
		tagged(t, a, repo, string(digest(i)))
	}
	dropsBefore := a.CacheStats().Invalidations
	plan, err := b.CollectGarbage(ctx, metadata.GCRequest{Before: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Manifests) < 4 {
		t.Fatalf("garbage collection removed %d manifests, want the 4 untagged ones at least", len(plan.Manifests))
	}
	for i := 10; i < 14; i++ {
		waitFor(t, "collected manifest gone from the cache", func() bool { return tagged(t, a, repo, string(digest(i))) == "" })
	}
	if n := a.CacheStats().Invalidations - dropsBefore; n != 1 {
		t.Errorf("a applied %d invalidations for one collection of %d manifests, want 1", n, len(plan.Manifests))
	}

	// The notification connections die: the caches turn off, reconnect,
	// and a still sees b's next move.
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var killed int
	if err := db.QueryRowContext(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = current_database() AND query = 'LISTEN berth_cache'`).Scan(&killed); err != nil {
		t.Fatal(err)
	}
	if killed != 2 {
		t.Fatalf("terminated %d listeners, want 2", killed)
	}
	waitFor(t, "the cache turned off", func() bool { return !a.CacheOn() })
	waitFor(t, "the listener back", a.CacheOn)
	if err := b.PutManifest(ctx, manifest(repo, 5, "v", false)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "tag move seen after the reconnection", func() bool { return tagged(t, a, repo, "v") == digest(5) })
	waitFor(t, "a cache hit after the reconnection", func() bool {
		before := a.CacheStats().Hits
		return tagged(t, a, repo, "v") == digest(5) && a.CacheStats().Hits > before
	})
}
