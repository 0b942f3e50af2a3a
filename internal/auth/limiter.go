package auth

import (
	"sync"
	"time"
)

// Limiter counts failed logins per key (an account or a client address)
// and refuses further attempts for a while once a key has failed too often
// within the window.
type Limiter struct {
	Max    int           // failures allowed within Window
	Window time.Duration // how long failures are remembered
	now    func() time.Time

	mu   sync.Mutex
	seen map[string][]time.Time
}

// NewLimiter returns a limiter allowing max failures per window.
func NewLimiter(max int, window time.Duration) *Limiter {
	return &Limiter{Max: max, Window: window, now: time.Now, seen: map[string][]time.Time{}}
}

// Blocked reports whether key must wait, and for how long.
func (l *Limiter) Blocked(key string) (time.Duration, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fails := l.recent(key)
	if len(fails) < l.Max {
		return 0, false
	}
	return fails[0].Add(l.Window).Sub(l.now()), true
}

// Fail records a failure for key.
func (l *Limiter) Fail(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seen[key] = append(l.recent(key), l.now())
	if len(l.seen) > 100000 { // bound memory under a flood of keys
		for k := range l.seen {
			if len(l.recent(k)) == 0 {
				delete(l.seen, k)
			}
		}
	}
}

// Reset forgets the failures of key (after a successful login).
func (l *Limiter) Reset(key string) {
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
