package auth

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/berth-registry/berth/internal/metadata"
)

// ErrRevoked is returned for an access token whose subject was revoked,
// deleted, or had its password or roles changed after the token was
// issued.
var ErrRevoked = errors.New("token revoked")

// RevocationInterval is how often a replica reads the revocation epochs
// that other replicas may have raised: a revocation takes effect at once
// on the replica that made it and within this interval (plus one query)
// on every other.
const RevocationInterval = time.Second

// revocations caches the store's revocation epochs. Access tokens carry
// the epoch of their subject at issue; one whose epoch is below the
// subject's current one is refused. The cache is brought up to date, by
// the request that finds it older than RevocationInterval, with one query
// for the epochs changed since the previous read (with a margin for clock
// differences between replicas).
type revocations struct {
	acc metadata.Accounts
	log *slog.Logger
	now func() time.Time

	mu     sync.RWMutex
	epochs map[string]int64

	pollMu sync.Mutex
	polled atomic.Int64 // unix nanos of the last read
	since  time.Time    // the next read asks for changes since this time
}

// clockMargin is how far back each read looks beyond the previous one, so
// that a revocation stamped by a replica whose clock is behind is not
// missed.
const clockMargin = time.Minute

// refresh reads the epochs changed since the last read, when that read is
// older than RevocationInterval or force is set.
func (r *revocations) refresh(ctx context.Context, force bool) {
	if !force && r.now().UnixNano()-r.polled.Load() < int64(RevocationInterval) {
		return
	}
	r.pollMu.Lock()
	defer r.pollMu.Unlock()
	start := r.now()
	if !force && start.UnixNano()-r.polled.Load() < int64(RevocationInterval) {
		return // read by another request meanwhile
	}
	changed, err := r.acc.RevocationEpochs(ctx, r.since)
	r.polled.Store(start.UnixNano())
	if err != nil {
		r.log.WarnContext(ctx, "reading token revocations failed", "err", err)
		return
	}
	r.since = start.Add(-clockMargin)
	r.mu.Lock()
	for subject, epoch := range changed {
		if epoch > r.epochs[subject] {
			r.epochs[subject] = epoch
		}
	}
	r.mu.Unlock()
}

// current reads subject's revocation epoch from the store, for a token
// about to be issued: the cache may be a second behind a revocation made
// on another replica, and a token issued with a stale epoch would be
// refused a moment later. Should the store fail, the cache answers.
func (r *revocations) current(ctx context.Context, subject string) int64 {
	epoch, err := r.acc.RevocationEpoch(ctx, subject)
	if err != nil {
		return r.epoch(ctx, subject)
	}
	return epoch
}

// epoch returns subject's current revocation epoch.
func (r *revocations) epoch(ctx context.Context, subject string) int64 {
	r.refresh(ctx, false)
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.epochs[subject]
}
