package metadata_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/metadata"
)

// TestKeepBlobLinkRacingTheSweep runs the refresh of an old unused link and
// the collector's sweep at the same moment, many times, on SQLite and
// PostgreSQL: whichever commits first, the refresh reports the link
// present exactly when the link survives (a refresh after the sweep reports
// it gone and does not make it again).
func TestKeepBlobLinkRacingTheSweep(t *testing.T) {
	t.Run("SQLite", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "berth.db")
		s, err := metadata.OpenSQLite(context.Background(), path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		raw, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { raw.Close() })
		raceKeepAndSweep(t, s, raw, 60, func(q string) string { return q })
	})
	t.Run("PostgreSQL", func(t *testing.T) {
		s, dsn := openPG(t, 10)
		raw, err := sql.Open("pgx", dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { raw.Close() })
		// Fewer rounds: one sweep takes some 300 ms on PostgreSQL.
		raceKeepAndSweep(t, s, raw, 15, func(q string) string {
			for n := 1; strings.Contains(q, "?"); n++ {
				q = strings.Replace(q, "?", fmt.Sprintf("$%d", n), 1)
			}
			return q
		})
	})
}

// raceKeepAndSweep runs the race rounds times; q rewrites the '?'
// placeholders of raw's queries.
func raceKeepAndSweep(t *testing.T, s *metadata.SQL, raw *sql.DB, rounds int, q func(string) string) {
	ctx := context.Background()
	kept, swept := 0, 0
	for i := range rounds {
		d := digest(1000 + i)
		if err := s.LinkBlob(ctx, "r", d, 1, ""); err != nil {
			t.Fatal(err)
		}
		old := time.Now().Add(-2 * time.Hour).UnixNano()
		for _, stmt := range []string{`UPDATE blobs SET created_at = ? WHERE digest = ?`, `UPDATE repository_blobs SET created_at = ? WHERE digest = ?`} {
			if _, err := raw.ExecContext(ctx, q(stmt), old, string(d)); err != nil {
				t.Fatal(err)
			}
		}
		var keepErr, gcErr error
		var wg sync.WaitGroup
		start := make(chan struct{})
		wg.Add(2)
		go func() {
			defer wg.Done()
			<-start
			_, keepErr = s.KeepBlobLink(ctx, "r", d, time.Now().Add(-time.Minute))
		}()
		go func() {
			defer wg.Done()
			<-start
			_, gcErr = s.CollectGarbage(ctx, metadata.GCRequest{Before: time.Now().Add(-time.Hour)})
		}()
		within(t, time.Minute, "refresh and sweep", func() { close(start); wg.Wait() })
		if gcErr != nil {
			t.Fatal(gcErr)
		}
		_, linkErr := s.RepositoryBlob(ctx, "r", d)
		switch {
		case keepErr == nil && linkErr == nil:
			kept++
		case errors.Is(keepErr, metadata.ErrNotFound) && errors.Is(linkErr, metadata.ErrNotFound):
			swept++
		default:
			t.Fatalf("round %d: the refresh returned %v, and then the link lookup %v", i, keepErr, linkErr)
		}
	}
	t.Logf("%d rounds: the refresh committed first %d times, the sweep %d times", rounds, kept, swept)
}
