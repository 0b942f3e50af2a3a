package metadata

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// readCache keeps the answers of the two hottest reads, a manifest by
// repository and reference (GET and HEAD of a manifest) and a blob's link
// into a repository (blob HEAD), in memory, so that a replica on a shared
// database answers them without a round trip.
//
// It caches only what exists: a miss always asks the database, so a blob
// or manifest pushed through another replica is seen at once. What can
// change under a cached answer (a tag moved or deleted, a manifest
// deleted, a blob unlinked) is dropped when the database says so: triggers
// notify a channel that the replica LISTENs to (pgListener), and the
// writes of this process drop what they change themselves on commit, so
// that a client reads its own writes. The cache answers only while the
// listener is connected; entries live at most ttl, which bounds the
// staleness should the notification connection hang without an error.
//
// Keys in a notification name no repository (a tag name or a digest), so
// an invalidation drops that name in every repository: cheap to reload,
// and no lookup inside the trigger.
type readCache struct {
	maxBytes int64
	ttl      time.Duration

	mu        sync.Mutex
	on        bool
	gen       uint64                               // bumped by every invalidation; fills from older reads are dropped
	manifests map[string]map[string]cachedManifest // reference -> repository -> manifest
	links     map[string]map[string]cachedLink     // digest -> repository -> link
	bytes     int64

	hits, misses, drops atomic.Uint64
}

type cachedManifest struct {
	m       *Manifest
	expires time.Time
}

type cachedLink struct {
	size, linked int64 // linked: unix nanoseconds, a lower bound of the link's time
	expires      time.Time
}

// entryOverhead is what an entry is counted for besides a manifest's
// payload, so that the byte budget also bounds many small entries.
const entryOverhead = 256

func newReadCache(maxBytes int64, ttl time.Duration) *readCache {
	c := &readCache{maxBytes: maxBytes, ttl: ttl}
	c.reset()
	return c
}

// reset drops every entry; the caller holds mu (or owns c).
func (c *readCache) reset() {
	c.manifests = map[string]map[string]cachedManifest{}
	c.links = map[string]map[string]cachedLink{}
	c.bytes = 0
	c.gen++
}

// setOn turns answering on or off, dropping every entry either way: what
// was cached before the listener (re)connected may have missed
// notifications.
func (c *readCache) setOn(on bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.on = on
	c.reset()
}

// generation returns the value to pass to a fill of what is read next.
func (c *readCache) generation() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen
}

// manifest returns a cached manifest (a copy whose Payload the caller must
// not change).
func (c *readCache) manifest(repo, ref string) (*Manifest, bool) {
	c.mu.Lock()
	e, ok := c.manifests[ref][repo]
	on := c.on
	c.mu.Unlock()
	if !on || !ok || time.Now().After(e.expires) {
		c.misses.Add(1)
		return nil, false
	}
	c.hits.Add(1)
	m := *e.m
	return &m, true
}

// putManifest caches m as the answer for (repo, ref), unless an
// invalidation came after gen was taken.
func (c *readCache) putManifest(gen uint64, repo, ref string, m *Manifest) {
	cp := *m
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.on || gen != c.gen {
		return
	}
	if old, ok := c.manifests[ref][repo]; ok { // a refill: its place is given back first
		c.bytes -= int64(len(old.m.Payload)) + entryOverhead
	}
	if !c.room(int64(len(m.Payload)) + entryOverhead) {
		return
	}
	byRepo := c.manifests[ref]
	if byRepo == nil {
		byRepo = map[string]cachedManifest{}
		c.manifests[ref] = byRepo
	}
	byRepo[repo] = cachedManifest{m: &cp, expires: time.Now().Add(c.ttl)}
}

// link returns a cached blob link.
func (c *readCache) link(repo, digest string) (size, linked int64, ok bool) {
	c.mu.Lock()
	e, ok := c.links[digest][repo]
	on := c.on
	c.mu.Unlock()
	if !on || !ok || time.Now().After(e.expires) {
		c.misses.Add(1)
		return 0, 0, false
	}
	c.hits.Add(1)
	return e.size, e.linked, true
}

// putLink caches a blob link, unless an invalidation came after gen was
// taken.
func (c *readCache) putLink(gen uint64, repo, digest string, size, linked int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.on || gen != c.gen {
		return
	}
	if _, ok := c.links[digest][repo]; ok {
		c.bytes -= entryOverhead
	}
	if !c.room(entryOverhead) {
		return
	}
	byRepo := c.links[digest]
	if byRepo == nil {
		byRepo = map[string]cachedLink{}
		c.links[digest] = byRepo
	}
	byRepo[repo] = cachedLink{size: size, linked: linked, expires: time.Now().Add(c.ttl)}
}

// room accounts n more bytes, emptying the cache first when they would
// not fit (a full cache is rare: the budget is megabytes of manifests);
// false when n alone is over the budget. The caller holds mu.
func (c *readCache) room(n int64) bool {
	if n > c.maxBytes {
		return false
	}
	if c.bytes+n > c.maxBytes {
		c.manifests = map[string]map[string]cachedManifest{}
		c.links = map[string]map[string]cachedLink{}
		c.bytes = 0
	}
	c.bytes += n
	return true
}

// Kinds of invalidation, the first byte of a notification's payload
// (see the cache triggers in the schema).
const (
	dropTag      = 't' // a tag name: moved or deleted
	dropManifest = 'm' // a manifest digest: deleted
	dropLink     = 'b' // a blob digest: unlinked from a repository
	dropAll      = '*' // anything: the whole cache
)

// invalidate drops what a notification (or a local write) names: a kind
// byte followed by a tag name or digest.
func (c *readCache) invalidate(payload string) {
	c.drops.Add(1)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	if payload == "" {
		return
	}
	key := payload[1:]
	switch payload[0] {
	case dropTag, dropManifest:
		c.forgetManifests(key)
	case dropLink:
		c.bytes -= int64(len(c.links[key])) * entryOverhead
		delete(c.links, key)
	default:
		c.reset()
	}
}

// forgetManifests drops the cached manifests under a reference; the byte
// count is given back. The caller holds mu.
func (c *readCache) forgetManifests(ref string) {
	for _, e := range c.manifests[ref] {
		c.bytes -= int64(len(e.m.Payload)) + entryOverhead
	}
	delete(c.manifests, ref)
}

// CacheStats counts the read cache's answers.
type CacheStats struct {
	Hits, Misses, Invalidations uint64
}

// CacheStats returns the read cache's counters; zero without a cache
// (SQLite, or PostgreSQL with the cache off).
func (s *SQL) CacheStats() CacheStats {
	if s.cache == nil {
		return CacheStats{}
	}
	return CacheStats{Hits: s.cache.hits.Load(), Misses: s.cache.misses.Load(), Invalidations: s.cache.drops.Load()}
}

// drop is what a write of this process does once it is over, committed or
// not: it drops from the read cache what the write may have changed, so
// that the client that made it reads it next, without waiting for the
// database's notification (which comes too, and drops it again).
func (s *SQL) drop(kind byte, key string) {
	if s.cache != nil {
		s.cache.invalidate(string(kind) + key)
	}
}

// CacheOn reports whether the read cache answers: it is configured and its
// listener is connected.
func (s *SQL) CacheOn() bool {
	if s.cache == nil {
		return false
	}
	s.cache.mu.Lock()
	defer s.cache.mu.Unlock()
	return s.cache.on
}

// bulkChange marks tx as one that may change many cached rows (PostgreSQL):
// the cache triggers stay silent in it, and one '*' notification, sent at
// its commit, empties every replica's cache instead of a notification per
// row (a garbage collection may delete hundreds of thousands).
func (s *SQL) bulkChange(ctx context.Context, tx *sql.Tx) error {
	if s.dialect.name != "postgres" {
		return nil
	}
	if _, err := tx.ExecContext(ctx, `SELECT set_config('berth.cache_bulk', 'on', true), pg_notify('`+cacheChannel+`', '*')`); err != nil {
		return fmt.Errorf("bulk change: %w", err)
	}
	return nil
}
