package auth

import (
	"context"
	"sync"
	"time"
)

// FailureLog keeps failed logins where every replica sees them, so that
// the limits hold for the registry as a whole and not per process.
type FailureLog interface {
	// AddLoginFailure records a failure for key at the given time and
	// forgets the failures older than before (of every key).
	AddLoginFailure(ctx context.Context, key string, at, before time.Time) error
	// LoginFailures counts key's failures since the given time and
	// returns the oldest of them.
	LoginFailures(ctx context.Context, key string, since time.Time) (n int, oldest time.Time, err error)
	// ClearLoginFailures forgets key's failures.
	ClearLoginFailures(ctx context.Context, key string) error
}

// Limiter counts failed logins per key (an account or a client address)
// and refuses further attempts for a while once a key has failed too often
// within the window. Counts live in memory, or in a FailureLog shared by
// replicas.
type Limiter struct {
	Max    int           // failures allowed within Window
	Window time.Duration // how long failures are remembered
	now    func() time.Time

	// shared, when set, holds the counts (keys prefixed with prefix).
	shared FailureLog
	prefix string

	mu   sync.Mutex
	seen map[string][]time.Time
}

// NewLimiter returns a limiter allowing max failures per window, counting
// in memory.
func NewLimiter(max int, window time.Duration) *Limiter {
	return &Limiter{Max: max, Window: window, now: time.Now, seen: map[string][]time.Time{}}
}

// NewSharedLimiter returns a limiter counting in log under keys prefixed
// with prefix.
func NewSharedLimiter(max int, window time.Duration, log FailureLog, prefix string) *Limiter {
	l := NewLimiter(max, window)
	l.shared, l.prefix = log, prefix
	return l
}

// Blocked reports whether key must wait, and for how long. Should the
// shared log fail, it falls back to this process's own counts.
func (l *Limiter) Blocked(ctx context.Context, key string) (time.Duration, bool) {
	if l.shared != nil {
		n, oldest, err := l.shared.LoginFailures(ctx, l.prefix+key, l.now().Add(-l.Window))
		if err == nil {
			if n < l.Max {
				return 0, false
			}
			return oldest.Add(l.Window).Sub(l.now()), true
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	fails := l.recent(key)
	if len(fails) < l.Max {
		return 0, false
	}
	return fails[0].Add(l.Window).Sub(l.now()), true
}

// Fail records a failure for key.
func (l *Limiter) Fail(ctx context.Context, key string) {
	now := l.now()
	if l.shared != nil {
		_ = l.shared.AddLoginFailure(ctx, l.prefix+key, now, now.Add(-l.Window))
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seen[key] = append(l.recent(key), now)
	if len(l.seen) > 100000 { // bound memory under a flood of keys
		for k := range l.seen {
			if len(l.recent(k)) == 0 {
				delete(l.seen, k)
			}
		}
	}
}

// Reset forgets the failures of key (after a successful login).
func (l *Limiter) Reset(ctx context.Context, key string) {
	if l.shared != nil {
		_ = l.shared.ClearLoginFailures(ctx, l.prefix+key)
	}
	l.mu.Lock()
	delete(l.seen, key)
	l.mu.Unlock()
}

// recent drops failures older than the window; l.mu must be held.
func (l *Limiter) recent(key string) []time.Time {
	fails := l.seen[key]
	cut := l.now().Add(-l.Window)
	i := 0
	for i < len(fails) && fails[i].Before(cut) {
		i++
	}
	fails = fails[i:]
	if len(fails) == 0 {
		delete(l.seen, key)
		return nil
	}
	l.seen[key] = fails
	return fails
}
