package auth

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"
)

// Parallel attempts on one key never get more reservations than the limit,
// and a released reservation frees its place.
func TestLimiterReservesBeforeTheCheck(t *testing.T) {
	l := NewLimiter(5, time.Minute)
	ctx := context.Background()
	var mu sync.Mutex
	var wg sync.WaitGroup
	var got []*Reservation
	for range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if r, _, ok := l.Reserve(ctx, "alice"); ok {
				mu.Lock()
				got = append(got, r)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(got) != 5 {
		t.Fatalf("%d of 100 parallel attempts reserved, want 5", len(got))
	}
	if _, wait, ok := l.Reserve(ctx, "alice"); ok || wait <= 0 || wait > time.Minute {
		t.Fatalf("sixth attempt: ok=%v wait=%v", ok, wait)
	}
	got[0].Release(ctx)
	if _, _, ok := l.Reserve(ctx, "alice"); !ok {
		t.Fatal("a released place was not free again")
	}
	if _, _, ok := l.Reserve(ctx, "bob"); !ok {
		t.Fatal("another key was blocked")
	}
	now := time.Now().Add(61 * time.Second)
	l.now = func() time.Time { return now }
	if _, _, ok := l.Reserve(ctx, "alice"); !ok {
		t.Fatal("still blocked after the window")
	}
}

func TestCleanName(t *testing.T) {
	for in, want := range map[string]string{
		"alice":                  "alice",
		"team+ci":                "team+ci",
		"a\x00b\x1b[31mc":        "a?b?[31mc",
		"caf\xe9":                "caf?",
		"名前":                     "名前",
		strings.Repeat("x", 128): strings.Repeat("x", 128),
	} {
		if got := cleanName(in); got != want {
			t.Errorf("cleanName(%q) = %q, want %q", in, got, want)
		}
	}
	long := cleanName(strings.Repeat("\x01", 300<<10))
	if len(long) > 160 || !strings.HasSuffix(long, "...(307200 bytes)") || strings.Contains(long, "\x01") {
		t.Fatalf("300 KiB name logged as %q", long)
	}
}
