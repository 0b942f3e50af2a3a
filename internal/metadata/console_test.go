package metadata_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/metadata"
)

// consoleBase is the sign-in time of the test sessions; its nanoseconds
// check that times keep the precision stored.
var consoleBase = time.Date(2026, 3, 4, 5, 6, 7, 123456789, time.UTC)

func consoleSession(id, subject string, expires time.Duration) metadata.ConsoleSession {
	h := sha256.Sum256([]byte(id))
	return metadata.ConsoleSession{
		IDHash:   hex.EncodeToString(h[:]),
		Subject:  subject,
		Epoch:    3,
		CSRF:     "csrf-" + id,
		Created:  consoleBase,
		Expires:  consoleBase.Add(expires),
		LastSeen: consoleBase.Add(time.Second),
	}
}

func createConsoleSessions(t *testing.T, s *metadata.SQL, css ...metadata.ConsoleSession) {
	t.Helper()
	for _, cs := range css {
		if err := s.CreateConsoleSession(context.Background(), cs); err != nil {
			t.Fatal(err)
		}
	}
}

func sameConsoleSession(a, b metadata.ConsoleSession) bool {
	return a.IDHash == b.IDHash && a.Subject == b.Subject && a.Epoch == b.Epoch && a.CSRF == b.CSRF &&
		a.Created.Equal(b.Created) && a.Expires.Equal(b.Expires) && a.LastSeen.Equal(b.LastSeen)
}

// TestConsoleSessionRoundTrip: a stored session comes back with every
// field equal, times to the nanosecond; an id hash taken is ErrExists and
// an unknown one ErrNotFound.
func TestConsoleSessionRoundTrip(t *testing.T) {
	onBoth(t, func(t *testing.T, s *metadata.SQL) {
		ctx := context.Background()
		want := consoleSession("a", "alice", time.Hour)
		createConsoleSessions(t, s, want)
		got, err := s.ConsoleSession(ctx, want.IDHash, consoleBase)
		if err != nil {
			t.Fatal(err)
		}
		if !sameConsoleSession(*got, want) {
			t.Errorf("session %+v, want %+v", *got, want)
		}
		if err := s.CreateConsoleSession(ctx, want); !errors.Is(err, metadata.ErrExists) {
			t.Errorf("second create with the same id hash: %v, want ErrExists", err)
		}
		if _, err := s.ConsoleSession(ctx, consoleSession("b", "alice", time.Hour).IDHash, consoleBase); !errors.Is(err, metadata.ErrNotFound) {
			t.Errorf("unknown session: %v, want ErrNotFound", err)
		}
	})
}

// TestConsoleSessionExpiry: a session is valid until just before Expires
// and ErrNotFound from then on.
func TestConsoleSessionExpiry(t *testing.T) {
	onBoth(t, func(t *testing.T, s *metadata.SQL) {
		ctx := context.Background()
		cs := consoleSession("a", "alice", time.Hour)
		createConsoleSessions(t, s, cs)
		if _, err := s.ConsoleSession(ctx, cs.IDHash, cs.Expires.Add(-time.Nanosecond)); err != nil {
			t.Errorf("just before expiry: %v", err)
		}
		for _, at := range []time.Time{cs.Expires, cs.Expires.Add(time.Nanosecond), cs.Expires.Add(time.Hour)} {
			if _, err := s.ConsoleSession(ctx, cs.IDHash, at); !errors.Is(err, metadata.ErrNotFound) {
				t.Errorf("at %v (expires %v): %v, want ErrNotFound", at, cs.Expires, err)
			}
		}
	})
}

// TestConsoleSessionTouch: touching moves last_seen and expires, so the
// session outlives its first expiry; a session gone or already expired is
// ErrNotFound and is not revived.
func TestConsoleSessionTouch(t *testing.T) {
	onBoth(t, func(t *testing.T, s *metadata.SQL) {
		ctx := context.Background()
		cs := consoleSession("a", "alice", time.Hour)
		createConsoleSessions(t, s, cs)
		seen, expires := consoleBase.Add(50*time.Minute+7), consoleBase.Add(110*time.Minute+9)
		if err := s.TouchConsoleSession(ctx, cs.IDHash, seen, expires); err != nil {
			t.Fatal(err)
		}
		got, err := s.ConsoleSession(ctx, cs.IDHash, cs.Expires.Add(time.Minute))
		if err != nil {
			t.Fatalf("after the first expiry, touched: %v", err)
		}
		want := cs
		want.LastSeen, want.Expires = seen, expires
		if !sameConsoleSession(*got, want) {
			t.Errorf("touched session %+v, want %+v", *got, want)
		}
		if _, err := s.ConsoleSession(ctx, cs.IDHash, expires); !errors.Is(err, metadata.ErrNotFound) {
			t.Errorf("at the new expiry: %v, want ErrNotFound", err)
		}
		if err := s.TouchConsoleSession(ctx, cs.IDHash, expires, expires.Add(time.Hour)); !errors.Is(err, metadata.ErrNotFound) {
			t.Errorf("touching an expired session: %v, want ErrNotFound", err)
		}
		if _, err := s.ConsoleSession(ctx, cs.IDHash, expires); !errors.Is(err, metadata.ErrNotFound) {
			t.Errorf("expired session after a refused touch: %v, want ErrNotFound", err)
		}
		unknown := consoleSession("b", "alice", time.Hour)
		if err := s.TouchConsoleSession(ctx, unknown.IDHash, seen, expires); !errors.Is(err, metadata.ErrNotFound) {
			t.Errorf("touching an unknown session: %v, want ErrNotFound", err)
		}
	})
}

// TestConsoleSessionDelete: a deleted session is ErrNotFound, deleting it
// again is no error, and other sessions stay.
func TestConsoleSessionDelete(t *testing.T) {
	onBoth(t, func(t *testing.T, s *metadata.SQL) {
		ctx := context.Background()
		a, b := consoleSession("a", "alice", time.Hour), consoleSession("b", "alice", time.Hour)
		createConsoleSessions(t, s, a, b)
		if err := s.DeleteConsoleSession(ctx, a.IDHash); err != nil {
			t.Fatal(err)
		}
		if _, err := s.ConsoleSession(ctx, a.IDHash, consoleBase); !errors.Is(err, metadata.ErrNotFound) {
			t.Errorf("deleted session: %v, want ErrNotFound", err)
		}
		if err := s.DeleteConsoleSession(ctx, a.IDHash); err != nil {
			t.Errorf("second delete: %v, want no error", err)
		}
		if _, err := s.ConsoleSession(ctx, b.IDHash, consoleBase); err != nil {
			t.Errorf("other session: %v", err)
		}
	})
}

// TestConsoleSessionsPrune: pruning removes the sessions expired at the
// time given (Expires at or before it) and keeps the others.
func TestConsoleSessionsPrune(t *testing.T) {
	onBoth(t, func(t *testing.T, s *metadata.SQL) {
		ctx := context.Background()
		old, edge := consoleSession("old", "alice", time.Minute), consoleSession("edge", "bob", time.Hour)
		live, later := consoleSession("live", "alice", time.Hour+time.Nanosecond), consoleSession("later", "bob", 24*time.Hour)
		createConsoleSessions(t, s, old, edge, live, later)
		at := consoleBase.Add(time.Hour)
		n, err := s.PruneConsoleSessions(ctx, at)
		if err != nil {
			t.Fatal(err)
		}
		if n != 2 {
			t.Errorf("pruned %d sessions, want 2", n)
		}
		// Looked up before they expired: only what was pruned is gone.
		for _, cs := range []metadata.ConsoleSession{old, edge} {
			if _, err := s.ConsoleSession(ctx, cs.IDHash, consoleBase); !errors.Is(err, metadata.ErrNotFound) {
				t.Errorf("pruned session %s: %v, want ErrNotFound", cs.CSRF, err)
			}
		}
		for _, cs := range []metadata.ConsoleSession{live, later} {
			if _, err := s.ConsoleSession(ctx, cs.IDHash, at); err != nil {
				t.Errorf("live session %s: %v", cs.CSRF, err)
			}
		}
		if n, err := s.PruneConsoleSessions(ctx, at); err != nil || n != 0 {
			t.Errorf("second prune: %d, %v; want 0, nil", n, err)
		}
	})
}
