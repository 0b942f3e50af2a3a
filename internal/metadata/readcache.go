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
	gen       uint64            // bumped by every invalidation; fills from older reads are dropped
	manifests shelf[*Manifest]  // by reference (tag or digest)
	links     shelf[cachedLink] // by blob digest
	bytes     int64

	hits, misses, drops atomic.Uint64
}

type cachedLink struct {
	size, linked int64 // linked: unix nanoseconds, a lower bound of the link's time
}

// shelf holds one kind of answer, by key (a tag name or a digest, what
// notifications name) and then repository, each with its cost in the
// byte budget and its expiry. The cache's mutex guards it.
type shelf[V any] map[string]map[string]shelved[V]

type shelved[V any] struct {
	v       V
	cost    int64
	expires time.Time
}

// forget drops key in every repository and returns the bytes freed.
func (sh shelf[V]) forget(key string) (freed int64) {
	for _, e := range sh[key] {
		freed += e.cost
	}
	delete(sh, key)
	return freed
}

// entryOverhead is what an entry is counted for besides a manifest's
// payload, so that the byte budget also bounds many small entries.
const entryOverhead = 256

func newReadCache(maxBytes int64, ttl time.Duration) *readCache {
	c := &readCache{maxBytes: maxBytes, ttl: ttl, manifests: shelf[*Manifest]{}, links: shelf[cachedLink]{}}
	c.reset()
	return c
}

// reset drops every entry; the caller holds mu (or owns c).
func (c *readCache) reset() {
	c.empty()
	c.gen++
}

// empty empties both shelves; the caller holds mu.
func (c *readCache) empty() {
	clear(c.manifests)
	clear(c.links)
	c.bytes = 0
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

// lookup returns the answer for (key, repo) on one of c's shelves, if it
// is cached and fresh and the cache is on, and counts the hit or miss.
func lookup[V any](c *readCache, sh shelf[V], key, repo string) (V, bool) {
	c.mu.Lock()
	e, ok := sh[key][repo]
	on := c.on
	c.mu.Unlock()
	if !on || !ok || time.Now().After(e.expires) {
		c.misses.Add(1)
		var zero V
		return zero, false
	}
	c.hits.Add(1)
	return e.v, true
}

// store caches v as the answer for (key, repo) on one of c's shelves,
// unless an invalidation came after gen was taken; a refill gives the
// old entry's place back first.
func store[V any](c *readCache, sh shelf[V], gen uint64, key, repo string, v V, cost int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.on || gen != c.gen {
		return
	}
	if old, ok := sh[key][repo]; ok {
		c.bytes -= old.cost
	}
	if !c.room(cost) {
		return
	}
	byRepo := sh[key] // after room, which may have emptied the shelves
	if byRepo == nil {
		byRepo = map[string]shelved[V]{}
		sh[key] = byRepo
	}
	byRepo[repo] = shelved[V]{v: v, cost: cost, expires: time.Now().Add(c.ttl)}
}

// manifest returns a cached manifest (a copy whose Payload the caller must
// not change).
func (c *readCache) manifest(repo, ref string) (*Manifest, bool) {
	m, ok := lookup(c, c.manifests, ref, repo)
	if !ok {
		return nil, false
	}
	cp := *m
	return &cp, true
}

// putManifest caches m as the answer for (repo, ref), unless an
// invalidation came after gen was taken.
func (c *readCache) putManifest(gen uint64, repo, ref string, m *Manifest) {
	cp := *m
	store(c, c.manifests, gen, ref, repo, &cp, int64(len(m.Payload))+entryOverhead)
}

// link returns a cached blob link.
func (c *readCache) link(repo, digest string) (size, linked int64, ok bool) {
	l, ok := lookup(c, c.links, digest, repo)
	return l.size, l.linked, ok
}

// putLink caches a blob link, unless an invalidation came after gen was
// taken.
func (c *readCache) putLink(gen uint64, repo, digest string, size, linked int64) {
	store(c, c.links, gen, digest, repo, cachedLink{size: size, linked: linked}, entryOverhead)
}

// room accounts n more bytes, emptying the cache first when they would
// not fit (a full cache is rare: the budget is megabytes of manifests);
// false when n alone is over the budget. The caller holds mu.
func (c *readCache) room(n int64) bool {
	if n > c.maxBytes {
		return false
	}
	if c.bytes+n > c.maxBytes {
		c.empty()
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
		c.bytes -= c.manifests.forget(key)
	case dropLink:
		c.bytes -= c.links.forget(key)
	default:
		c.reset()
	}
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
