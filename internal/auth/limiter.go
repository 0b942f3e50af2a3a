package auth

import (
	"context"
	"sync"
	"time"
)

// FailureLog keeps login attempts where every replica sees them, so that
// the limits hold for the registry as a whole and not per process.
type FailureLog interface {
	// ReserveLoginAttempt counts an attempt of key at the given time
	// unless key has max attempts since the given time already; then it
	// returns false and the oldest of them. Check and count are atomic
	// across replicas.
	ReserveLoginAttempt(ctx context.Context, key string, at, since time.Time, max int) (ok bool, oldest time.Time, err error)
	// ReleaseLoginAttempt forgets one reserved attempt.
	ReleaseLoginAttempt(ctx context.Context, key string, at time.Time) error
	// ClearLoginFailures forgets key's failures.
	ClearLoginFailures(ctx context.Context, key string) error
}

// Limiter counts login attempts per key (an account, a client address, or
// the pair) and refuses further attempts for a while once a key has
// failed too often within the window. An attempt is counted before the
// password is compared (Reserve) and forgotten when it succeeds (Release):
// counting only after the slow compare would let parallel guesses all pass
// the check. Counts live in memory, or in a FailureLog shared by replicas.
type Limiter struct {
	Max    int           // failures allowed within Window
	Window time.Duration // how long failures are remembered
	now    func() time.Time

	// shared, when set, holds the counts (keys prefixed with prefix).
	shared FailureLog
	prefix string

	mu   sync.Mutex
	seen map[string][]time.Time
	last time.Time // the latest reservation time handed out
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

// Reservation is one counted attempt; Release it when the attempt turns
// out not to be a failed guess.
type Reservation struct {
	l      *Limiter
	key    string
	at     time.Time
	shared bool // counted in the shared log, not in memory
}

// stamp returns a reservation time distinct from every earlier one of
// this limiter, so that releasing one removes exactly it.
func (l *Limiter) stamp() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	t := l.now()
	if !t.After(l.last) {
		t = l.last.Add(time.Nanosecond)
	}
	l.last = t
	return t
}

// Reserve counts an attempt of key, or, when key has failed Max times
// within the window, refuses it and says how long to wait. Should the
// shared log fail, it falls back to this process's own counts.
func (l *Limiter) Reserve(ctx context.Context, key string) (*Reservation, time.Duration, bool) {
	at := l.stamp()
	if l.shared != nil {
		ok, oldest, err := l.shared.ReserveLoginAttempt(ctx, l.prefix+key, at, at.Add(-l.Window), l.Max)
		if err == nil {
			if !ok {
				return nil, oldest.Add(l.Window).Sub(l.now()), false
			}
			return &Reservation{l: l, key: key, at: at, shared: true}, 0, true
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	fails := l.recent(key)
	if len(fails) >= l.Max {
		return nil, fails[0].Add(l.Window).Sub(l.now()), false
	}
	l.seen[key] = append(fails, at)
	if len(l.seen) > 100000 { // bound memory under a flood of keys
		for k := range l.seen {
			if len(l.recent(k)) == 0 {
				delete(l.seen, k)
			}
		}
	}
	return &Reservation{l: l, key: key, at: at}, 0, true
}

// Release forgets the attempt. A nil reservation is a no-op.
func (r *Reservation) Release(ctx context.Context) {
	if r == nil {
		return
	}
	l := r.l
	if r.shared {
		_ = l.shared.ReleaseLoginAttempt(context.WithoutCancel(ctx), l.prefix+r.key, r.at)
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	fails := l.seen[r.key]
	for i, t := range fails {
		if t.Equal(r.at) {
			l.seen[r.key] = append(fails[:i:i], fails[i+1:]...)
			break
		}
	}
	if len(l.seen[r.key]) == 0 {
		delete(l.seen, r.key)
	}
}

// Reset forgets the failures of key (after a successful login).
func (l *Limiter) Reset(ctx context.Context, key string) {
	if l.shared != nil {
		_ = l.shared.ClearLoginFailures(context.WithoutCancel(ctx), l.prefix+key)
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
