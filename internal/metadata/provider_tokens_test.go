package metadata_test

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/metadata"
)

// TestProviderTokenLease (issue 16): one replica at a time refreshes a
// person's provider session. On SQLite and PostgreSQL: no token is
// ErrNotFound; a token saved fresh is not claimed within the recheck
// (ErrBusy); of eight concurrent claims exactly one wins and returns the
// token; a released lease can be claimed again; a save that is not fresh
// keeps the time of the last good answer; no bearer secret is saved for a
// disabled or missing person; deleting the user deletes the token.
func TestProviderTokenLease(t *testing.T) {
	sqlite, err := metadata.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "berth.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sqlite.Close() })
	pg, _ := openPG(t, 4)
	for name, s := range map[string]*metadata.SQL{"sqlite": sqlite, "postgres": pg} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			if err := s.CreateUser(ctx, metadata.User{Name: "alice", Source: metadata.SourceOIDC, Subject: "sub-1"}); err != nil {
				t.Fatal(err)
			}
			if u, err := s.GetUser(ctx, "alice"); err != nil || u.Subject != "sub-1" {
				t.Fatalf("GetUser: %+v %v, want subject sub-1", u, err)
			}
			claim := func(freshAfter time.Time) (string, error) {
				now := time.Now()
				return s.ClaimProviderToken(ctx, "alice", now, now.Add(time.Minute), freshAfter)
			}
			if _, err := claim(time.Now()); !errors.Is(err, metadata.ErrNotFound) {
				t.Fatalf("claim without a token: %v, want ErrNotFound", err)
			}
			if err := s.SaveProviderToken(ctx, "alice", "sealed-1", true); err != nil {
				t.Fatal(err)
			}
			if _, err := claim(time.Now().Add(-time.Minute)); !errors.Is(err, metadata.ErrBusy) {
				t.Errorf("claim of a token saved within the recheck: %v, want ErrBusy", err)
			}
			var wg sync.WaitGroup
			var mu sync.Mutex
			won, busy := 0, 0
			for range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					got, err := claim(time.Now().Add(time.Minute))
					mu.Lock()
					defer mu.Unlock()
					switch {
					case err == nil && got == "sealed-1":
						won++
					case errors.Is(err, metadata.ErrBusy):
						busy++
					default:
						t.Errorf("concurrent claim: %q %v", got, err)
					}
				}()
			}
			wg.Wait()
			if won != 1 || busy != 7 {
				t.Errorf("8 concurrent claims: %d won, %d busy; want 1 and 7", won, busy)
			}
			if err := s.ReleaseProviderToken(ctx, "alice"); err != nil {
				t.Fatal(err)
			}
			if got, err := claim(time.Now().Add(time.Minute)); err != nil || got != "sealed-1" {
				t.Errorf("claim after release: %q %v", got, err)
			}
			// Not fresh: the new token is kept, the lease ends, and the
			// time stays that of the last good answer (before mark).
			mark := time.Now()
			if err := s.SaveProviderToken(ctx, "alice", "sealed-2", false); err != nil {
				t.Fatal(err)
			}
			if got, err := claim(mark); err != nil || got != "sealed-2" {
				t.Errorf("claim after a save that was not fresh: %q %v, want sealed-2", got, err)
			}
			// No bearer secret for a disabled person (nor a gone one).
			if err := s.SetUserDisabled(ctx, "alice", true); err != nil {
				t.Fatal(err)
			}
			g := metadata.Grant{Subject: "alice", SubjectCreated: time.Now(), Expires: time.Now().Add(time.Hour)}
			if err := s.SaveRefreshToken(ctx, "hash-1", g); !errors.Is(err, metadata.ErrDisabled) {
				t.Errorf("SaveRefreshToken for a disabled user: %v, want ErrDisabled", err)
			}
			g.Subject = "nobody"
			if err := s.SaveRefreshToken(ctx, "hash-2", g); !errors.Is(err, metadata.ErrNotFound) {
				t.Errorf("SaveRefreshToken for no user: %v, want ErrNotFound", err)
			}
			if err := s.DeleteUser(ctx, "alice"); err != nil {
				t.Fatal(err)
			}
			if _, err := claim(time.Now().Add(time.Minute)); !errors.Is(err, metadata.ErrNotFound) {
				t.Errorf("claim after the user was deleted: %v, want ErrNotFound", err)
			}
		})
	}
}
