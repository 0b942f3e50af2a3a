package auth

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/metadata"
	"github.com/berth-registry/berth/internal/testserver"
)

func TestMain(m *testing.M) { os.Exit(testserver.Main(m)) }

// sharedWindows: limiters with different windows share the store's table;
// one limiter's attempts must not forget another's within its window (the
// per-account limit of 15 minutes was cut to the address limit's minute).
func sharedWindows(t *testing.T, store FailureLog) {
	ctx := context.Background()
	clock := time.Unix(1_700_000_000, 0)
	now := func() time.Time { return clock }
	account := NewSharedLimiter(20, 15*time.Minute, store, "account:")
	client := NewSharedLimiter(30, time.Minute, store, "client:")
	account.now, client.now = now, now
	for i := range 20 {
		if _, _, ok := account.Reserve(ctx, "alice"); !ok {
			t.Fatalf("attempt %d refused", i)
		}
		clock = clock.Add(time.Millisecond)
	}
	if _, _, ok := account.Reserve(ctx, "alice"); ok {
		t.Fatal("a 21st attempt within the window was counted")
	}
	clock = clock.Add(2 * time.Minute)
	if _, _, ok := client.Reserve(ctx, "203.0.113.9"); !ok {
		t.Fatal("the address limiter refused a first attempt")
	}
	if _, wait, ok := account.Reserve(ctx, "alice"); ok || wait < 12*time.Minute {
		t.Fatalf("2 minutes later, after another key's attempt: ok=%v wait=%v; want still refused for ~13 minutes", ok, wait)
	}
	clock = clock.Add(14 * time.Minute)
	if _, _, ok := account.Reserve(ctx, "alice"); !ok {
		t.Fatal("still refused after the window")
	}
}

func TestSharedLimitersKeepTheirWindows(t *testing.T) {
	s, err := metadata.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "berth.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	sharedWindows(t, s)
}

func TestSharedLimitersKeepTheirWindowsOnPostgres(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	s, err := metadata.OpenPostgres(context.Background(), testserver.PostgresDSN(t), 4)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	sharedWindows(t, s)
}
