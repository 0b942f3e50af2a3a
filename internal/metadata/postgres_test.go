package metadata_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/metadata"
	"github.com/berth-registry/berth/internal/reference"
	"github.com/berth-registry/berth/internal/testserver"
)

func TestMain(m *testing.M) { os.Exit(testserver.Main(m)) }

func openPG(t *testing.T, conns int) (*metadata.SQL, string) {
	t.Helper()
	dsn := testserver.PostgresDSN(t)
	s, err := metadata.OpenPostgres(context.Background(), dsn, conns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, dsn
}

func digest(i int) reference.Digest { return reference.Digest(fmt.Sprintf("sha256:%064x", i)) }

func manifest(repo string, i int, tag string, protect bool) *metadata.PutManifest {
	m := &metadata.PutManifest{Manifest: metadata.Manifest{Repository: repo, Digest: digest(i),
		MediaType: "application/vnd.oci.image.manifest.v1+json", Payload: []byte(fmt.Sprint(i))}, Tags: []string{tag}}
	if protect {
		m.Protect = []string{tag}
	}
	return m
}

// within fails if fn has not returned after d: the bugs these tests guard
// against hang instead of failing, and a hung store cannot be closed, so
// it panics (ending the test binary with every goroutine's stack).
func within(t *testing.T, d time.Duration, what string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { fn(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
		panic(fmt.Sprintf("%s: %s did not finish within %s", t.Name(), what, d))
	}
}

// TestPostgresConcurrentFirstWrites: more first writes than pool
// connections at once, on a fresh store; they once deadlocked on a shared
// prepared-statement cache that needed a free connection to prepare.
func TestPostgresConcurrentFirstWrites(t *testing.T) {
	s, _ := openPG(t, 20)
	within(t, 60*time.Second, "40 concurrent first LinkBlobs with 20 connections", func() {
		var wg sync.WaitGroup
		for i := range 40 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := s.LinkBlob(context.Background(), fmt.Sprintf("r%d", i%7), digest(i), 1, ""); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
	})
}

// TestPostgresSweepWithQueuedWrites: a collection holding the sweep lock
// while writes queue for it, every connection taken.
func TestPostgresSweepWithQueuedWrites(t *testing.T) {
	s, dsn := openPG(t, 20)
	ctx := context.Background()
	// Widen the window: a lock taken elsewhere keeps the sweep waiting
	// after it holds the sweep lock, while 25 writes queue behind it.
	other, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	otx, err := other.Begin()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := otx.Exec(`LOCK TABLE tags IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	gcDone := make(chan error, 1)
	go func() { _, err := s.CollectGarbage(ctx, metadata.GCRequest{Before: time.Now()}); gcDone <- err }()
	time.Sleep(300 * time.Millisecond)
	var wg sync.WaitGroup
	for i := range 25 {
		wg.Add(1)
		go func() { defer wg.Done(); _ = s.LinkBlob(ctx, "r", digest(i), 1, "") }()
	}
	time.Sleep(500 * time.Millisecond)
	_ = otx.Rollback()
	within(t, 60*time.Second, "the collection with queued writes", func() {
		if err := <-gcDone; err != nil {
			t.Error(err)
		}
		wg.Wait()
	})
}

// TestPostgresImmutableTagRace: two first pushes of a protected tag at once
// to different manifests; exactly one may win.
func TestPostgresImmutableTagRace(t *testing.T) {
	s, _ := openPG(t, 20)
	ctx := context.Background()
	for trial := range 30 {
		repo := fmt.Sprintf("r%d", trial)
		if err := s.PutManifest(ctx, manifest(repo, 5, "other", false)); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for g := range 2 {
			wg.Add(1)
			go func() { defer wg.Done(); errs[g] = s.PutManifest(ctx, manifest(repo, 10+g, "v1", true)) }()
		}
		wg.Wait()
		ok := 0
		for _, err := range errs {
			switch {
			case err == nil:
				ok++
			case !errors.Is(err, metadata.ErrTagImmutable):
				t.Fatalf("trial %d: %v", trial, err)
			}
		}
		if ok != 1 {
			m, _ := s.GetManifest(ctx, repo, "v1")
			t.Fatalf("trial %d: %d of 2 pushes of immutable v1 succeeded (errors %v); v1 -> %v", trial, ok, errs, m)
		}
	}
}
