package metadata

import (
	"testing"
	"time"
)

// TestReadCacheDropsFillsOlderThanAnInvalidation: a read that began before
// an invalidation must not put its (possibly older) answer in the cache
// after it; the next invalidation of another name must not drop it; and
// the byte budget empties the cache rather than grow past it.
func TestReadCacheDropsFillsOlderThanAnInvalidation(t *testing.T) {
	c := newReadCache(10*entryOverhead, time.Minute)
	c.setOn(true)
	m := &Manifest{Digest: "sha256:a", Payload: []byte("x")}

	gen := c.generation()
	c.invalidate("tv1") // a write committed while the read ran
	c.putManifest(gen, "r", "v1", m)
	if _, ok := c.manifest("r", "v1"); ok {
		t.Fatal("a fill older than an invalidation was kept")
	}

	c.putManifest(c.generation(), "r", "v1", m)
	c.putLink(c.generation(), "r", "sha256:b", 5, 7)
	c.invalidate("tother")
	if got, ok := c.manifest("r", "v1"); !ok || got.Digest != m.Digest {
		t.Fatalf("manifest after an unrelated invalidation: %v %v", got, ok)
	}
	if size, linked, ok := c.link("r", "sha256:b"); !ok || size != 5 || linked != 7 {
		t.Fatalf("link: %d %d %v", size, linked, ok)
	}
	c.invalidate("tv1")
	if _, ok := c.manifest("r", "v1"); ok {
		t.Fatal("tag invalidation did not drop the manifest cached under it")
	}
	c.invalidate("bsha256:b")
	if _, _, ok := c.link("r", "sha256:b"); ok {
		t.Fatal("link invalidation did not drop the link")
	}
	if c.bytes != 0 {
		t.Fatalf("bytes after every entry dropped: %d", c.bytes)
	}

	for i := range 25 {
		c.putLink(c.generation(), "r", string(rune('a'+i)), 1, 1)
	}
	if c.bytes > c.maxBytes {
		t.Fatalf("cache grew to %d bytes, budget %d", c.bytes, c.maxBytes)
	}

	// Refills of the same entries (after the TTL, or concurrent misses)
	// take no more room.
	c.reset()
	for range 100 {
		c.putManifest(c.generation(), "r", "v1", m)
		c.putLink(c.generation(), "r", "sha256:b", 5, 7)
	}
	if want := int64(len(m.Payload)) + 2*entryOverhead; c.bytes != want {
		t.Fatalf("bytes after 100 refills of two entries: %d, want %d", c.bytes, want)
	}

	c.setOn(false)
	c.putLink(c.generation(), "r", "sha256:c", 1, 1)
	if _, _, ok := c.link("r", "sha256:c"); ok {
		t.Fatal("a cache that is off answered")
	}
}

// TestStatementsKeepsFunctionBodies: a migration is split at semicolons,
// but not inside a dollar-quoted function body.
func TestStatementsKeepsFunctionBodies(t *testing.T) {
	got := statements("CREATE FUNCTION f() AS $$ BEGIN x; y; END $$; CREATE TRIGGER t; ")
	if len(got) != 3 || got[0] != "CREATE FUNCTION f() AS $$ BEGIN x; y; END $$" || got[1] != " CREATE TRIGGER t" {
		t.Fatalf("statements: %q", got)
	}
}
