package registry

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/berth-registry/berth/internal/metadata"
	"github.com/berth-registry/berth/internal/reference"
)

// pullLog gathers manifest pulls in memory; Flush writes them in one
// transaction, so a pull costs no write of its own.
type pullLog struct {
	mu      sync.Mutex
	pending map[pullKey]time.Time
}

type pullKey struct {
	repo   string
	digest reference.Digest
}

// RecordPull notes that a manifest was pulled now (retention's "not
// pulled for" reads it once flushed).
func (s *Service) RecordPull(repo string, d reference.Digest) {
	s.pulls.mu.Lock()
	if s.pulls.pending == nil {
		s.pulls.pending = map[pullKey]time.Time{}
	}
	s.pulls.pending[pullKey{repo, d}] = time.Now()
	s.pulls.mu.Unlock()
}

// FlushPulls writes the pulls noted since the last flush, and their
// events.
func (s *Service) FlushPulls(ctx context.Context) error {
	return errors.Join(s.flushPulls(ctx), s.flushPullEvents(ctx))
}

func (s *Service) flushPulls(ctx context.Context) error {
	s.pulls.mu.Lock()
	pending := s.pulls.pending
	s.pulls.pending = nil
	s.pulls.mu.Unlock()
	if len(pending) == 0 {
		return nil
	}
	batch := make([]metadata.Pull, 0, len(pending))
	for k, at := range pending {
		batch = append(batch, metadata.Pull{Repository: k.repo, Digest: k.digest, At: at})
	}
	// One order for every replica, so that two flushes cannot deadlock.
	slices.SortFunc(batch, func(a, b metadata.Pull) int {
		return cmp.Or(strings.Compare(a.Repository, b.Repository), strings.Compare(string(a.Digest), string(b.Digest)))
	})
	if err := s.meta.RecordPulls(ctx, batch); err != nil {
		// Put them back (unless newer pulls came meanwhile) for the next try.
		s.pulls.mu.Lock()
		if s.pulls.pending == nil {
			s.pulls.pending = map[pullKey]time.Time{}
		}
		for k, at := range pending {
			if cur, ok := s.pulls.pending[k]; !ok || cur.Before(at) {
				s.pulls.pending[k] = at
			}
		}
		s.pulls.mu.Unlock()
		return internal(err, "record pulls")
	}
	return nil
}
